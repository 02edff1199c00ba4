/** Time-weighted and money-weighted returns (TWR, XIRR) over a chosen period, with the value
 * series; the period's risk (maximum drawdown, volatility, Sharpe and Sortino ratios); the
 * period's gain in its parts (capital, dividends, currency, fees), and a benchmark whose what-if
 * series is drawn beside the portfolio's value. */

import { useState } from "preact/hooks";
import { BENCHMARKS } from "../../api/currencies";
import type { BenchmarkComparison, Breakdown, Risk } from "../../api/client";
import { performance, type Range } from "../../api/portfolios";
import { useApi } from "../../api/useApi";
import { ValueChart } from "../../components/charts";
import { ErrorBanner } from "../../components/form";
import { RangePicker } from "../../components/RangePicker";
import { decimal, money, ratio, signed, trend } from "../../format";

export function PerformancePanel(props: { portfolioId: string; currency: string; version: string }) {
  const [range, setRange] = useState<Range>("1y");
  const [benchmark, setBenchmark] = useState("");
  const result = useApi(
    () => performance(props.portfolioId, range, benchmark),
    [props.portfolioId, range, benchmark, props.version],
  );
  const r = result.data;
  const c = r?.currency || props.currency;
  const points = (r?.series ?? []).map((p) => ({ date: p.date ?? "", value: Number(p.value ?? 0) }));
  const compare = (r?.benchmark?.series ?? []).map((p) => ({
    date: p.date ?? "",
    value: Number(p.value ?? 0),
  }));
  return (
    <section class="card" aria-labelledby="performance-title">
      <div class="row spread">
        <h2 id="performance-title">Performance</h2>
        <div class="row">
          <label class="row" for="benchmark-picker">
            Compare with
            <select
              id="benchmark-picker"
              value={benchmark}
              onChange={(e) => setBenchmark(e.currentTarget.value)}
              data-testid="benchmark-picker"
              style={{ width: "auto" }}
            >
              <option value="">No benchmark</option>
              {BENCHMARKS.map((symbol) => (
                <option key={symbol} value={symbol}>
                  {symbol}
                </option>
              ))}
            </select>
          </label>
          <RangePicker value={range} onChange={setRange} label="Performance period" />
        </div>
      </div>
      <ErrorBanner error={result.error} testid="performance-error" />
      <dl class="stats" aria-busy={result.loading}>
        <div>
          <dt>
            <abbr title="Time-weighted return: deposits and withdrawals excluded">TWR</abbr>
          </dt>
          <dd class={trend(r?.timeWeightedReturn)} data-testid="twr">
            {r ? ratio(r.timeWeightedReturn, true) : "—"}
          </dd>
        </div>
        <div>
          <dt>
            <abbr title="Money-weighted return (XIRR), annualized">XIRR</abbr>
          </dt>
          <dd class={trend(r?.moneyWeightedReturn)} data-testid="xirr">
            {r?.moneyWeightedReturn ? ratio(r.moneyWeightedReturn, true) : "—"}
          </dd>
          {r?.moneyWeightedReturn && shortRange(r.startDate, r.endDate) > 0 && (
            <small class="muted" data-testid="xirr-short">
              annualized from {shortRange(r.startDate, r.endDate)} days
            </small>
          )}
          {r && !r.moneyWeightedReturn && r.moneyWeightedNote && (
            <small class="muted" data-testid="xirr-note">
              {r.moneyWeightedNote}
            </small>
          )}
        </div>
        <div>
          <dt>Gain</dt>
          <dd class={trend(r?.gain)} data-testid="performance-gain">
            {signed(r?.gain, c)}
          </dd>
        </div>
        <div>
          <dt>Realized · unrealized</dt>
          <dd>
            <span class={trend(r?.realizedGain)} data-testid="performance-realized">
              {signed(r?.realizedGain, c)}
            </span>{" "}
            ·{" "}
            <span class={trend(r?.unrealizedGain)} data-testid="performance-unrealized">
              {signed(r?.unrealizedGain, c)}
            </span>
          </dd>
        </div>
        <div>
          <dt>Dividends · fees</dt>
          <dd>
            {money(r?.dividends, c)} · {money(r?.fees, c)}
          </dd>
        </div>
        <div>
          <dt>In · out</dt>
          <dd>
            {money(r?.inflows, c)} · {money(r?.outflows, c)}
          </dd>
        </div>
      </dl>
      {r && (
        <p class="muted">
          {r.startDate} to {r.endDate}: {money(r.startValue, c)} → {money(r.endValue, c)}
        </p>
      )}
      {r?.risk && <RiskSummary risk={r.risk} note={r.riskNote} />}
      <ValueChart
        points={points}
        compare={compare}
        label={
          r?.benchmark
            ? `Portfolio value over ${range}, and the same money in ${r.benchmark.symbol}`
            : `Portfolio value over ${range}`
        }
        testid="performance-chart"
      />
      {r?.benchmark && <BenchmarkSummary compared={r.benchmark} currency={c} />}
      {r?.breakdown && <BreakdownTable parts={r.breakdown} currency={c} />}
    </section>
  );
}

const DRAWDOWN_TITLE =
  "The largest peak-to-trough fall of the time-weighted index: deposits and withdrawals excluded";
const SHARPE_TITLE = "Annualized return over the risk-free rate, per unit of volatility";
const SORTINO_TITLE =
  "Annualized return over the risk-free rate, per unit of downside deviation below it";

