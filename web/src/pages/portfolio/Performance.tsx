/** Time-weighted and money-weighted returns (TWR, XIRR) over a chosen period, with the value
 * series. */

import { useState } from "preact/hooks";
import { performance, type Range } from "../../api/portfolios";
import { useApi } from "../../api/useApi";
import { ValueChart } from "../../components/charts";
import { ErrorBanner } from "../../components/form";
import { RangePicker } from "../../components/RangePicker";
import { money, ratio, signed, trend } from "../../format";

export function PerformancePanel(props: { portfolioId: string; currency: string; version: string }) {
  const [range, setRange] = useState<Range>("1y");
  const result = useApi(
    () => performance(props.portfolioId, range),
    [props.portfolioId, range, props.version],
  );
  const r = result.data;
  const c = props.currency;
  const points = (r?.series ?? []).map((p) => ({ date: p.date ?? "", value: Number(p.value ?? 0) }));
  return (
    <section class="card" aria-labelledby="performance-title">
      <div class="row spread">
        <h2 id="performance-title">Performance</h2>
        <RangePicker value={range} onChange={setRange} label="Performance period" />
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
      <ValueChart points={points} label={`Portfolio value over ${range}`} testid="performance-chart" />
    </section>
  );
}
