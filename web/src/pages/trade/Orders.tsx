/** Limit, stop and stop-limit orders of a paper portfolio: a form to place one (hidden for a
 * tracking portfolio, which records real trades by hand, and saying so), and the portfolio's
 * orders, open and past, with their status and reason, cancellable while open. The list follows
 * the `order` and `trade` messages of /ws/portfolio: a fill shows up without a reload. */

import { useEffect, useRef, useState } from "preact/hooks";
import type { Portfolio } from "../../api/client";
import { ApiError } from "../../api/errors";
import {
  cancelOrder,
  listOrders,
  placeOrder,
  type Order,
  type OrderType,
  type TimeInForce,
} from "../../api/orders";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import {
  DecimalField,
  ErrorBanner,
  Field,
  NoticeBanner,
  Select,
  useFieldChecks,
  type Choice,
} from "../../components/form";
import { ACTIONS, Table } from "../../components/Table";
import { decimalProblem } from "../../decimal";
import { dateTime, price, quantity as formatQuantity } from "../../format";
import { portfolioFeed } from "../../ws/portfolioFeed";

const TYPES: { type: OrderType; label: string }[] = [
  { type: "limit", label: "Limit" },
  { type: "stop", label: "Stop" },
  { type: "stop_limit", label: "Stop-limit" },
];
const DURATIONS: Choice<TimeInForce>[] = [
  { value: "day", label: "The day (ends at midnight UTC)" },
  { value: "gtc", label: "Until cancelled" },
];
const SYMBOL = /^\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,14}$/;

