/** A stock: its details, its live quote, a price chart that moves with every tick, and its
 * daily closes over a chosen period with the change over it. */

import { useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api, dataOf } from "../../api/client";
import { useApi } from "../../api/useApi";
import { LiveChart, type TickPoint, ValueChart } from "../../components/charts";
import { ErrorBanner } from "../../components/form";
import { QuoteLine, useQuote } from "../../components/Quote";
import { RangePicker } from "../../components/RangePicker";
import { change, ratio, trend } from "../../format";

/** The chart keeps the last hour of ticks at one a second. */
const MAX_POINTS = 3600;
/** The API's `range` for a stock's history (GET /api/v1/stocks/{symbol}/history). */
const HISTORY_RANGES = ["1m", "3m", "6m", "1y", "ytd", "5y"] as const;
type HistoryRange = (typeof HISTORY_RANGES)[number];

export default function StockPage() {
  const { params } = useRoute();
  const symbol = decodeURIComponent(params.symbol ?? "").toUpperCase();
  const stock = useApi(
    () => dataOf(api().GET("/api/v1/stocks/{symbol}", { params: { path: { symbol } } })),
    [symbol],
  );
  const { quote } = useQuote(symbol);
  const [points, setPoints] = useState<TickPoint[]>([]);
  useEffect(() => setPoints([]), [symbol]);
  useEffect(() => {
    if (!quote?.time || !quote.price) return;
    const point = { time: quote.time, value: Number(quote.price) };
    setPoints((before) => {
      const last = before[before.length - 1];
      if (last && last.time >= point.time) return before;
      const next = [...before, point];
      return next.length > MAX_POINTS ? next.slice(-MAX_POINTS) : next;
    });
  }, [quote?.time, quote?.price]);

  const s = stock.data;
  return (
    <>
      <div class="row spread">
        <h1 data-testid="stock-title">
          {symbol}
          {s?.name && <span class="muted"> · {s.name}</span>}
        </h1>
        <div class="row">
          <a href={`/trade?symbol=${encodeURIComponent(symbol)}`} data-testid="stock-buy">
            Buy
          </a>
          <a href={`/trade?symbol=${encodeURIComponent(symbol)}&side=sell`} data-testid="stock-sell">
            Sell
          </a>
        </div>
      </div>
      <ErrorBanner error={stock.error} testid="stock-error" />
      <section class="card" aria-label="Quote">
        <QuoteLine symbol={symbol} />
        {s && (
          <p class="muted">
            {s.exchange} · {s.currency}
          </p>
        )}
        {s?.sector && (
          <p class="muted" data-testid="stock-profile">
            {[s.assetType, s.sector, s.industry, s.country].filter(Boolean).join(" · ")}
          </p>
        )}
        <LiveChart points={points} label={`${symbol} price, live`} testid="price-chart" />
        <p class="muted">Live since you opened this page; the chart moves with every price.</p>
      </section>
      <History symbol={symbol} />
    </>
  );
}

/** Daily closes over a period, from the close the period starts at, and the change since. */
function History(props: { symbol: string }) {
  const [range, setRange] = useState<HistoryRange>("1y");
  const history = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/stocks/{symbol}/history", {
          params: { path: { symbol: props.symbol }, query: { range } },
        }),
      ),
    [props.symbol, range],
  );
  const h = history.data;
  const points = (h?.closes ?? []).map((p) => ({ date: p.date ?? "", value: Number(p.value ?? 0) }));
  return (
    <section class="card" aria-labelledby="history-title">
      <div class="row spread">
        <h2 id="history-title">History</h2>
        <RangePicker value={range} onChange={setRange} label="History period" ranges={HISTORY_RANGES} />
      </div>
      <ErrorBanner error={history.error} testid="history-error" />
      <p aria-busy={history.loading}>
        <span class={trend(h?.change)} data-testid="history-change">
          {h?.change ? `${change(h.change)} (${ratio(h.changeRatio, true)})` : "—"}
        </span>{" "}
        {h && points.length > 0 && (
          <span class="muted" data-testid="history-span">
            since the close of {points[0]?.date} ({h.stock?.currency})
          </span>
        )}
      </p>
      <ValueChart points={points} label={`${props.symbol} daily closes over ${range}`} testid="history-chart" />
    </section>
  );
}
