/** Buy or sell: a symbol with suggestions, its live quote, and a form checked as the API checks
 * it. Each submit carries an Idempotency-Key: the same key while the same order is retried (after
 * a lost answer, say), a new one for a new order, so a double click never makes two trades.
 *
 * Money is shown in the currency it is in: a trade's in its own (a stock's trading currency; a
 * deposit's or withdrawal's the portfolio's), a dividend entered in the stock's currency (the
 * book converts it at its day's rate), the portfolios' cash in each one's. */

import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { api, dataOf, envelope, type Portfolio, type Trade } from "../../api/client";
import { listPortfolios } from "../../api/portfolios";
import { useApi } from "../../api/useApi";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import { DecimalField, ErrorBanner, Field, Select, TextInput, useFieldChecks } from "../../components/form";
import { QuoteLine } from "../../components/Quote";
import { SymbolSearch } from "../../components/SymbolSearch";
import { decimalProblem } from "../../decimal";
import { money, price, quantity as formatQuantity } from "../../format";
import { portfolioFeed } from "../../ws/portfolioFeed";
import { Orders } from "./Orders";

type Side = "buy" | "sell" | "dividend" | "deposit" | "withdrawal";
const SIDES: { side: Side; label: string; done: string }[] = [
  { side: "buy", label: "Buy", done: "Bought" },
  { side: "sell", label: "Sell", done: "Sold" },
  { side: "dividend", label: "Dividend", done: "Recorded a dividend of" },
  { side: "deposit", label: "Deposit", done: "Deposited" },
  { side: "withdrawal", label: "Withdraw", done: "Withdrew" },
];
/** Cash sides move an amount (sent as a quantity at a price of 1, as the book records them). */
const CASH_SIDES = new Set<Side>(["dividend", "deposit", "withdrawal"]);
const SYMBOL = /^\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,14}$/;
/** Reasons the API gives about the quantity of an order (oversell, a paper portfolio's cash). */
const QUANTITY_REASONS = new Set(["INSUFFICIENT_SHARES", "INSUFFICIENT_CASH"]);

