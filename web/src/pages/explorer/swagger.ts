/** Swagger UI and its stylesheet, loaded together only when the REST tab is shown. */

import SwaggerUIBundle from "swagger-ui-dist/swagger-ui-es-bundle.js";
import "swagger-ui-dist/swagger-ui.css";

export default SwaggerUIBundle;
