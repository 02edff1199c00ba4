/** A portfolio's value as it moves: cash plus each holding at its latest tick, and the day's
 * change (quantity times each symbol's change since the previous close). A `portfolio_value`
 * message from the service's revaluation is the authority whenever it arrives; ticks move the
 * number in between.
 *
 * Ticks are in the listing's currency and the portfolio's value in its own: a tick is converted
 * at the position's `fxRate` (today's rate, as the API valued it). A position without a rate (its
 * currency not known yet) keeps the price it was loaded at: ticks do not move it. */

import { useEffect, useState } from "preact/hooks";
import type { Portfolio } from "../api/client";
import { portfolioFeed } from "./portfolioFeed";

export type LiveTotals = {
  total: number;
  gain: number;
  dayChange: number;
  /** The day's change as a share of the value at the previous close. */
  dayChangeRatio: number;
  /** When the number last moved (ISO time of the message), or undefined: as loaded. */
  at?: string;
};

function initial(portfolio: Portfolio): LiveTotals {
  return {
    total: Number(portfolio.totalValue ?? 0),
    gain: Number(portfolio.totalGainLoss ?? 0),
    dayChange: 0,
    dayChangeRatio: 0,
  };
}

export function useLiveTotals(portfolios: Portfolio[]): Map<string, LiveTotals> {
  const [totals, setTotals] = useState(
    () => new Map(portfolios.map((p) => [p.id ?? "", initial(p)])),
  );
  useEffect(() => {
    const current = new Map(portfolios.map((p) => [p.id ?? "", initial(p)]));
    // A value published before these portfolios were loaded is older than what they say.
    const loadedAt = Date.now();
    setTotals(new Map(current));
    const stops: (() => void)[] = [];
    for (const portfolio of portfolios) {
      const id = portfolio.id ?? "";
      const cost = Number(portfolio.totalCost ?? 0);
      const cash = Number(portfolio.cash ?? 0);
      const held = (portfolio.positions ?? []).filter((p) => p.symbol && Number(p.quantity) !== 0);
      const ticks = new Map<string, { price: number; change: number; time: string }>();
      const publish = (next: LiveTotals) => {
        current.set(id, next);
        setTotals(new Map(current));
      };
      const fromTicks = () => {
        let total = cash;
        let dayChange = 0;
        let at: string | undefined;
        for (const position of held) {
          const symbol = (position.symbol ?? "").toUpperCase();
          const quantity = Number(position.quantity);
          const rate = position.fxRate ? Number(position.fxRate) : NaN;
          // Unknown rate: the tick cannot be converted; the loaded price stands.
          const tick = Number.isFinite(rate) ? ticks.get(symbol) : undefined;
          total += tick ? quantity * tick.price * rate : quantity * Number(position.price ?? 0);
          dayChange += tick ? quantity * tick.change * rate : 0;
          if (tick && (!at || tick.time > at)) at = tick.time;
        }
        const previous = total - dayChange;
        publish({
          total,
          gain: total - cost,
          dayChange,
          dayChangeRatio: previous !== 0 ? dayChange / previous : 0,
          at,
        });
      };
      for (const position of held) {
        stops.push(
          portfolioFeed.watchPrice(position.symbol ?? "", (tick) => {
            ticks.set(tick.symbol.toUpperCase(), {
              price: Number(tick.price),
              change: Number(tick.change),
              time: tick.time,
            });
            fromTicks();
          }),
        );
      }
      stops.push(
        portfolioFeed.watchValue(id, (value) => {
          if (Date.parse(value.time) < loadedAt) return;
          const before = current.get(id) ?? initial(portfolio);
          const total = Number(value.totalValue);
          const previous = total - before.dayChange;
          publish({
            ...before,
            total,
            gain: Number(value.totalGainLoss),
            dayChangeRatio: previous !== 0 ? before.dayChange / previous : 0,
            at: value.time,
          });
        }),
      );
    }
    return () => stops.forEach((stop) => stop());
  }, [portfolios]);
  return totals;
}
