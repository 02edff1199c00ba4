/** API explorer: the facade's OpenAPI document in Swagger UI (bundled from swagger-ui-dist, no
 * CDN), whose "Try it out" calls the API as the signed-in user; and beside it the WebSocket
 * protocols, as the README states them. */

import { useLocation } from "preact-iso";
import { useEffect, useRef, useState } from "preact/hooks";
import type { SwaggerRequest } from "swagger-ui-dist/swagger-ui-es-bundle.js";
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
    // Swagger UI is most of this page's weight: its own chunk, fetched beside the document.
    Promise.all([envelope(api().GET("/api/v1/openapi.json")), import("./swagger")]).then(
      ([document, { default: SwaggerUIBundle }]) => {
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

type Tab = "rest" | "ws";

export default function ExplorerPage() {
  const location = useLocation();
  // ?tab=ws links straight to the protocols (and leaves Swagger UI unloaded until asked for).
  const [tab, setTab] = useState<Tab>(location.query.tab === "ws" ? "ws" : "rest");
  const [restShown, setRestShown] = useState(tab === "rest");
  const show = (next: Tab) => {
    setTab(next);
    if (next === "rest") setRestShown(true);
    location.route(next === "ws" ? "/explorer?tab=ws" : "/explorer", true);
  };
  return (
    <section class="explorer" aria-labelledby="explorer-title">
      <div class="row spread">
        <h1 id="explorer-title">API explorer</h1>
        <div class="segmented" role="group" aria-label="Which API">
          <button type="button" aria-pressed={tab === "rest"} onClick={() => show("rest")} data-testid="explorer-tab-rest">
            REST (OpenAPI)
          </button>
          <button type="button" aria-pressed={tab === "ws"} onClick={() => show("ws")} data-testid="explorer-tab-ws">
            WebSockets
          </button>
        </div>
      </div>
      <p class="muted">
        Every route of <code>{config().apiUrl}</code>, generated from the protos. “Try it out” sends
        your own token, so it acts as you: what you create or delete is real. The raw document:{" "}
        <a href={`${config().apiUrl}/api/v1/openapi.json`}>openapi.json</a>.
      </p>
      <div hidden={tab !== "rest"}>{restShown && <Rest />}</div>
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
