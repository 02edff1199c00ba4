/** The portfolio's trades, newest first, a page at a time. A trade's price, fees and amount are
 * in the currency it was made in (a stock's own; cash in the portfolio's), shown with its sign. */

import { useEffect, useState } from "preact/hooks";
import { api, envelope } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner } from "../../components/form";
import { dateTime, money, price, quantity } from "../../format";

const PAGE_SIZE = 20;

export function Trades(props: { portfolioId: string; currency: string; version: string }) {
  const [page, setPage] = useState(1);
  useEffect(() => setPage(1), [props.portfolioId]);
  const trades = useApi(
    () =>
      envelope(
        api().GET("/api/v1/trades", {
          params: { query: { portfolioId: props.portfolioId, page, limit: PAGE_SIZE } },
        }),
      ),
    [props.portfolioId, page, props.version],
  );
  const rows = trades.data?.data ?? [];
  const pages = Math.max(1, trades.data?.pagination?.totalPages ?? 1);
  const total = trades.data?.pagination?.total ?? 0;
  return (
    <section class="card" aria-labelledby="trades-title">
      <h2 id="trades-title">Trades</h2>
      <ErrorBanner error={trades.error} testid="trades-error" />
      <div class="table-wrap">
        <table class="nowrap" data-testid="trades-table" aria-busy={trades.loading}>
          <thead>
            <tr>
              <th scope="col">Date</th>
              <th scope="col">Side</th>
              <th scope="col">Symbol</th>
              <th scope="col" class="num">Quantity</th>
              <th scope="col" class="num">Price</th>
              <th scope="col" class="num hide-narrow">Fees</th>
              <th scope="col" class="num">Amount</th>
              <th scope="col" class="hide-narrow">Notes</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id} data-testid="trade-row" data-trade-id={t.id}>
                <td>{dateTime(t.executedAt)}</td>
                <td>{t.side}</td>
                <td>{t.symbol}</td>
                <td class="num">{quantity(t.quantity)}</td>
                <td class="num">{price(t.price)}</td>
                <td class="num hide-narrow">{money(t.fees, t.currency || props.currency)}</td>
                <td class="num">{money(t.amount, t.currency || props.currency)}</td>
                <td class="hide-narrow">{t.notes}</td>
              </tr>
            ))}
            {rows.length === 0 && !trades.loading && (
              <tr>
                <td colSpan={8} class="muted">
                  No trades yet.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <nav class="row spread" aria-label="Trade pages">
        <button
          type="button"
          disabled={page <= 1}
          onClick={() => setPage(page - 1)}
          data-testid="trades-prev"
        >
          ← Newer
        </button>
        <span data-testid="trades-page">
          Page {page} of {pages} · {total} trades
        </span>
        <button
          type="button"
          disabled={page >= pages}
          onClick={() => setPage(page + 1)}
          data-testid="trades-next"
        >
          Older →
        </button>
      </nav>
    </section>
  );
}
