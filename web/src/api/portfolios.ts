/** Calls several screens share: every portfolio of the user, a portfolio's performance. */

import { api, envelope, type Performance, type Portfolio } from "./client";

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

export async function performance(portfolioId: string, range: Range): Promise<Performance> {
  const body = await envelope(
    api().GET("/api/v1/performance", { params: { query: { portfolioId, range } } }),
  );
  return body.data;
}
