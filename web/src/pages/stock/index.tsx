/** A stock: its details, its live quote, and a price chart that moves with every tick. */

import { useRoute } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api, envelope } from "../../api/client";
import { useApi } from "../../api/useApi";
import { LiveChart, type TickPoint } from "../../components/charts";
import { ErrorBanner } from "../../components/form";
import { QuoteLine, useQuote } from "../../components/Quote";

/** The chart keeps the last hour of ticks at one a second. */
const MAX_POINTS = 3600;

export default function StockPage() {
  const { params } = useRoute();
  const symbol = decodeURIComponent(params.symbol ?? "").toUpperCase();
  const stock = useApi(
    async () =>
      (await envelope(api().GET("/api/v1/stocks/{symbol}", { params: { path: { symbol } } }))).data,
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
        <LiveChart points={points} label={`${symbol} price, live`} testid="price-chart" />
        <p class="muted">Live since you opened this page; the chart moves with every price.</p>
      </section>
    </>
  );
}
