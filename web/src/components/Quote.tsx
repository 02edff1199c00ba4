/** A symbol's quote: the REST answer at once, then every tick from /ws/portfolio. */

import { api, dataOf } from "../api/client";
import { useApi } from "../api/useApi";
import { change, percent, price, trend } from "../format";
import { usePrice } from "../ws/portfolioFeed";

export function useQuote(symbol: string) {
  const rest = useApi(
    async () =>
      symbol
        ? dataOf(api().GET("/api/v1/stocks/{symbol}/price", { params: { path: { symbol } } }))
        : undefined,
    [symbol],
  );
  const tick = usePrice(symbol || undefined);
  const latest = tick ?? rest.data;
  return { quote: latest, error: rest.error, stale: !tick && rest.data?.stale === true };
}

export function QuoteLine({ symbol }: { symbol: string }) {
  const { quote, error, stale } = useQuote(symbol);
  if (!symbol) return null;
  if (!quote) {
    return error ? (
      <p class="muted" data-testid="quote-error">
        No quote for {symbol}.
      </p>
    ) : null;
  }
  return (
    <p class="row" aria-live="polite" data-testid="quote">
      <strong>{symbol}</strong>
      <span class="big" data-testid="quote-price">
        {price(quote.price)}
      </span>
      <span class={trend(quote.change)} data-testid="quote-change">
        {change(quote.change)} ({percent(quote.changePercent)})
      </span>
      {stale && <span class="muted">(delayed)</span>}
    </p>
  );
}