/** Max drawdown (with its days), volatility, Sharpe and Sortino; the API's note when a figure is
 * empty (too few trading days, returns that never varied). */
function RiskSummary(props: { risk: Risk; note: string | undefined }) {
  const k = props.risk;
  const fell = Boolean(k.drawdownPeakDate && k.drawdownTroughDate);
  return (
    <div data-testid="risk-summary">
      <dl class="stats" aria-label="Risk">
        <div>
          <dt>
            <abbr title={DRAWDOWN_TITLE}>Max drawdown</abbr>
          </dt>
          <dd class={Number(k.maxDrawdown) > 0 ? "down" : "flat"} data-testid="max-drawdown">
            {ratio(k.maxDrawdown)}
          </dd>
          {fell && (
            <small class="muted" data-testid="drawdown-days">
              {k.drawdownPeakDate} → {k.drawdownTroughDate},{" "}
              {k.drawdownRecoveryDate ? `recovered ${k.drawdownRecoveryDate}` : "not recovered"}
            </small>
          )}
        </div>
        <div>
          <dt>
            <abbr title="Annualized standard deviation of the trading-day returns">Volatility</abbr>
          </dt>
          <dd data-testid="volatility">{ratio(k.volatility)}</dd>
        </div>
        <div>
          <dt>
            <abbr title={`${SHARPE_TITLE} (risk-free rate ${ratio(k.riskFreeRate)} a year)`}>
              Sharpe
            </abbr>
          </dt>
          <dd class={trend(k.sharpeRatio)} data-testid="sharpe">
            {decimal(k.sharpeRatio)}
          </dd>
        </div>
        <div>
          <dt>
            <abbr title={SORTINO_TITLE}>Sortino</abbr>
          </dt>
          <dd class={trend(k.sortinoRatio)} data-testid="sortino">
            {decimal(k.sortinoRatio)}
          </dd>
        </div>
      </dl>
      {props.note && (
        <p class="muted" data-testid="risk-note">
          {props.note}
        </p>
      )}
    </div>
  );
}

function BenchmarkSummary(props: { compared: BenchmarkComparison; currency: string }) {
  const b = props.compared;
  return (
    <dl class="stats" data-testid="benchmark-summary">
      <div>
        <dt>
          <abbr title={`${b.symbol}'s own time-weighted return over the same days`}>
            {b.symbol} TWR
          </abbr>
        </dt>
        <dd class={trend(b.timeWeightedReturn)} data-testid="benchmark-twr">
          {ratio(b.timeWeightedReturn, true)}
        </dd>
      </div>
      <div>
        <dt>
          <abbr title="The portfolio's TWR less the benchmark's">Alpha</abbr>
        </dt>
        <dd class={trend(b.alpha)} data-testid="benchmark-alpha">
          {ratio(b.alpha, true)}
        </dd>
      </div>
      <div>
        <dt>
          <abbr title={`What the same deposits and withdrawals would be worth in ${b.symbol}`}>
            What if
          </abbr>
        </dt>
        <dd data-testid="benchmark-end-value">{money(b.endValue, props.currency)}</dd>
      </div>
      <div>
        <dt>
          <abbr title="The portfolio's end value less the what-if end value">Tracking difference</abbr>
        </dt>
        <dd class={trend(b.trackingDifference)} data-testid="benchmark-tracking">
          {signed(b.trackingDifference, props.currency)}
        </dd>
      </div>
    </dl>
  );
}

const PARTS = [
  ["Capital", "capitalGain", "capitalContribution"],
  ["Dividends", "dividendGain", "dividendContribution"],
  ["Currency", "currencyGain", "currencyContribution"],
  ["Fees", "fees", "feesContribution"],
] as const;

function BreakdownTable(props: { parts: Breakdown; currency: string }) {
  const p = props.parts;
  return (
    <div class="table-wrap">
      <table data-testid="breakdown-table">
        <caption>Where the gain came from</caption>
        <thead>
          <tr>
            <th scope="col">Part</th>
            <th scope="col" class="num">
              Gain
            </th>
            <th scope="col" class="num">
              <abbr title="Its share of the time-weighted return">Contribution</abbr>
            </th>
          </tr>
        </thead>
        <tbody>
          {PARTS.map(([name, gain, contribution]) => (
            <tr key={name} data-testid={`breakdown-${name.toLowerCase()}`}>
              <th scope="row">{name}</th>
              <td class={`num ${trend(p[gain])}`}>{signed(p[gain] ?? "0", props.currency)}</td>
              <td class={`num ${trend(p[contribution])}`}>{ratio(p[contribution] ?? "0", true)}</td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr data-testid="breakdown-total">
            <th scope="row">Total</th>
            <td class={`num ${trend(p.totalGain)}`}>{signed(p.totalGain ?? "0", props.currency)}</td>
            <td class={`num ${trend(p.totalContribution)}`}>
              {ratio(p.totalContribution ?? "0", true)}
            </td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}

/** The range's length in days when under a year (an annualized rate then magnifies it), else 0. */
function shortRange(start: string | undefined, end: string | undefined): number {
  if (!start || !end) return 0;
  const days = Math.round((Date.parse(end) - Date.parse(start)) / 86_400_000);
  return days > 0 && days < 365 ? days : 0;
}
