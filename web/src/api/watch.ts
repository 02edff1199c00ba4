/** Watchlists and price alerts (README: Watchlists and price alerts). The generated schema carries
 * these routes once the client is regenerated from the OpenAPI document; until then they are
 * called through the same client (its token handling and error envelope) with the narrow types
 * below, which follow portfolio.proto's Watchlist, Alert and FiredAlert. */

import type { AlertMessage, PriceMessage } from "../ws/protocol";
import { api, envelope } from "./client";

export type WatchQuote = Omit<PriceMessage, "type"> & { source?: string; stale?: boolean };
export type Watchlist = {
  id: string;
  name: string;
  symbols: string[];
  quotes: WatchQuote[];
  createdAt?: string;
  updatedAt?: string;
};
export type AlertCondition = "above" | "below" | "percent_change";
export type Alert = {
  id: string;
  symbol: string;
  condition: AlertCondition;
  price?: string;
  percent?: string;
  windowSeconds?: number;
  repeat?: boolean;
  cooldownSeconds?: number;
  active?: boolean;
  createdAt?: string;
  lastFiredAt?: string;
  note?: string;
};
export type FiredAlert = Omit<AlertMessage, "type">;
export type AlertDraft = {
  symbol: string;
  condition: AlertCondition;
  price?: string;
  percent?: string;
  windowSeconds?: number;
  repeat: boolean;
  cooldownSeconds?: number;
  note?: string;
};

type Answer<T> = Promise<{ data?: { data: T }; response: Response }>;
type Init = { body?: unknown; params?: { query?: Record<string, unknown>; path?: Record<string, string> } };
/** The client, seen without the schema's route list (see the module comment). */
type Loose = {
  GET(path: string, init?: Init): Answer<unknown>;
  POST(path: string, init: Init): Answer<unknown>;
  PUT(path: string, init: Init): Answer<unknown>;
  DELETE(path: string, init: Init): Answer<unknown>;
};

function loose(): Loose {
  return api() as unknown as Loose;
}

async function data<T>(call: Answer<unknown>): Promise<T> {
  return (await envelope(call)).data as T;
}

export function listWatchlists(): Promise<Watchlist[]> {
  return data(loose().GET("/api/v1/watchlists", { params: { query: { limit: 100 } } }));
}

export function createWatchlist(name: string, symbols: string[]): Promise<Watchlist> {
  return data(loose().POST("/api/v1/watchlists", { body: { name, symbols } }));
}

export function updateWatchlist(id: string, name: string, symbols: string[]): Promise<Watchlist> {
  return data(loose().PUT("/api/v1/watchlists/{id}", { body: { name, symbols }, params: { path: { id } } }));
}

export async function deleteWatchlist(id: string): Promise<void> {
  await envelope(loose().DELETE("/api/v1/watchlists/{id}", { params: { path: { id } } }));
}

export function listAlerts(): Promise<Alert[]> {
  return data(loose().GET("/api/v1/alerts", { params: { query: { limit: 100 } } }));
}

export function createAlert(draft: AlertDraft): Promise<Alert> {
  return data(loose().POST("/api/v1/alerts", { body: draft }));
}

export function setAlertActive(id: string, active: boolean): Promise<Alert> {
  return data(loose().PUT("/api/v1/alerts/{id}", { body: { active }, params: { path: { id } } }));
}

export async function deleteAlert(id: string): Promise<void> {
  await envelope(loose().DELETE("/api/v1/alerts/{id}", { params: { path: { id } } }));
}

export type FiredPage = { fired: FiredAlert[]; unread: number };

export async function listFired(): Promise<FiredPage> {
  const page = await data<{ fired?: FiredAlert[]; unread?: number }>(
    loose().GET("/api/v1/fired-alerts", { params: { query: { limit: 100 } } }),
  );
  return { fired: page.fired ?? [], unread: page.unread ?? 0 };
}

export async function markFiredRead(ids: string[] = []): Promise<number> {
  const answer = await data<{ marked?: number }>(loose().POST("/api/v1/fired-alerts:markRead", { body: { ids } }));
  return answer.marked ?? 0;
}
