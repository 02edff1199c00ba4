/** Watchlists and price alerts (README: Watchlists and price alerts). The schema's types, with
 * what the service always sets made required: an alert's id, symbol and condition, a
 * watchlist's id, name, symbols and quotes (each as the price stream sends it). */

import type { AlertMessage, PriceMessage } from "../ws/protocol";
import { api, dataOf, envelope, type Schemas } from "./client";

export type WatchQuote = Omit<PriceMessage, "type"> & { source?: string; stale?: boolean };
export type Watchlist = Omit<Schemas["stockfolio.portfolio.v1.Watchlist"], "quotes"> & {
  id: string;
  name: string;
  symbols: string[];
  quotes: WatchQuote[];
};
export type AlertCondition = "above" | "below" | "percent_change";
export type Alert = Schemas["stockfolio.portfolio.v1.Alert"] & {
  id: string;
  symbol: string;
  condition: AlertCondition;
};
export type FiredAlert = Omit<AlertMessage, "type">;
export type AlertDraft = Schemas["stockfolio.portfolio.v1.CreateAlertRequest"];

export async function listWatchlists(): Promise<Watchlist[]> {
  return (await dataOf(api().GET("/api/v1/watchlists", { params: { query: { limit: 100 } } }))) as Watchlist[];
}

export async function createWatchlist(name: string, symbols: string[]): Promise<Watchlist> {
  return (await dataOf(api().POST("/api/v1/watchlists", { body: { name, symbols } }))) as Watchlist;
}

export async function updateWatchlist(id: string, name: string, symbols: string[]): Promise<Watchlist> {
  const body = { name, symbols };
  return (await dataOf(api().PUT("/api/v1/watchlists/{id}", { body, params: { path: { id } } }))) as Watchlist;
}

export async function deleteWatchlist(id: string): Promise<void> {
  await envelope(api().DELETE("/api/v1/watchlists/{id}", { params: { path: { id } } }));
}

export async function listAlerts(): Promise<Alert[]> {
  return (await dataOf(api().GET("/api/v1/alerts", { params: { query: { limit: 100 } } }))) as Alert[];
}

export async function createAlert(draft: AlertDraft): Promise<Alert> {
  return (await dataOf(api().POST("/api/v1/alerts", { body: draft }))) as Alert;
}

export async function setAlertActive(id: string, active: boolean): Promise<Alert> {
  return (await dataOf(api().PUT("/api/v1/alerts/{id}", { body: { active }, params: { path: { id } } }))) as Alert;
}

export async function deleteAlert(id: string): Promise<void> {
  await envelope(api().DELETE("/api/v1/alerts/{id}", { params: { path: { id } } }));
}

export type FiredPage = { fired: FiredAlert[]; unread: number };

export async function listFired(): Promise<FiredPage> {
  const page = await dataOf(api().GET("/api/v1/fired-alerts", { params: { query: { limit: 100 } } }));
  return { fired: (page.fired ?? []) as FiredAlert[], unread: page.unread ?? 0 };
}

export async function markFiredRead(ids: string[] = []): Promise<number> {
  const answer = await dataOf(api().POST("/api/v1/fired-alerts:markRead", { body: { ids } }));
  return answer.marked ?? 0;
}
