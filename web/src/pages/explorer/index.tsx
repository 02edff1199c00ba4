/** API explorer: the facade's OpenAPI document in Swagger UI (bundled from swagger-ui-dist, no
 * CDN), whose "Try it out" calls the API as the signed-in user; and beside it the WebSocket
 * protocols, as the README states them. */

import { useEffect, useRef, useState } from "preact/hooks";
import SwaggerUIBundle, { type SwaggerRequest } from "swagger-ui-dist/swagger-ui-es-bundle.js";
import "swagger-ui-dist/swagger-ui.css";
import { api, envelope } from "../../api/client";
import { accessToken } from "../../auth/tokens";
import { ErrorBanner } from "../../components/form";
import { config } from "../../config";
import { Protocol, SOCKETS } from "./protocols";
import "./explorer.css";

/** Each "Try it out" request carries the signed-in user's current token, unless the Authorize
 * dialog was given another. */
function withToken(request: SwaggerRequest): SwaggerRequest {
  const token = accessToken();
  if (token && !request.headers.Authorization) request.headers.Authorization = `Bearer ${token}`;
  return request;
}

function Rest() {
  const box = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let live = true;
    envelope(api().GET("/api/v1/openapi.json")).then(
      (document) => {
        if (!live || !box.current) return;
        SwaggerUIBundle({
          // The document names no server: "Try it out" goes to the API, not to this page's origin.
          spec: { ...(document as object), servers: [{ url: config().apiUrl, description: "Stockfolio API" }] },
          domNode: box.current,
          deepLinking: false,
          docExpansion: "none",
          defaultModelsExpandDepth: 0,
          displayRequestDuration: true,
          filter: true,
          requestInterceptor: withToken,
          presets: [SwaggerUIBundle.presets.apis],
          layout: "BaseLayout",
        });
      },
      (failure: unknown) => live && setError(failure),
    );
    return () => {
      live = false;
    };
  }, []);

  return (
    <>
      <ErrorBanner error={error} testid="explorer-error" />
      <div ref={box} class="swagger-box" data-testid="explorer-rest" />
    </>
  );
}

export default function ExplorerPage() {
  const [tab, setTab] = useState<"rest" | "ws">("rest");
  return (
    <section class="explorer" aria-labelledby="explorer-title">
      <div class="row spread">
        <h1 id="explorer-title">API explorer</h1>
        <div class="segmented" role="group" aria-label="Which API">
          <button type="button" aria-pressed={tab === "rest"} onClick={() => setTab("rest")} data-testid="explorer-tab-rest">
            REST (OpenAPI)
          </button>
          <button type="button" aria-pressed={tab === "ws"} onClick={() => setTab("ws")} data-testid="explorer-tab-ws">
            WebSockets
          </button>
        </div>
      </div>
      <p class="muted">
        Every route of <code>{config().apiUrl}</code>, generated from the protos. “Try it out” sends
        your own token, so it acts as you: what you create or delete is real. The raw document:{" "}
        <a href={`${config().apiUrl}/api/v1/openapi.json`}>openapi.json</a>.
      </p>
      <div hidden={tab !== "rest"}>
        <Rest />
      </div>
      <div hidden={tab !== "ws"} data-testid="explorer-ws">
        <nav aria-label="Sockets" class="row">
          {SOCKETS.map((path) => (
            <a key={path} href={`#socket-${path.slice(4)}`}>
              <code>{path}</code>
            </a>
          ))}
        </nav>
        {SOCKETS.map((path) => (
          <section key={path} id={`socket-${path.slice(4)}`} class="card protocol-card" aria-labelledby={`socket-title-${path.slice(4)}`}>
            <h2 id={`socket-title-${path.slice(4)}`}>
              <code>{path}</code>
            </h2>
            <Protocol path={path} />
          </section>
        ))}
      </div>
    </section>
  );
}
