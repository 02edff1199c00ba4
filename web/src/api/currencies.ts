/** Currencies and the parts of a return (README: Currencies, the three-part return and
 * benchmarks). The generated schema carries GetPerformance's `benchmark`, `breakdown` and
 * `currency` and a position's `currency`, `localPrice` and `fxRate` once the client is
 * regenerated from the OpenAPI document; until then these narrow types follow portfolio.proto's
 * ReturnBreakdown, BenchmarkComparison and Position, and GetPerformance is called through the
 * same client (its token handling and error envelope) with the query it will declare. */

import { api, envelope, type Performance, type Position } from "./client";
import type { Range } from "./portfolios";

/** The currencies a portfolio may be kept in (the service's own list; others are refused). */
export const CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF"] as const;
/** Benchmarks offered by the picker: listings of the simulated market and of most providers. */
export const BENCHMARKS = ["SPY", "QQQ"] as const;

export type Breakdown = {
  totalGain?: string;
  capitalGain?: string;
  dividendGain?: string;
  currencyGain?: string;
  fees?: string;
  totalContribution?: string;
  capitalContribution?: string;
  dividendContribution?: string;
  currencyContribution?: string;
  feesContribution?: string;
};

export type BenchmarkComparison = {
  symbol?: string;
  timeWeightedReturn?: string;
  series?: { date?: string; value?: string }[];
  alpha?: string;
  trackingDifference?: string;
  endValue?: string;
};

export type PerformanceWithParts = Performance & {
  currency?: string;
  breakdown?: Breakdown;
  benchmark?: BenchmarkComparison;
};

export type ListedPosition = Position & { currency?: string; localPrice?: string; fxRate?: string };

type Loose = {
  GET(
    path: string,
    init: { params: { query: Record<string, string> } },
  ): Promise<{ data?: { data: unknown }; response: Response }>;
};

export async function performanceWithParts(
  portfolioId: string,
  range: Range,
  benchmark: string,
): Promise<PerformanceWithParts> {
  const query: Record<string, string> = { portfolioId, range };
  if (benchmark) query.benchmark = benchmark;
  const client = api() as unknown as Loose;
  const body = await envelope(client.GET("/api/v1/performance", { params: { query } }));
  return body.data as PerformanceWithParts;
}

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
