/** The portfolio's dividend income (README: Dividend income): what it received in a year (or all
 * time) by month, quarter or year as bars, by symbol with the tax withheld, the trailing twelve
 * months and yield on cost, and what its holdings are announced to pay in the next twelve months,
 * all in the portfolio's currency. */

import { useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner } from "../../components/form";
import { Table } from "../../components/Table";
import { thisYear, YearPicker, yearPeriod } from "../../components/YearPicker";
import { money, quantity, price as formatPrice, ratio } from "../../format";

type Grouping = "month" | "quarter" | "year";
type Period = Schemas["stockfolio.portfolio.v1.IncomePeriod"];

const GROUPINGS: { value: Grouping; label: string }[] = [
  { value: "month", label: "Month" },
  { value: "quarter", label: "Quarter" },
  { value: "year", label: "Year" },
];

/** Today (UTC), as the API's days are written. */
function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export function Income(props: { portfolioId: string; currency: string; version: string }) {
  const [year, setYear] = useState(thisYear());
  const [grouping, setGrouping] = useState<Grouping>("month");
  const period = yearPeriod(year);
  const income = useApi(
    () =>
      envelope(
        api().GET("/api/v1/portfolios/{portfolio_id}/income", {
          params: {
            path: { portfolio_id: props.portfolioId },
            query: { ...period, groupBy: grouping },
          },
        }),
      ),
    [props.portfolioId, year, grouping, props.version],
  );
  const data = income.data?.data;
  const currency = data?.currency || props.currency;
  const totals = data?.totals;
  const trailing = data?.trailing;
  const projected = data?.projected;
  const symbols = data?.symbols ?? [];
  const announced = projected?.dividends ?? [];
  return (
    <section class="card" aria-labelledby="income-title" data-testid="income">
      <div class="row spread">
        <h2 id="income-title">Income</h2>
        <div class="row">
          <YearPicker label="Period" value={year} onChange={setYear} testid="income-year" />
          <label>
            By{" "}
            <select
              value={grouping}
              onChange={(e) => setGrouping((e.target as HTMLSelectElement).value as Grouping)}
              data-testid="income-grouping"
            >
              {GROUPINGS.map((g) => (
                <option key={g.value} value={g.value}>
                  {g.label}
                </option>
              ))}
            </select>
          </label>
        </div>
      </div>
      <ErrorBanner error={income.error} testid="income-error" />
      <dl class="stats" data-testid="income-totals">
        <div>
          <dt>Dividends</dt>
          <dd data-testid="income-gross">{money(totals?.gross ?? 0, currency)}</dd>
        </div>
        <div>
          <dt>Withheld</dt>
          <dd data-testid="income-fees">{money(totals?.fees ?? 0, currency)}</dd>
        </div>
        <div>
          <dt>Net</dt>
          <dd data-testid="income-net">{money(totals?.net ?? 0, currency)}</dd>
        </div>
        <div>
          <dt title={trailing ? `${trailing.start} to ${trailing.end}` : undefined}>
            {trailing?.end && trailing.end !== today()
              ? `12 months to ${trailing.end}`
              : "Last 12 months"}
          </dt>
          <dd data-testid="income-ttm">{money(trailing?.income?.gross ?? 0, currency)}</dd>
        </div>
        <div>
          <dt title="Last 12 months' dividends of the holdings still held, over their cost basis">
            Yield on cost
          </dt>
          <dd data-testid="income-yield">{ratio(trailing?.yieldOnCost)}</dd>
        </div>
      </dl>
      <Bars periods={data?.periods ?? []} currency={currency} />

      <h3 class="subhead">By symbol</h3>
      <Table
        class="nowrap"
        data-testid="income-symbols"
        aria-busy={income.loading}
        empty={symbols.length === 0 && !income.loading && "No dividends in this period."}
        columns={[
          "Symbol",
          { label: "Payments", class: "num" },
          { label: "Gross", class: "num" },
          { label: "Withheld", class: "num hide-narrow" },
          { label: "Net", class: "num" },
          { label: "Share", class: "num" },
        ]}
      >
        {symbols.map((s) => (
          <tr key={s.symbol} data-testid="income-symbol">
            <td>{s.symbol}</td>
            <td class="num">{s.income?.count ?? 0}</td>
            <td class="num">{money(s.income?.gross, currency)}</td>
            <td class="num hide-narrow">{money(s.income?.fees, currency)}</td>
            <td class="num">{money(s.income?.net, currency)}</td>
            <td class="num">{ratio(s.share)}</td>
          </tr>
        ))}
      </Table>

      <h3 class="subhead">Next 12 months</h3>
      {projected?.note && (
        <p class="muted" data-testid="income-projected-note">
          {projected.note}
        </p>
      )}
      <Table
        class="nowrap"
        data-testid="income-projected"
        aria-busy={income.loading}
        empty={
          announced.length === 0 && !income.loading && !projected?.note && "No dividend announced for the holdings."
        }
        columns={[
          "Ex-date",
          "Symbol",
          { label: "Shares", class: "num hide-narrow" },
          { label: "Per share", class: "num" },
          { label: "Amount", class: "num" },
        ]}
        foot={
          announced.length > 0 && (
            <tr>
              <th scope="row" colSpan={4}>
                Total
              </th>
              <td class="num" data-testid="income-projected-total">
                {money(projected?.total, currency)}
              </td>
            </tr>
          )
        }
      >
        {announced.map((d) => (
          <tr key={`${d.symbol}-${d.exDate}`} data-testid="income-announced">
            <td>{d.exDate}</td>
            <td>{d.symbol}</td>
            <td class="num hide-narrow">{quantity(d.quantity)}</td>
            <td class="num">
              {formatPrice(d.perShare)} {d.currency}
            </td>
            <td class="num">{money(d.amount, currency)}</td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

/** Gross income per period as bars (each named, with its amount, for a screen reader and a
 * pointer's tooltip), the first and last periods' labels under them; nothing without income. */
function Bars({ periods, currency }: { periods: Period[]; currency: string }) {
  const values = periods.map((p) => Math.max(0, Number(p.income?.gross ?? 0)));
  const top = Math.max(0, ...values);
  if (top === 0) return null; // no income: no empty frame (the table below says so)
  const width = 100 / periods.length;
  const first = periods[0]?.label ?? "";
  const last = periods[periods.length - 1]?.label ?? "";
  return (
    <figure class="bars" data-testid="income-chart">
      <svg
        viewBox="0 0 100 40"
        preserveAspectRatio="none"
        role="img"
        aria-label="Dividends by period"
      >
        {periods.map((p, i) => {
          const height = top > 0 ? ((values[i] ?? 0) / top) * 40 : 0;
          const named = `${p.label}: ${money(p.income?.gross, currency)}`;
          return (
            <rect
              key={p.label}
              x={i * width + width * 0.1}
              y={40 - height}
              width={width * 0.8}
              height={height}
              data-testid="income-bar"
              aria-label={named}
            >
              <title>{named}</title>
            </rect>
          );
        })}
      </svg>
      <figcaption class="row spread muted">
        <span>{first}</span>
        {last !== first && <span>{last}</span>}
      </figcaption>
    </figure>
  );
}
