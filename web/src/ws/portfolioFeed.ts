/** One /ws/portfolio socket for the whole app, shared by every screen: components watch a symbol
 * or a portfolio and hear only its own ticks (a tick re-renders one cell, not the page). The feed
 * counts watchers, subscribes a key when the first arrives and unsubscribes when the last leaves,
 * and subscribes everything again on each new socket. */

import { useEffect, useState } from "preact/hooks";
import type {
  AlertMessage,
  OrderMessage,
  PortfolioValueMessage,
  PriceMessage,
  TradeDeletedMessage,
  TradeMessage,
  TradeUpdatedMessage,
} from "./protocol";
import { LiveSocket, type SocketStatus } from "./socket";

type Listener<T> = (value: T) => void;

class Keyed<T> {
  readonly latest = new Map<string, T>();
  private readonly listeners = new Map<string, Set<Listener<T>>>();

  watch(key: string, listener: Listener<T>): { first: boolean; stop: () => boolean } {
    let set = this.listeners.get(key);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    const owned = set;
    return {
      first,
      // true when this was the key's last watcher
      stop: () => {
        owned.delete(listener);
        if (owned.size > 0 || this.listeners.get(key) !== owned) return false;
        this.listeners.delete(key);
        return true;
      },
    };
  }

  keys(): string[] {
    return [...this.listeners.keys()];
  }

  publish(key: string, value: T): void {
    this.latest.set(key, value);
    for (const listener of this.listeners.get(key) ?? []) listener(value);
  }
}

class PortfolioFeed {
  private socket: LiveSocket<"/ws/portfolio"> | null = null;
  private readonly prices = new Keyed<PriceMessage>();
  private readonly values = new Keyed<PortfolioValueMessage>();
  private readonly trades = new Set<Listener<TradeMessage["trade"]>>();
  private readonly deletedTrades = new Set<Listener<TradeDeletedMessage["trade"]>>();
  private readonly updatedTrades = new Set<Listener<TradeUpdatedMessage["trade"]>>();
  private readonly orders = new Set<Listener<OrderMessage["order"]>>();
  private readonly alerts = new Set<Listener<AlertMessage>>();
  private readonly statusListeners = new Set<Listener<SocketStatus>>();
  private status: SocketStatus = "closed";
  private pending = { subscribe: new Set<string>(), unsubscribe: new Set<string>() };
  private pendingPortfolios = { subscribe: new Set<string>(), unsubscribe: new Set<string>() };
  private flushQueued = false;

  watchPrice(symbol: string, listener: Listener<PriceMessage>): () => void {
    return this.watchKeyed(this.prices, this.pending, symbol.trim().toUpperCase(), listener);
  }

  watchValue(portfolioId: string, listener: Listener<PortfolioValueMessage>): () => void {
    return this.watchKeyed(this.values, this.pendingPortfolios, portfolioId, listener);
  }

  /** The listener hears the key's latest message at once, if any; the socket subscribes to the
   * key with its first watcher and unsubscribes after its last. */
  private watchKeyed<T>(
    feed: Keyed<T>,
    pending: { subscribe: Set<string>; unsubscribe: Set<string> },
    key: string,
    listener: Listener<T>,
  ): () => void {
    const { first, stop } = feed.watch(key, listener);
    const last = feed.latest.get(key);
    if (last) listener(last);
    if (first) this.change(pending, key, "subscribe");
    return () => {
      if (stop()) this.change(pending, key, "unsubscribe");
    };
  }

  /** Every trade of the signed-in user, made here or anywhere else. */
  watchTrades(listener: Listener<TradeMessage["trade"]>): () => void {
    this.trades.add(listener);
    this.ensureSocket();
    return () => this.trades.delete(listener);
  }

  /** Every trade of the signed-in user deleted, here or anywhere else (the trade as it was). */
  watchDeletedTrades(listener: Listener<TradeDeletedMessage["trade"]>): () => void {
    this.deletedTrades.add(listener);
    this.ensureSocket();
    return () => this.deletedTrades.delete(listener);
  }

  /** Every trade of the signed-in user changed in place, here or anywhere else: edited, or a
   * market-paid dividend recomputed (the trade as it is now). */
  watchUpdatedTrades(listener: Listener<TradeUpdatedMessage["trade"]>): () => void {
    this.updatedTrades.add(listener);
    this.ensureSocket();
    return () => this.updatedTrades.delete(listener);
  }