export function Orders(props: { portfolio: Portfolio | undefined; symbol: string }) {
  const { portfolio, symbol } = props;
  const portfolioId = portfolio?.id ?? "";
  const tracking = portfolio?.kind === "tracking";
  const [orders, setOrders] = useState<Order[]>([]);
  const [listError, setListError] = useState<unknown>(null);
  const [side, setSide] = useState<"buy" | "sell">("buy");
  const [type, setType] = useState<OrderType>("limit");
  const [quantity, setQuantity] = useState("");
  const [limit, setLimit] = useState("");
  const [stop, setStop] = useState("");
  const [inForce, setInForce] = useState<TimeInForce>("day");
  const { busy, error, setError, send } = useIdempotentPost();
  const [notice, setNotice] = useState<string | null>(null);
  // Orders whose fill or rejection the feed told already: an order can fill at the next tick,
  // before its POST answers, and "Placed" must not then replace "Filled".
  const settled = useRef(new Set<string>());

  useEffect(() => {
    setOrders([]);
    setListError(null);
    if (!portfolioId || tracking) return;
    let live = true;
    listOrders(portfolioId).then(
      (found) => live && setOrders(found),
      (failure) => live && setListError(failure),
    );
    return () => {
      live = false;
    };
  }, [portfolioId, tracking]);

  // Live: each change of an order of this portfolio replaces its row (or adds it first).
  useEffect(() => {
    const stopOrders = portfolioFeed.watchOrders((order) => {
      if (order.portfolioId !== portfolioId) return;
      setOrders((shown) => upsert(shown, order));
      if (order.status === "rejected") {
        if (order.id) settled.current.add(order.id);
        setNotice(`Order ${describe(order)} was rejected: ${order.statusReason ?? ""}`);
      }
    });
    const stopTrades = portfolioFeed.watchTrades((trade) => {
      if (!trade.orderId || trade.portfolioId !== portfolioId) return;
      settled.current.add(trade.orderId);
      setNotice(
        `Filled: ${trade.side === "sell" ? "sold" : "bought"} ${formatQuantity(trade.quantity)}` +
          ` ${trade.symbol} at ${price(trade.price)}.`,
      );
    });
    return () => {
      stopOrders();
      stopTrades();
    };
  }, [portfolioId]);

  useEffect(() => setError(null), [portfolioId, symbol, side, type, quantity, limit, stop]);

  const wantsLimit = type !== "stop";
  const wantsStop = type !== "limit";
  const problems = {
    symbol: SYMBOL.test(symbol) ? undefined : "choose a symbol above",
    quantity: decimalProblem(quantity, { places: 8 }),
    limitPrice: wantsLimit ? decimalProblem(limit, { places: 6 }) : undefined,
    stopPrice: wantsStop ? decimalProblem(stop, { places: 6 }) : undefined,
  };
  const { shown, pass, reset, apiError } = useFieldChecks(problems, error);

  async function submit(event: Event) {
    event.preventDefault();
    if (!pass() || !portfolioId) return;
    const draft = {
      portfolioId,
      symbol,
      side,
      type,
      quantity: quantity.trim(),
      ...(wantsLimit ? { limitPrice: limit.trim() } : {}),
      ...(wantsStop ? { stopPrice: stop.trim() } : {}),
      timeInForce: inForce,
    };
    await send(draft, {
      start: () => setNotice(null),
      post: (key) => placeOrder(draft, key),
      done: (placed) => {
        setOrders((shown) => upsert(shown, placed));
        if (!placed.id || !settled.current.has(placed.id)) setNotice(`Placed: ${describe(placed)}.`);
        setQuantity("");
        reset();
      },
    });
  }

  async function cancel(order: Order) {
    if (!order.id) return;
    try {
      const cancelled = await cancelOrder(order.id);
      setOrders((shown) => upsert(shown, cancelled));
    } catch (failure) {
      setListError(failure);
    }
  }

  return (
    <section class="card" aria-labelledby="orders-title" data-testid="orders">
      <h2 id="orders-title">Limit and stop orders</h2>
      {!portfolio ? (
        <p class="muted">Choose a portfolio to place orders.</p>
      ) : tracking ? (
        <p class="muted" data-testid="orders-tracking">
          Orders are for paper portfolios: {portfolio.name} is a tracking portfolio, which records
          real trades by hand. Create a paper portfolio to place limit and stop orders.
        </p>
      ) : (
        <>
          <ErrorBanner error={fieldError(apiError) ? null : error} testid="order-error" />
          <NoticeBanner notice={notice} testid="order-notice" />
          <form onSubmit={submit} data-testid="order-form" noValidate>
            <p class="muted">
              {symbol && SYMBOL.test(symbol) ? `${symbol.toUpperCase()} in ${portfolio.name}` : shown("symbol")}
            </p>
            <div class="segmented" role="group" aria-label="Order side">
              {(["buy", "sell"] as const).map((s) => (
                <button
                  key={s}
                  type="button"
                  aria-pressed={side === s}
                  onClick={() => setSide(s)}
                  data-testid={`order-side-${s}`}
                >
                  {s === "buy" ? "Buy" : "Sell"}
                </button>
              ))}
            </div>
            <div class="segmented" role="group" aria-label="Order type">
              {TYPES.map((t) => (
                <button
                  key={t.type}
                  type="button"
                  aria-pressed={type === t.type}
                  onClick={() => setType(t.type)}
                  data-testid={`order-type-${t.type}`}
                >
                  {t.label}
                </button>
              ))}
            </div>
            <DecimalField
              label="Shares"
              id="order-quantity"
              error={shown("quantity")}
              value={quantity}
              onValue={setQuantity}
            />
            {wantsStop && (
              <DecimalField
                label="Stop price"
                id="order-stop"
                error={shown("stopPrice")}
                hint={side === "buy" ? "Triggers at or above it." : "Triggers at or below it."}
                value={stop}
                onValue={setStop}
              />
            )}
            {wantsLimit && (
              <DecimalField
                label="Limit price"
                id="order-limit"
                error={shown("limitPrice")}
                hint={side === "buy" ? "Fills at or below it." : "Fills at or above it."}
                value={limit}
                onValue={setLimit}
              />
            )}
            <Field label="Good for" id="order-tif">
              <Select id="order-tif" value={inForce} onValue={setInForce} choices={DURATIONS} data-testid="order-tif" />
            </Field>
            <button type="submit" class="primary" disabled={busy} aria-busy={busy} data-testid="order-submit">
              {busy ? "Placing…" : "Place order"}
            </button>
          </form>
          <ErrorBanner error={listError} testid="orders-error" />
          <Table
            class="nowrap"
            data-testid="orders-table"
            empty={orders.length === 0 && "No orders yet."}
            columns={[
              "Placed",
              "Order",
              { label: "Quantity", class: "num" },
              { label: "Stop", class: "num" },
              { label: "Limit", class: "num" },
              "Status",
              { label: "Filled at", class: "num" },
              ACTIONS,
            ]}
          >
            {orders.map((o) => (
              <tr key={o.id} data-testid="order-row" data-order-id={o.id} data-status={o.status}>
                <td>{dateTime(o.createdAt)}</td>
                <td>
                  {o.side} {o.symbol} {typeLabel(o.type)} ({o.timeInForce})
                </td>
                <td class="num">{formatQuantity(o.quantity)}</td>
                <td class="num">{o.stopPrice ? price(o.stopPrice) : ""}</td>
                <td class="num">{o.limitPrice ? price(o.limitPrice) : ""}</td>
                <td data-testid="order-status">
                  {o.status}
                  {o.triggered && o.status === "open" ? " (triggered)" : ""}
                  {o.statusReason ? `: ${o.statusReason}` : ""}
                </td>
                <td class="num">{o.filledPrice ? price(o.filledPrice) : ""}</td>
                <td>
                  {o.status === "open" && (
                    <button type="button" onClick={() => cancel(o)} data-testid="order-cancel">
                      Cancel
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </Table>
        </>
      )}
    </section>
  );
}

/** Whether the API's error names one of the form's fields (shown beside it, not in a banner). */
function fieldError(error: ApiError | null): boolean {
  return (error?.details.fields ?? []).some((f) =>
    ["quantity", "limitPrice", "stopPrice", "symbol"].includes(f.field),
  );
}

function typeLabel(type: string | undefined): string {
  return TYPES.find((t) => t.type === type)?.label.toLowerCase() ?? type ?? "";
}

function describe(order: Order): string {
  const levels = [
    order.stopPrice ? `stop ${price(order.stopPrice)}` : "",
    order.limitPrice ? `limit ${price(order.limitPrice)}` : "",
  ].filter(Boolean);
  return `${order.side} ${formatQuantity(order.quantity)} ${order.symbol} ${typeLabel(order.type)} (${levels.join(", ")})`;
}

/** The list with `order` in place of its older copy, or first when new (newest first). A copy
 * older than the one shown (events can cross an answer) does not replace it. */
function upsert(shown: Order[], order: Order): Order[] {
  const at = shown.findIndex((o) => o.id === order.id);
  if (at === -1) return [order, ...shown];
  const current = shown[at];
  if (current?.updatedAt && order.updatedAt) {
    if (Date.parse(current.updatedAt) > Date.parse(order.updatedAt)) return shown;
  }
  return shown.map((o, i) => (i === at ? order : o));
}
