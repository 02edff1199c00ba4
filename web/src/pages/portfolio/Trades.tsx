/** The portfolio's trades, newest first, a page at a time. A trade's price, fees and amount are
 * in the currency it was made in (a stock's own; cash in the portfolio's), shown with its sign.
 *
 * Each row has a Delete, for a trade recorded by mistake (asked once more before it goes). The
 * API replays the history without the trade and refuses (nothing changed) when a later trade
 * would not hold without it (INSUFFICIENT_SHARES, INSUFFICIENT_CASH: its message names that
 * trade) or when the trade is an order's fill; the refusal is shown under the row. Once one is
 * deleted, `onChanged` reloads the page's portfolio, and with it the positions, performance and
 * this list. A second delete of the same trade is a 404, so no Idempotency-Key is needed.
 *
 * Beside it an Edit opens a form under the row (TradeEdit.tsx) to correct the trade's figures;
 * a refusal is shown under the row as a deletion's is, and a saved edit reloads as one does. An
 * order's fill can be neither edited nor deleted (its order says what filled). */

import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner, NoticeBanner } from "../../components/form";
import { ACTIONS, Pager, Table, type Column } from "../../components/Table";
import { dateTime, money, price, quantity } from "../../format";
import { TradeEdit } from "./TradeEdit";

const PAGE_SIZE = 20;
const COLUMNS: Column[] = [
  "Date",
  "Side",
  "Symbol",
  { label: "Quantity", class: "num" },
  { label: "Price", class: "num" },
  { label: "Fees", class: "num hide-narrow" },
  { label: "Amount", class: "num" },
  { label: "Notes", class: "hide-narrow" },
  ACTIONS,
];

type Trade = Schemas["stockfolio.portfolio.v1.Trade"];

/** "buy of 10 AAPL on 2 Mar 2026, 15:00", "deposit of $1,000.00 on …", "KO dividend of …". */
function describe(t: Trade, currency: string): string {
  const when = dateTime(t.executedAt);
  const amount = money(t.amount, t.currency || currency);
  if (t.side === "buy" || t.side === "sell") {
    return `${t.side} of ${quantity(t.quantity)} ${t.symbol} on ${when}`;
  }
  return `${t.symbol ? `${t.symbol} ` : ""}${t.side} of ${amount} on ${when}`;
}

export function Trades(props: {
  portfolioId: string;
  currency: string;
  version: string;
  onChanged: () => void;
}) {
  const [page, setPage] = useState(1);
  useEffect(() => setPage(1), [props.portfolioId]);
  const [deleting, setDeleting] = useState<string | null>(null);
  // The last refusal, shown under the row it was for, and the last deletion done.
  const [refusal, setRefusal] = useState<{ id: string; error: unknown } | null>(null);
  const [notice, setNotice] = useState<{ text: string; testid: string } | null>(null);
  // The trade whose edit form is open under its row.
  const [editing, setEditing] = useState<string | null>(null);
  useEffect(() => setEditing(null), [props.portfolioId]);
  // A refusal was given against the history as it was: a change of it makes it stale.
  useEffect(() => setRefusal(null), [props.portfolioId, props.version]);
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

  async function remove(t: Trade) {
    const id = t.id ?? "";
    if (!id || deleting) return;
    const what = describe(t, props.currency);
    if (!confirm(`Delete the ${what}? Positions, cash and performance are worked out again without it.`)) {
      return;
    }
    setDeleting(id);
    setRefusal(null);
    setNotice(null);
    try {
      await api().DELETE("/api/v1/trades/{id}", { params: { path: { id } } });
      setNotice({ text: `Deleted the ${what}.`, testid: "trade-deleted" });
      if (editing === id) setEditing(null);
      // The last row of a later page gone: show the page before, which still has rows.
      if (rows.length === 1 && page > 1) setPage(page - 1);
      props.onChanged();
    } catch (failure) {
      setRefusal({ id, error: failure });
    } finally {
      setDeleting(null);
    }
  }

  return (
    <section class="card" aria-labelledby="trades-title">
      <h2 id="trades-title">Trades</h2>
      <ErrorBanner error={trades.error} testid="trades-error" />
      <NoticeBanner notice={notice?.text} testid={notice?.testid ?? "trade-notice"} />
      <Table
        class="nowrap"
        data-testid="trades-table"
        aria-busy={trades.loading}
        empty={rows.length === 0 && !trades.loading && "No trades yet."}
        columns={COLUMNS}
      >
        {rows.map((t) => (
          <Fragment key={t.id}>
            <tr data-testid="trade-row" data-trade-id={t.id}>
              <td>{dateTime(t.executedAt)}</td>
              <td>{t.side}</td>
              <td>{t.symbol}</td>
              <td class="num">{quantity(t.quantity)}</td>
              <td class="num">{price(t.price)}</td>
              <td class="num hide-narrow">{money(t.fees, t.currency || props.currency)}</td>
              <td class="num">{money(t.amount, t.currency || props.currency)}</td>
              <td class="hide-narrow">{t.notes}</td>
              <td>
                <button
                  type="button"
                  class="link"
                  disabled={Boolean(t.orderId)}
                  title={t.orderId ? "An order's fill cannot be edited: the order says what filled." : undefined}
                  onClick={() => {
                    setRefusal(null);
                    setNotice(null);
                    setEditing(editing === t.id ? null : (t.id ?? null));
                  }}
                  aria-label={`Edit the ${describe(t, props.currency)}`}
                  aria-expanded={editing === t.id}
                  data-testid="trade-edit"
                >
                  Edit
                </button>{" "}
                <button
                  type="button"
                  class="link"
                  disabled={deleting !== null || Boolean(t.orderId)}
                  title={t.orderId ? "An order's fill cannot be deleted: the order says it filled." : undefined}
                  onClick={() => void remove(t)}
                  aria-label={`Delete the ${describe(t, props.currency)}`}
                  data-testid="trade-delete"
                >
                  {deleting === t.id ? "Deleting…" : "Delete"}
                </button>
              </td>
            </tr>
            {editing === t.id && (
              <tr data-testid="trade-edit-row" data-trade-id={t.id}>
                <td colSpan={COLUMNS.length} class="wrap">
                  <TradeEdit
                    trade={t}
                    what={describe(t, props.currency)}
                    onCancel={() => setEditing(null)}
                    onSaved={(now) => {
                      setEditing(null);
                      const what = describe(now ?? t, props.currency);
                      setNotice({ text: `Saved the ${what}.`, testid: "trade-edited" });
                      props.onChanged();
                    }}
                  />
                </td>
              </tr>
            )}
            {refusal !== null && refusal.id === t.id && (
              <tr data-testid="trade-delete-refusal" data-trade-id={t.id}>
                <td colSpan={COLUMNS.length} class="wrap">
                  <ErrorBanner error={refusal.error} testid="trade-delete-error" />
                </td>
              </tr>
            )}
          </Fragment>
        ))}
      </Table>
      <Pager label="Trade pages" page={page} pages={pages} onPage={setPage} previous="← Newer" next="Older →" testid="trades">
        {` · ${total} trades`}
      </Pager>
    </section>
  );
}