  /** Every trade of the signed-in user recorded, changed or deleted: what changes a
   * portfolio's book (a page showing one reloads on any). */
  watchTradeChanges(listener: Listener<TradeMessage["trade"]>): () => void {
    const stopRecorded = this.watchTrades(listener);
    const stopDeleted = this.watchDeletedTrades(listener);
    const stopUpdated = this.watchUpdatedTrades(listener);
    return () => {
      stopRecorded();
      stopDeleted();
      stopUpdated();
    };
  }

  /** Every change of the signed-in user's orders (placed, filled, rejected, ...). */
  watchOrders(listener: Listener<OrderMessage["order"]>): () => void {
    this.orders.add(listener);
    this.ensureSocket();
    return () => this.orders.delete(listener);
  }

  /** Every price alert of the signed-in user that fires. */
  watchAlerts(listener: Listener<AlertMessage>): () => void {
    this.alerts.add(listener);
    this.ensureSocket();
    return () => this.alerts.delete(listener);
  }

  watchStatus(listener: Listener<SocketStatus>): () => void {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  private change(
    pending: { subscribe: Set<string>; unsubscribe: Set<string> },
    key: string,
    action: "subscribe" | "unsubscribe",
  ): void {
    const other = action === "subscribe" ? "unsubscribe" : "subscribe";
    if (!pending[other].delete(key)) pending[action].add(key);
    this.ensureSocket();
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    const socket = this.socket;
    if (!socket?.isReady) return; // onReady subscribes everything watched
    for (const action of ["subscribe", "unsubscribe"] as const) {
      const symbols = [...this.pending[action]];
      const portfolioIds = [...this.pendingPortfolios[action]];
      if (symbols.length || portfolioIds.length) socket.send({ type: action, symbols, portfolioIds });
      this.pending[action].clear();
      this.pendingPortfolios[action].clear();
    }
  }

  private ensureSocket(): void {
    if (this.socket !== null) return;
    this.socket = new LiveSocket("/ws/portfolio", {
      onReady: () => {
        this.pending = { subscribe: new Set(), unsubscribe: new Set() };
        this.pendingPortfolios = { subscribe: new Set(), unsubscribe: new Set() };
        const symbols = this.prices.keys();
        const portfolioIds = this.values.keys();
        if (symbols.length || portfolioIds.length) {
          this.socket?.send({ type: "subscribe", symbols, portfolioIds });
        }
      },
      onStatus: (status) => {
        this.status = status;
        if (status === "closed") this.socket = null; // signed out: the next watcher opens anew
        for (const listener of this.statusListeners) listener(status);
      },
      onMessage: (message) => {
        switch (message.type) {
          case "price":
            this.prices.publish(message.symbol.toUpperCase(), message);
            break;
          case "resync":
            // The latest prices follow at once; only a latest price is kept here.
            break;
          case "portfolio_value":
            this.values.publish(message.portfolioId, message);
            break;
          case "trade":
            for (const listener of this.trades) listener(message.trade);
            break;
          case "trade_deleted":
            for (const listener of this.deletedTrades) listener(message.trade);
            break;
          case "trade_updated":
            for (const listener of this.updatedTrades) listener(message.trade);
            break;
          case "order":
            for (const listener of this.orders) listener(message.order);
            break;
          case "alert":
            for (const listener of this.alerts) listener(message);
            break;
          case "error":
            console.warn("/ws/portfolio:", message.code, message.message ?? "");
            break;
        }
      },
    });
  }
}

export const portfolioFeed = new PortfolioFeed();

/** The latest tick of a symbol (undefined until one arrives). */
export function usePrice(symbol: string | undefined): PriceMessage | undefined {
  return useLatest(symbol, (key, listener) => portfolioFeed.watchPrice(key, listener));
}

/** The latest published value of a portfolio (undefined until one arrives). */
export function usePortfolioValue(id: string | undefined): PortfolioValueMessage | undefined {
  return useLatest(id, (key, listener) => portfolioFeed.watchValue(key, listener));
}

/** The latest message `watch` hands over for `key`: undefined until one arrives, and again
 * from the moment the key changes. */
function useLatest<M>(
  key: string | undefined,
  watch: (key: string, listener: Listener<M>) => () => void,
): M | undefined {
  const [latest, setLatest] = useState<M | undefined>(undefined);
  useEffect(() => {
    setLatest(undefined);
    if (!key) return;
    return watch(key, setLatest);
  }, [key]);
  return latest;
}

export function useFeedStatus(): SocketStatus {
  const [status, setStatus] = useState<SocketStatus>("closed");
  useEffect(() => portfolioFeed.watchStatus(setStatus), []);
  return status;
}
