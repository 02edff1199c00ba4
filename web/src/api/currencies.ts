/** Currencies (README: Currencies): those a portfolio may be kept in, the benchmarks offered, and
 * today's exchange rates. */

import { api, envelope } from "./client";

/** The currencies a portfolio may be kept in (the service's own list; others are refused). */
export const CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF"] as const;
/** Benchmarks offered by the picker: listings of the simulated market and of most providers. */
export const BENCHMARKS = ["SPY", "QQQ"] as const;

/** How many `to` one `from` buys today (GET /api/v1/fx), or undefined when the API has no rate. */
export async function fxRate(from: string, to: string): Promise<number | undefined> {
  if (from === to) return 1;
  try {
    const { data } = await envelope(api().GET("/api/v1/fx", { params: { query: { from, to } } }));
    const rate = Number(data.rate);
    return data.rate && Number.isFinite(rate) ? rate : undefined;
  } catch {
    return undefined;
  }
}

/** Today's rate from each of `currencies` into `into`; a currency without one is left out. */
export async function ratesInto(currencies: Iterable<string>, into: string): Promise<Map<string, number>> {
  const distinct = [...new Set(currencies)];
  const rates = await Promise.all(distinct.map((from) => fxRate(from, into)));
  const found = new Map<string, number>();
  distinct.forEach((from, i) => {
    const rate = rates[i];
    if (rate !== undefined) found.set(from, rate);
  });
  return found;
}
