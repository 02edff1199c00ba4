/** Limit and stop orders of paper portfolios (README: Orders). The generated schema carries these
 * routes once the client is regenerated from the OpenAPI document; until then they are called
 * through the same client (its token handling and error envelope) with the narrow types below,
 * which follow portfolio.proto's Order. */

import type { OrderMessage } from "../ws/protocol";
import { api, envelope } from "./client";

export type Order = OrderMessage["order"];
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

type Answer<T> = Promise<{ data?: { data: T; pagination?: { totalPages?: number } }; response: Response }>;
/** The client, seen without the schema's route list (see the module comment). */
type Loose = {
  GET(path: string, init?: { params?: { query?: Record<string, unknown>; path?: Record<string, string> } }): Answer<unknown>;
  POST(
    path: string,
    init: { body: unknown; headers?: Record<string, string>; params?: { path?: Record<string, string> } },
  ): Answer<unknown>;
};

function loose(): Loose {
  return api() as unknown as Loose;
}

export async function listOrders(portfolioId: string): Promise<Order[]> {
  const body = await envelope(
    loose().GET("/api/v1/orders", { params: { query: { portfolioId, limit: 100 } } }),
  );
  return body.data as Order[];
}

export async function placeOrder(draft: OrderDraft, key: string): Promise<Order> {
  const body = await envelope(
    loose().POST("/api/v1/orders", { body: draft, headers: { "Idempotency-Key": key } }),
  );
  return body.data as Order;
}

export async function cancelOrder(id: string): Promise<Order> {
  const body = await envelope(
    loose().POST("/api/v1/orders/{id}:cancel", { body: {}, params: { path: { id } } }),
  );
  return body.data as Order;
}
