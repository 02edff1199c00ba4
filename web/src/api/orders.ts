/** Limit and stop orders of paper portfolios (README: Orders): list, place, cancel. A draft is
 * narrower than the schema's request: the form places only these types and durations. */

import { api, dataOf, type Schemas } from "./client";

export type Order = Schemas["stockfolio.portfolio.v1.Order"];
export type OrderType = "limit" | "stop" | "stop_limit";
export type TimeInForce = "day" | "gtc";
export type OrderDraft = {
  portfolioId: string;
  symbol: string;
  side: "buy" | "sell";
  type: OrderType;
  quantity: string;
  limitPrice?: string;
  stopPrice?: string;
  timeInForce: TimeInForce;
};

export function listOrders(portfolioId: string): Promise<Order[]> {
  return dataOf(api().GET("/api/v1/orders", { params: { query: { portfolioId, limit: 100 } } }));
}

export function placeOrder(draft: OrderDraft, key: string): Promise<Order> {
  return dataOf(api().POST("/api/v1/orders", { body: draft, headers: { "Idempotency-Key": key } }));
}

export function cancelOrder(id: string): Promise<Order> {
  return dataOf(api().POST("/api/v1/orders/{id}:cancel", { body: {}, params: { path: { id } } }));
}
