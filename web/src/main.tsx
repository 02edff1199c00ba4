/** Boot: read /config.json, restore the session from this tab's refresh token, draw the app. */

import { render } from "preact";
import { App } from "./app";
import { restoreSession } from "./auth/session";
import { loadConfig } from "./config";
import "./styles.css";

const root = document.getElementById("app")!;

loadConfig()
  .then(() => {
    render(<App />, root);
    return restoreSession();
  })
  .catch((error: unknown) => {
    root.textContent = `Stockfolio could not start: ${error instanceof Error ? error.message : String(error)}`;
  });
