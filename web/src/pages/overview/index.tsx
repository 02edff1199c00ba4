/** Every portfolio added up in one currency (GET /api/v1/overview): the totals, each portfolio's
 * value in its own currency and converted, the holdings across portfolios by value with the cash,
 * and the rates used. Every figure is the API's (each portfolio's own figure times its rate, to the
 * cent): the page computes nothing. The currency is in the address (`?currency=EUR`), so a reload
 * or a shared link keeps it. */

import { useEffect, useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { api, dataOf, type Schemas } from "../../api/client";
import { CURRENCIES } from "../../api/currencies";
import { useApi } from "../../api/useApi";
import { Donut } from "../../components/Donut";
import { ErrorBanner, Loading } from "../../components/form";
import { Table } from "../../components/Table";
import { dateTime, money, percent, quantity, ratio, signed, trend } from "../../format";
import { portfolioFeed } from "../../ws/portfolioFeed";

type Overview = Schemas["stockfolio.portfolio.v1.GetOverviewResponse"];
type Totals = Schemas["stockfolio.portfolio.v1.OverviewTotals"];
type Holding = Schemas["stockfolio.portfolio.v1.OverviewHolding"];

/** Holdings shown before "Show all". */
const TOP = 10;

export default function OverviewPage() {
  const { query, route } = useLocation();
  const asked = (query.currency ?? "").toUpperCase();
  const currency = (CURRENCIES as readonly string[]).includes(asked) ? asked : "USD";
  const overview = useApi(
    () => dataOf(api().GET("/api/v1/overview", { params: { query: { currency } } })),
    [currency],
  );
  // A trade recorded or deleted anywhere (this tab, another, the API) changes a portfolio: load
  // it again.
  useEffect(() => portfolioFeed.watchTradeChanges(() => overview.reload()), []);
  const data = overview.data;
  return (
    <>
      <div class="row spread">
        <h1>Overview</h1>
        <label>
          Currency{" "}
          <select
            value={currency}
            data-testid="overview-currency"
            onChange={(e) => route(`/overview?currency=${e.currentTarget.value}`, true)}
          >
            {CURRENCIES.map((code) => (
              <option key={code} value={code}>
                {code}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBanner error={overview.error} testid="overview-error" />
      {data === undefined ? (
        overview.loading && <Loading what="the overview" />
      ) : (
        <Shown overview={data} loading={overview.loading} />
      )}
    </>
  );
}

function Shown({ overview, loading }: { overview: Overview; loading: boolean }) {
  const currency = overview.currency || "USD";
  const portfolios = overview.portfolios ?? [];
  return (
    <div aria-busy={loading} data-testid="overview" data-currency={currency}>
      <TotalsCard totals={overview.totals ?? {}} currency={currency} count={portfolios.length} />
      <Rates overview={overview} />
      {portfolios.length === 0 ? (
        <p class="card" data-testid="overview-empty">
          No portfolios yet: <a href="/">start one on the dashboard</a>.
        </p>
      ) : (
        <>
          <section class="card" aria-labelledby="overview-portfolios-title">
            <h2 id="overview-portfolios-title">Portfolios</h2>
            <Table
              class="nowrap"
              data-testid="overview-portfolios"
              columns={[
                "Portfolio",
                { label: "Kind", class: "hide-narrow" },
                { label: "Value", class: "num" },
                { label: "Rate", class: "num hide-narrow" },
                { label: <>In {currency}</>, class: "num" },
                { label: "Weight", class: "num" },
              ]}
            >
              {portfolios.map((p) => (
                <tr key={p.id} data-testid={`overview-portfolio-${p.id}`}>
                  <td>
                    <a href={`/portfolios/${p.id}`}>{p.name}</a>
                  </td>
                  <td class="hide-narrow">{p.kind}</td>
                  <td class="num">{money(p.localValue, p.currency || "USD")}</td>
                  <td class="num hide-narrow">{p.currency === currency ? "—" : p.fxRate}</td>
                  <td class="num" data-testid="overview-portfolio-value">
                    {money(p.value, currency)}
                  </td>
                  <td class="num">{ratio(p.weight)}</td>
                </tr>
              ))}
            </Table>
          </section>
          <Holdings holdings={overview.holdings ?? []} currency={currency} />
          <div class="grid">
            <section class="card" aria-labelledby="overview-allocation-title">
              <h2 id="overview-allocation-title">Allocation</h2>
              <Donut
                slices={(overview.allocation ?? []).map((s) => ({ name: s.name ?? "", value: Number(s.value ?? 0) }))}
                label={`Allocation of all portfolios by holding and cash, in ${currency}`}
              />
            </section>
          </div>
        </>
      )}
    </div>
  );
}

function TotalsCard({ totals, currency, count }: { totals: Totals; currency: string; count: number }) {
  const stat = (label: string, value: string | undefined, id: string, changes = false) => (
    <div>
      <dt>{label}</dt>
      <dd class={changes ? trend(value) : undefined} data-testid={`overview-${id}`} data-value={value}>
        {changes ? signed(value ?? 0, currency) : money(value ?? 0, currency)}
      </dd>
    </div>
  );
  return (
    <section class="card" aria-labelledby="overview-totals-title">
      <h2 id="overview-totals-title">
        All {count} portfolio{count === 1 ? "" : "s"} in {currency}
      </h2>
      <dl class="stats">
        <div>
          <dt>Total value</dt>
          <dd class="big" data-testid="overview-total-value" data-value={totals.totalValue}>
            {money(totals.totalValue ?? 0, currency)}
          </dd>
        </div>
        <div>
          <dt>Gain / loss</dt>
          <dd class={trend(totals.totalGainLoss)} data-testid="overview-gain" data-value={totals.totalGainLoss}>
            {signed(totals.totalGainLoss ?? 0, currency)} ({percent(totals.totalGainLossPercent)})
          </dd>
        </div>
        {stat("Cash", totals.cash, "cash")}
        {stat("Money put in", totals.totalCost, "cost")}
        {stat("Cost of holdings", totals.costBasis, "cost-basis")}
        {stat("Unrealized", totals.unrealizedGain, "unrealized", true)}
        {stat("Realized", totals.realizedGain, "realized", true)}
        {stat("Dividends", totals.dividends, "dividends")}
        {stat("Fees", totals.fees, "fees")}
      </dl>
    </section>
  );
}

function Rates({ overview }: { overview: Overview }) {
  const rates = overview.rates ?? [];
  return (
    <p class="muted" data-testid="overview-rates">
      As of {dateTime(overview.asOf)}.{" "}
      {rates.length === 0
        ? "Nothing converted: every portfolio is kept in this currency."
        : `Each portfolio's figures converted at today's rate: ${rates
            .map((r) => `1 ${r.from} = ${r.rate} ${r.to} (${r.date}, ${r.source})`)
            .join("; ")}.`}
    </p>
  );
}

function Holdings({ holdings, currency }: { holdings: Holding[]; currency: string }) {
  const [all, setAll] = useState(false);
  const shown = all ? holdings : holdings.slice(0, TOP);
  return (
    <section class="card" aria-labelledby="overview-holdings-title">
      <h2 id="overview-holdings-title">{all || holdings.length <= TOP ? "Holdings" : "Top holdings"}</h2>
      <Table
        class="nowrap"
        data-testid="overview-holdings"
        empty={holdings.length === 0 && "No holdings: cash only."}
        columns={[
          "Symbol",
          { label: "Shares", class: "num" },
          { label: "Value", class: "num" },
          { label: "Unrealized", class: "num hide-narrow" },
          { label: "Weight", class: "num" },
          { label: "Portfolios", class: "num hide-narrow" },
        ]}
      >
        {shown.map((h) => (
          <tr key={h.symbol} data-testid={`overview-holding-${h.symbol}`}>
            <td>
              <a href={`/stocks/${encodeURIComponent(h.symbol ?? "")}`}>{h.symbol}</a>
            </td>
            <td class="num">{quantity(h.quantity)}</td>
            <td class="num" data-testid="overview-holding-value">
              {money(h.marketValue, currency)}
            </td>
            <td class={`num hide-narrow ${trend(h.unrealizedGain)}`}>{signed(h.unrealizedGain ?? 0, currency)}</td>
            <td class="num">{ratio(h.weight)}</td>
            <td class="num hide-narrow" title="How many of your portfolios hold it">
              {h.portfolioCount}
            </td>
          </tr>
        ))}
      </Table>
      {holdings.length > TOP && (
        <button type="button" class="link" data-testid="overview-holdings-all" onClick={() => setAll(!all)}>
          {all ? `Show the top ${TOP}` : `Show all ${holdings.length}`}
        </button>
      )}
    </section>
  );
}
