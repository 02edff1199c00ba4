/** The portfolio's realized gains in a tax year (or all time), a page at a time: every sale's
 * closed lots (oldest lots first), with the days held and the term, and the year's totals, in the
 * portfolio's currency. */

import { useEffect, useState } from "preact/hooks";
import { api, envelope } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner } from "../../components/form";
import { Pager, Table } from "../../components/Table";
import { thisYear, YearPicker, yearPeriod } from "../../components/YearPicker";
import { money, quantity, signed, trend } from "../../format";

const PAGE_SIZE = 20;

export function RealizedGains(props: { portfolioId: string; currency: string; version: string }) {
  const [year, setYear] = useState(thisYear());
  const [page, setPage] = useState(1);
  useEffect(() => setPage(1), [props.portfolioId, year]);
  const period = yearPeriod(year);
  const gains = useApi(
    () =>
      envelope(
        api().GET("/api/v1/portfolios/{portfolio_id}/realized-gains", {
          params: {
            path: { portfolio_id: props.portfolioId },
            query: { ...period, page, limit: PAGE_SIZE },
          },
        }),
      ),
    [props.portfolioId, year, page, props.version],
  );
  const data = gains.data?.data;
  const rows = data?.gains ?? [];
  const totals = data?.totals;
  const pages = Math.max(1, gains.data?.pagination?.totalPages ?? 1);
  const currency = data?.currency || props.currency;
  return (
    <section class="card" aria-labelledby="realized-title">
      <div class="row spread">
        <h2 id="realized-title">Realized gains</h2>
        <YearPicker label="Year" value={year} onChange={setYear} testid="realized-year" />
      </div>
      <ErrorBanner error={gains.error} testid="realized-error" />
      <dl class="stats" data-testid="realized-totals">
        <div>
          <dt>Short term</dt>
          <dd class={trend(totals?.shortTerm)} data-testid="realized-short">
            {signed(totals?.shortTerm ?? 0, currency)}
          </dd>
        </div>
        <div>
          <dt>Long term</dt>
          <dd class={trend(totals?.longTerm)} data-testid="realized-long">
            {signed(totals?.longTerm ?? 0, currency)}
          </dd>
        </div>
        <div>
          <dt>Total</dt>
          <dd class={trend(totals?.total)} data-testid="realized-total">
            {signed(totals?.total ?? 0, currency)}
          </dd>
        </div>
      </dl>
      <Table
        class="nowrap"
        data-testid="realized-table"
        aria-busy={gains.loading}
        empty={rows.length === 0 && !gains.loading && "No sales in this period."}
        columns={[
          "Sold",
          "Symbol",
          { label: "Quantity", class: "num" },
          "Acquired",
          { label: "Days held", class: "num hide-narrow" },
          "Term",
          { label: "Proceeds", class: "num" },
          { label: "Cost basis", class: "num" },
          { label: "Gain", class: "num" },
        ]}
      >
        {rows.map((g, i) => (
          <tr key={`${g.tradeId}-${g.soldOn}-${i}`} data-testid="realized-row">
            <td>{g.soldOn}</td>
            <td>
              {g.symbol}
              {g.cashInLieu && <span class="muted"> (cash in lieu)</span>}
            </td>
            <td class="num">{quantity(g.quantity)}</td>
            <td>{g.acquiredOn}</td>
            <td class="num hide-narrow">{g.holdingDays ?? ""}</td>
            <td>{g.term}</td>
            <td class="num">{money(g.proceeds, currency)}</td>
            <td class="num">{money(g.costBasis, currency)}</td>
            <td class={`num ${trend(g.gain)}`}>{signed(g.gain ?? 0, currency)}</td>
          </tr>
        ))}
      </Table>
      {pages > 1 && (
        <Pager
          label="Realized gains pages"
          page={page}
          pages={pages}
          onPage={setPage}
          previous="← Earlier"
          next="Later →"
          testid="realized"
        />
      )}
    </section>
  );
}