export default function TradePage() {
  const { query } = useLocation();
  const portfolios = useApi(listPortfolios, []);
  // A trade made or deleted anywhere (this page, another tab, the API, an order filled) moves a
  // portfolio's cash: the menu shows it as it is now.
  useEffect(() => portfolioFeed.watchTradeChanges(() => portfolios.reload()), []);
  const [portfolioId, setPortfolioId] = useState(query.portfolio ?? "");
  const [symbol, setSymbol] = useState((query.symbol ?? "").toUpperCase());
  const [side, setSide] = useState<Side>(
    SIDES.find((s) => s.side === query.side)?.side ?? "buy",
  );
  const [quantity, setQuantity] = useState("");
  const [limit, setLimit] = useState("");
  const [fees, setFees] = useState("");
  const [notes, setNotes] = useState("");
  const { busy, error, setError, send } = useIdempotentPost();
  const [done, setDone] = useState<Trade | null>(null);

  useEffect(() => {
    const first = portfolios.data?.[0]?.id;
    if (!portfolioId && first) setPortfolioId(first);
  }, [portfolios.data]);

  // A changed order is a new question: the last answer's error no longer applies.
  useEffect(() => setError(null), [portfolioId, symbol, side, quantity, limit, fees]);

  const cash = CASH_SIDES.has(side);
  const needsSymbol = side !== "deposit" && side !== "withdrawal";
  const chosen = portfolios.data?.find((p) => p.id === portfolioId);
  // A dividend is booked in the stock's currency: its amount is asked for in it.
  const listing = useApi(
    async () =>
      side === "dividend" && SYMBOL.test(symbol)
        ? dataOf(api().GET("/api/v1/stocks/{symbol}", { params: { path: { symbol } } }))
        : undefined,
    [side, symbol],
  );
  const listed = listing.data?.symbol?.toUpperCase() === symbol ? listing.data.currency : undefined;
  const problems = {
    portfolio: portfolioId ? undefined : "choose a portfolio",
    symbol: !needsSymbol || SYMBOL.test(symbol) ? undefined : "choose a symbol such as AAPL",
    quantity: decimalProblem(quantity, { places: cash ? 2 : 8 }),
    price: cash ? undefined : decimalProblem(limit, { places: 6, optional: true }),
    fees: decimalProblem(fees, { places: 6, zero: true, optional: true }),
  };
  const { checked, apiError, pass, reset } = useFieldChecks(problems, error);
  const shown = (field: keyof typeof problems): string | undefined => {
    if (checked && problems[field]) return problems[field];
    if (!apiError) return undefined;
    if (field === "quantity" && QUANTITY_REASONS.has(apiError.code)) return apiError.message;
    return apiError.field(field === "portfolio" ? "portfolioId" : field);
  };
  const onQuantityField = apiError !== null && QUANTITY_REASONS.has(apiError.code);

  async function submit(event: Event) {
    event.preventDefault();
    if (!pass()) return;
    const body = {
      portfolioId,
      side,
      ...(needsSymbol ? { symbol } : {}),
      quantity: quantity.trim(),
      ...(cash ? { price: "1" } : limit.trim() ? { price: limit.trim() } : {}),
      ...(fees.trim() ? { fees: fees.trim() } : {}),
      ...(notes.trim() ? { notes: notes.trim() } : {}),
    };
    await send(body, {
      start: () => setDone(null),
      post: (key) => envelope(api().POST("/api/v1/trades", { body, headers: { "Idempotency-Key": key } })),
      done: (answer) => {
        setDone(answer.data);
        portfolios.reload(); // its cash moved
        setQuantity("");
        reset();
      },
    });
  }

  const donePortfolio = portfolios.data?.find((p) => p.id === done?.portfolioId);
  return (
    <>
      <h1>Trade</h1>
      <div class="grid">
        <section class="card" aria-labelledby="order-title">
          <h2 id="order-title">Order</h2>
          <ErrorBanner error={portfolios.error} testid="portfolios-error" />
          {error !== null && !onQuantityField && <ErrorBanner error={error} testid="trade-error" />}
          <form onSubmit={submit} data-testid="trade-form" noValidate>
            <Field label="Portfolio" id="trade-portfolio" error={shown("portfolio")}>
              <Select
                id="trade-portfolio"
                value={portfolioId}
                onValue={setPortfolioId}
                choices={(portfolios.data ?? []).map((p) => ({
                  value: p.id ?? "",
                  label: `${p.name ?? ""} (${money(p.cash, p.currency || "USD")} cash)`,
                }))}
                data-testid="trade-portfolio"
              >
                {!portfolioId && <option value="">Choose…</option>}
              </Select>
            </Field>
            {needsSymbol && (
              <Field label="Symbol" id="trade-symbol" error={shown("symbol")}>
                <SymbolSearch
                  id="trade-symbol"
                  value={symbol}
                  onChange={setSymbol}
                  invalid={Boolean(shown("symbol"))}
                />
              </Field>
            )}
            <fieldset>
              <legend>Side</legend>
              <div class="segmented" role="group" aria-label="Side" data-testid="trade-side">
                {SIDES.map(({ side: s, label }) => (
                  <button
                    key={s}
                    type="button"
                    aria-pressed={side === s}
                    onClick={() => setSide(s)}
                    data-testid={`side-${s}`}
                  >
                    {label}
                  </button>
                ))}
              </div>
            </fieldset>
            <DecimalField
              label={cash ? "Amount" : "Quantity"}
              id="trade-quantity"
              error={shown("quantity")}
              hint={amountHint(side, chosen, listed)}
              value={quantity}
              onValue={setQuantity}
            />
            {!cash && (
              <DecimalField
                label="Price (empty: the market price)"
                id="trade-price"
                error={shown("price")}
                hint="To 6 places."
                value={limit}
                onValue={setLimit}
              />
            )}
            <DecimalField label="Fees" id="trade-fees" error={shown("fees")} value={fees} onValue={setFees} />
            <Field label="Notes" id="trade-notes" error={apiError?.field("notes")}>
              <TextInput id="trade-notes" maxLength={1000} value={notes} onValue={setNotes} data-testid="trade-notes" />
            </Field>
            <button type="submit" class="primary" disabled={busy} aria-busy={busy} data-testid="trade-submit">
              {busy ? "Placing…" : SIDES.find((s) => s.side === side)?.label}
            </button>
          </form>
          {done && (
            <p class="banner notice" role="status" data-testid="trade-result" data-trade-id={done.id}>
              {describe(done, donePortfolio)} in {donePortfolio?.name ?? "the portfolio"}.{" "}
              <a href={`/portfolios/${done.portfolioId}`}>See the portfolio</a>
            </p>
          )}
        </section>
        <section class="card" aria-labelledby="quote-title">
          <h2 id="quote-title">Quote</h2>
          {needsSymbol && SYMBOL.test(symbol) ? (
            <>
              <QuoteLine symbol={symbol} />
              <a href={`/stocks/${encodeURIComponent(symbol)}`}>Chart of {symbol} →</a>
            </>
          ) : (
            <p class="muted">Choose a symbol to see its price.</p>
          )}
        </section>
      </div>
      <Orders
        portfolio={chosen}
        symbol={symbol}
      />
    </>
  );
}

/** What the amount field asks for: a deposit or withdrawal in the portfolio's currency, a
 * dividend in the stock's (named once the listing is known). */
function amountHint(side: Side, portfolio: Portfolio | undefined, listed: string | undefined): string {
  if (side === "dividend") {
    return listed ? `In ${listed}, the stock's currency, to the cent.` : "In the stock's currency, to the cent.";
  }
  if (CASH_SIDES.has(side)) {
    return portfolio?.currency ? `In ${portfolio.currency}, the portfolio's currency, to the cent.` : "In the portfolio's currency, to the cent.";
  }
  return "Fractions to 8 places.";
}

/** "Bought 3 AAPL at 190.12 ($570.36)", "Deposited €500.00", "Recorded a dividend of $12.00
 * from KO": each in the trade's own currency (a cash side's is its portfolio's). */
function describe(trade: Trade, portfolio: Portfolio | undefined): string {
  const done = SIDES.find((s) => s.side === trade.side)?.done ?? "Recorded";
  const currency = trade.currency || portfolio?.currency || "USD";
  if (trade.side === "buy" || trade.side === "sell") {
    return `${done} ${formatQuantity(trade.quantity)} ${trade.symbol} at ${price(trade.price)} (${money(trade.amount, currency)})`;
  }
  return `${done} ${money(trade.amount, currency)}${trade.symbol ? ` from ${trade.symbol}` : ""}`;
}
