/** One portfolio: its live totals, positions with live prices, exposure (by sector, country,
 * asset type and currency), performance, trades, realized gains, dividend income, stock splits,
 * target allocations and rebalancing, savings plans (paper portfolios), import and export. */

import { useRoute } from "preact-iso";
import { useEffect, useMemo } from "preact/hooks";
import { api, dataOf, type Portfolio } from "../../api/client";
import { useApi } from "../../api/useApi";
import { ErrorBanner, Loading } from "../../components/form";
import { money, ratio, signed, trend } from "../../format";
import { useLiveTotals } from "../../ws/liveTotals";
import { portfolioFeed } from "../../ws/portfolioFeed";
import { Export } from "./Export";
import { Exposure } from "./Exposure";
import { Import } from "./Import";
import { Income } from "./Income";
import { PerformancePanel } from "./Performance";
import { Plans } from "./Plans";
import { Positions } from "./Positions";
import { RealizedGains } from "./RealizedGains";
import { Rebalance } from "./Rebalance";
import { Settings } from "./Settings";
import { Splits } from "./Splits";
import { Trades } from "./Trades";

export default function PortfolioPage() {
  const { params } = useRoute();
  const id = params.id ?? "";
  const portfolio = useApi(
    () => dataOf(api().GET("/api/v1/portfolios/{id}", { params: { path: { id } } })),
    [id],
  );
  // A trade recorded or deleted in this portfolio (from here, another tab or the API) changes
  // everything below.
  useEffect(
    () =>
      portfolioFeed.watchTradeChanges((trade) => {
        if (trade.portfolioId === id) portfolio.reload();
      }),
    [id],
  );
  const p = portfolio.data;
  // Everything below loads again when the portfolio does (after a trade, a split or an import).
  const version = useMemo(() => String(Date.now()), [p]);

  if (!p) {
    return (
      <>
        <ErrorBanner error={portfolio.error} testid="portfolio-error" />
        {portfolio.loading && <Loading what="the portfolio" />}
      </>
    );
  }
  const currency = p.currency || "USD";
  return (
    <>
      <div class="row spread">
        <h1 data-testid="portfolio-name">{p.name}</h1>
        <a href={`/trade?portfolio=${encodeURIComponent(id)}`} data-testid="portfolio-trade-link">
          Trade in this portfolio →
        </a>
      </div>
      <ErrorBanner error={portfolio.error} testid="portfolio-error" />
      <Totals portfolio={p} />
      <Positions portfolioId={id} currency={currency} version={version} />
      <Exposure portfolioId={id} currency={currency} version={version} />
      <PerformancePanel portfolioId={id} currency={currency} version={version} />
      <Rebalance portfolioId={id} currency={currency} version={version} />
      <Trades portfolioId={id} currency={currency} version={version} onChanged={portfolio.reload} />
      {p.kind === "paper" && (
        <Plans portfolioId={id} currency={currency} version={version} />
      )}
      <RealizedGains portfolioId={id} currency={currency} version={version} />
      <Income portfolioId={id} currency={currency} version={version} />
      <Splits portfolioId={id} currency={currency} version={version} onChanged={portfolio.reload} />
      <div class="grid">
        <Import portfolioId={id} currency={currency} onImported={portfolio.reload} />
        <Export portfolioId={id} name={p.name ?? "portfolio"} />
      </div>
      <Settings portfolio={p} onSaved={portfolio.reload} />
    </>
  );
}

/** The totals, live: only this part draws again on each tick, not the tables below it. */
function Totals({ portfolio: p }: { portfolio: Portfolio }) {
  const list = useMemo(() => [p], [p]);
  const totals = useLiveTotals(list).get(p.id ?? "");
  const currency = p.currency || "USD";
  const total = totals?.total ?? Number(p.totalValue);
  const gain = totals?.gain ?? Number(p.totalGainLoss);
  // What the holdings are worth above their cost, at the latest prices.
  const unrealized = totals
    ? total - Number(p.cash ?? 0) - Number(p.costBasis ?? 0)
    : Number(p.unrealizedGain);
  return (
    <section class="card" aria-label="Totals">
      <dl class="stats">
        <div>
          <dt>Total value</dt>
          <dd class="big" data-testid="portfolio-total" data-value={total.toFixed(2)}>
            {money(total, currency)}
          </dd>
        </div>
        <div>
          <dt>Day change</dt>
          <dd class={trend(totals?.dayChange)} data-testid="portfolio-day-change">
            {signed(totals?.dayChange ?? 0, currency)} ({ratio(totals?.dayChangeRatio ?? 0, true)})
          </dd>
        </div>
        <div>
          <dt>Gain / loss</dt>
          <dd class={trend(gain)} data-testid="portfolio-gain">
            {signed(gain, currency)}
          </dd>
        </div>
        <div>
          <dt>Cash</dt>
          <dd data-testid="portfolio-cash">{money(p.cash, currency)}</dd>
        </div>
        <div>
          <dt>Money put in</dt>
          <dd data-testid="portfolio-cost">{money(p.totalCost, currency)}</dd>
        </div>
        <div>
          <dt>Realized gain</dt>
          <dd class={trend(p.realizedGain)} data-testid="portfolio-realized">
            {signed(p.realizedGain, currency)}
          </dd>
        </div>
        <div>
          <dt>Unrealized gain</dt>
          <dd class={trend(unrealized)} data-testid="portfolio-unrealized">
            {signed(unrealized, currency)}
          </dd>
        </div>
        <div>
          <dt>Dividends · fees</dt>
          <dd>
            {money(p.dividends, currency)} · {money(p.fees, currency)}
          </dd>
        </div>
      </dl>
      <p class="muted">
        {p.kind === "paper" ? "Paper portfolio: buys spend its cash." : "Tracking portfolio."}{" "}
        {p.description}
      </p>
    </section>
  );
}
