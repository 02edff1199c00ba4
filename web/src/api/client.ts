/** The one way the app calls the REST API: openapi-fetch typed by the generated schema.d.ts.
 *
 * Its middleware adds the bearer token, renews an expired access token once per request with the
 * (rotating) refresh token, and turns every error envelope into a thrown ApiError, so a caller's
 * `data` is always the success envelope. */

import createClient, { type Client, type Middleware } from "openapi-fetch";
import { accessToken, clearTokens, refreshToken, storeTokens } from "../auth/tokens";
import { config } from "../config";
import { ApiError, errorFromResponse } from "./errors";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type User = Schemas["stockfolio.users.v1.User"];
export type Portfolio = Schemas["stockfolio.portfolio.v1.Portfolio"];
export type Position = Schemas["stockfolio.portfolio.v1.Position"];
export type Trade = Schemas["stockfolio.portfolio.v1.Trade"];
export type TradeSide = Schemas["stockfolio.portfolio.v1.TradeSide"];
export type Quote = Schemas["stockfolio.portfolio.v1.Quote"];
export type Stock = Schemas["stockfolio.portfolio.v1.Stock"];
export type Performance = Schemas["stockfolio.portfolio.v1.GetPerformanceResponse"];
export type Risk = Schemas["stockfolio.portfolio.v1.RiskFigures"];
export type Breakdown = Schemas["stockfolio.portfolio.v1.ReturnBreakdown"];
export type BenchmarkComparison = Schemas["stockfolio.portfolio.v1.BenchmarkComparison"];
export type Pagination = Schemas["Pagination"];
export type Api = Client<paths>;

/** Routes that take no token: never given one, never retried. */
const PUBLIC = new Set(["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/refresh"]);
/** Codes that mean the session is over (revoked elsewhere, a reused refresh token). */
const SESSION_OVER = new Set([
  "SESSION_REVOKED",
  "SESSION_EXPIRED",
  "REFRESH_TOKEN_REUSED",
  "SESSION_NOT_FOUND",
]);

type SessionEndListener = (message: string) => void;
const sessionEndListeners = new Set<SessionEndListener>();

/** Hears a session that ended without the user signing out (the message says why). */
export function onSessionEnded(listener: SessionEndListener): () => void {
  sessionEndListeners.add(listener);
  return () => sessionEndListeners.delete(listener);
}

export function endSession(message: string): void {
  clearTokens();
  for (const listener of sessionEndListeners) listener(message);
}

let client: Api | null = null;
let refreshing: Promise<string> | null = null;
// Each request's untouched copy, to send again after a renewal (a body is read only once).
const retries = new Map<string, Request>();

export function api(): Api {
  if (client === null) {
    client = createClient<paths>({ baseUrl: config().apiUrl });
    client.use(middleware);
  }
  return client;
}

/** A fresh access token from the refresh token, one request at a time however many ask. */
export function renewAccessToken(): Promise<string> {
  refreshing ??= (async () => {
    const token = refreshToken();
    if (!token) throw new ApiError(401, "SIGNED_OUT", "Please sign in.");
    try {
      const { data } = await api().POST("/api/v1/auth/refresh", { body: { refreshToken: token } });
      storeTokens(data?.data.tokens ?? {});
      return accessToken() ?? "";
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        endSession(
          SESSION_OVER.has(error.code) ? error.message : "Your session has ended; sign in again.",
        );
      }
      throw error;
    }
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function withToken(request: Request, token: string): Request {
  request.headers.set("Authorization", `Bearer ${token}`);
  return request;
}

const middleware: Middleware = {
  async onRequest({ request, schemaPath, id }) {
    if (PUBLIC.has(schemaPath)) return request;
    const token = accessToken() ?? (refreshToken() ? await renewAccessToken() : null);
    if (!token) return request; // the API answers 401 and the screen says so
    retries.set(id, request.clone());
    return withToken(request, token);
  },

  async onResponse({ response, id, options }) {
    const retry = retries.get(id);
    retries.delete(id);
    if (response.ok) return response;
    let error = await errorFromResponse(response);
    if (error.status === 401 && error.code === "TOKEN_EXPIRED" && retry) {
      // Called on the global object: window.fetch refuses to run as a method of `options`.
      const again = await options.fetch.call(globalThis, withToken(retry, await renewAccessToken()));
      if (again.ok) return again;
      error = await errorFromResponse(again);
    }
    if (error.status === 401 && SESSION_OVER.has(error.code)) endSession(error.message);
    throw error;
  },

  onError({ error, id }) {
    retries.delete(id);
    if (error instanceof ApiError) return error;
    return new ApiError(0, "NETWORK", `Could not reach the API at ${config().apiUrl}.`);
  },
};

/** The success envelope of a call (errors were thrown by the middleware). */
export async function envelope<T>(call: Promise<{ data?: T; response: Response }>): Promise<T> {
  const { data, response } = await call;
  if (data === undefined) throw new ApiError(response.status, "EMPTY", "The API sent no answer.");
  return data;
}

/** The `data` of a call's success envelope: what most screens load. */
export async function dataOf<T>(call: Promise<{ data?: { data: T }; response: Response }>): Promise<T> {
  return (await envelope(call)).data;
}
