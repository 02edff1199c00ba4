/** Calls several screens share: every portfolio of the user, a portfolio's performance. */

import { api, dataOf, envelope, type Performance, type Portfolio } from "./client";

export const RANGES = ["1m", "3m", "6m", "1y", "ytd", "all"] as const;
export type Range = (typeof RANGES)[number];

export async function listPortfolios(): Promise<Portfolio[]> {
  const all: Portfolio[] = [];
  for (let page = 1; ; page += 1) {
    const body = await envelope(
      api().GET("/api/v1/portfolios", { params: { query: { page, limit: 100 } } }),
    );
    all.push(...body.data);
    if (page >= (body.pagination?.totalPages ?? 1)) return all;
  }
}

/** A portfolio's performance over `range`, compared with `benchmark` when one is named. */
export function performance(portfolioId: string, range: Range, benchmark = ""): Promise<Performance> {
  const query = { portfolioId, range, ...(benchmark ? { benchmark } : {}) };
  return dataOf(api().GET("/api/v1/performance", { params: { query } }));
}
