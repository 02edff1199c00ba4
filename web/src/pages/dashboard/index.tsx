/** Every portfolio with its live value and day change, the allocation across them, the value over
 * time, and a form to start a portfolio.
 *
 * Portfolios may be kept in different currencies: the figures across all of them (the total, day
 * change and gain, the allocation, the value over time) are in one display currency, the first
 * portfolio's, each portfolio converted at today's rate (GET /api/v1/fx). A portfolio whose
 * currency has no rate is never added in unconverted: the summary names it apart, in its own
 * currency, and the donut and the chart leave it out. */

import { useEffect, useMemo, useState } from "preact/hooks";
import { api, envelope, type Portfolio } from "../../api/client";
import { ApiError } from "../../api/errors";
import { CURRENCIES, ratesInto } from "../../api/currencies";
import { listPortfolios, performance, type Range } from "../../api/portfolios";
import { useApi } from "../../api/useApi";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import { ValueChart, type DailyPoint } from "../../components/charts";
import { Donut, type Slice } from "../../components/Donut";
import { ErrorBanner, Field, Loading, Select, TextInput, type Choice } from "../../components/form";
import { RangePicker } from "../../components/RangePicker";
import { counted, money, ratio, signed, trend } from "../../format";
import { useLiveTotals } from "../../ws/liveTotals";
import { portfolioFeed } from "../../ws/portfolioFeed";

/** The currency the figures across portfolios are shown in, and today's rate into it from each
 * portfolio currency that has one. */
type Display = { currency: string; rates: Map<string, number> };

/** The portfolios and the rates to add them up with, loaded together: a total is never drawn
 * before its rates are known. */
async function loadOverview(): Promise<{ portfolios: Portfolio[]; display: Display }> {
  const portfolios = await listPortfolios();
  const currency = portfolios[0]?.currency || "USD";
  const rates = await ratesInto(
    portfolios.map((p) => p.currency || "USD"),
    currency,
  );
  return { portfolios, display: { currency, rates } };
}

/** A portfolio's rate into the display currency, or undefined when there is none. */
function rateOf(portfolio: Portfolio, display: Display): number | undefined {
  return display.rates.get(portfolio.currency || "USD");
}

export default function Dashboard() {
  const overview = useApi(loadOverview, []);
  // A trade made or deleted anywhere (this tab, another, the API) changes a portfolio: load them
  // again.
  useEffect(() => portfolioFeed.watchTradeChanges(() => overview.reload()), []);

  return (
    <>
      <div class="row spread">
        <h1>Dashboard</h1>
        <span class="row">
          <a href="/overview" class="muted" data-testid="dashboard-overview-link">
            All in one currency →
          </a>
          <a href="/trade" class="muted">
            New trade →
          </a>
        </span>
      </div>
      <ErrorBanner error={overview.error} testid="dashboard-error" />
      {overview.data === undefined ? (
        overview.loading && <Loading what="your portfolios" />
      ) : (
        <Overview portfolios={overview.data.portfolios} display={overview.data.display} />
      )}
      <CreatePortfolio onCreated={overview.reload} />
    </>
  );
}

/** The live parts (the summary, each card) follow the ticks on their own; the donut and the
 * chart below them are drawn again only when the portfolios are loaded again. */
function Overview({ portfolios, display }: { portfolios: Portfolio[]; display: Display }) {
  return (
    <>
      <Summary portfolios={portfolios} display={display} />
      {portfolios.length === 0 ? (
        <p class="card" data-testid="no-portfolios">
          No portfolios yet: start one below.
        </p>
      ) : (
        <ul class="grid plain" data-testid="portfolio-list">
          {portfolios.map((p) => (
            <PortfolioCard key={p.id} portfolio={p} />
          ))}
        </ul>
      )}
      <div class="grid">
        <section class="card" aria-labelledby="allocation-title">
          <h2 id="allocation-title">Allocation</h2>
          <Allocation portfolios={portfolios} display={display} />
        </section>
        <ValueOverTime portfolios={portfolios} display={display} />
      </div>
    </>
  );
}

function Summary({ portfolios, display }: { portfolios: Portfolio[]; display: Display }) {
  const totals = useLiveTotals(portfolios);
  const { currency } = display;
  let total = 0;
  let dayChange = 0;
  let gain = 0;
  // Per currency: what each holds (shown when there are several), and what has no rate.
  const byCurrency = new Map<string, { total: number; converted: boolean }>();
  for (const portfolio of portfolios) {
    const t = totals.get(portfolio.id ?? "");
    if (!t) continue;
    const own = portfolio.currency || "USD";
    const rate = rateOf(portfolio, display);
    const entry = byCurrency.get(own) ?? { total: 0, converted: rate !== undefined };
    entry.total += t.total;
    byCurrency.set(own, entry);
    if (rate === undefined) continue;
    total += t.total * rate;
    dayChange += t.dayChange * rate;
    gain += t.gain * rate;
  }
  const previous = total - dayChange;
  const several = byCurrency.size > 1;
  const unconverted = [...byCurrency].filter(([, e]) => !e.converted);
  return (
    <section class="card" aria-labelledby="all-title">
      <h2 id="all-title">All portfolios</h2>
      <dl class="stats">
        <div>
          <dt>Total value{several ? ` (in ${currency})` : ""}</dt>
          <dd class="big" data-testid="dashboard-total" data-currency={currency} data-value={total.toFixed(2)}>
            {money(total, currency)}
          </dd>
        </div>
        <div>
          <dt>Day change</dt>
          <dd class={trend(dayChange)} data-testid="dashboard-day-change">
            {signed(dayChange, currency)} ({ratio(previous ? dayChange / previous : 0, true)})
          </dd>
        </div>
        <div>
          <dt>Gain / loss</dt>
          <dd class={trend(gain)} data-testid="dashboard-gain">
            {signed(gain, currency)}
          </dd>
        </div>
      </dl>
      {several && (
        <p class="muted" data-testid="dashboard-currencies">
          {[...byCurrency]
            .map(([code, e]) => `${money(e.total, code)} in ${code}`)
            .join(" · ")}
          {unconverted.length === 0
            ? `, converted into ${currency} at today's rates.`
            : `. No rate into ${currency} today for ${unconverted.map(([code]) => code).join(", ")}: not in the total.`}
        </p>
      )}
    </section>
  );
}

function PortfolioCard({ portfolio }: { portfolio: Portfolio }) {
  const id = portfolio.id ?? "";
  const currency = portfolio.currency || "USD";
  const one = useMemo(() => [portfolio], [portfolio]);
  const live = useLiveTotals(one).get(id);
  const t = live ?? { total: Number(portfolio.totalValue), gain: 0, dayChange: 0, dayChangeRatio: 0 };
  return (
    <li class="card" data-testid={`portfolio-card-${id}`}>
      <div class="row spread">
        <h3>
          <a href={`/portfolios/${id}`} data-testid="portfolio-link">
            {portfolio.name}
          </a>
        </h3>
        <span class="muted">{portfolio.kind}</span>
      </div>
      <p class="big" data-testid={`portfolio-total-${id}`} data-value={t.total.toFixed(2)}>
        {money(t.total, currency)}
      </p>
      <p class="row">
        <span class={trend(t.dayChange)} data-testid={`portfolio-day-change-${id}`}>
          Today {signed(t.dayChange, currency)} ({ratio(t.dayChangeRatio, true)})
        </span>
        <span class={trend(t.gain)} data-testid={`portfolio-gain-${id}`}>
          Overall {signed(t.gain, currency)}
        </span>
      </p>
      <p class="muted" data-testid={`portfolio-holdings-${id}`}>
        {counted((portfolio.positions ?? []).length, "position")} · cash{" "}
        {money(portfolio.cash, currency)}
      </p>
    </li>
  );
}

function Allocation({ portfolios, display }: { portfolios: Portfolio[]; display: Display }) {
  const slices = useMemo(() => {
    const bySymbol = new Map<string, number>();
    let cash = 0;
    for (const p of portfolios) {
      // Shares of one whole: every amount in the display currency.
      const rate = rateOf(p, display);
      if (rate === undefined) continue;
      cash += Math.max(0, Number(p.cash ?? 0)) * rate;
      for (const position of p.positions ?? []) {
        const symbol = position.symbol ?? "?";
        const value = Number(position.marketValue ?? 0) * rate;
        bySymbol.set(symbol, (bySymbol.get(symbol) ?? 0) + value);
      }
    }
    const result: Slice[] = [...bySymbol].map(([name, value]) => ({ name, value }));
    if (cash > 0) result.push({ name: "cash", value: cash });
    return result;
  }, [portfolios, display]);
  return <Donut slices={slices} label="Allocation of all portfolios by holding and cash" />;
}

function ValueOverTime({ portfolios, display }: { portfolios: Portfolio[]; display: Display }) {
  const [range, setRange] = useState<Range>("3m");
  const series = useApi(async () => {
    // Each portfolio's series is in its own currency: converted at today's rate (one rate per
    // currency for the whole range; the portfolio page has each day's own).
    const counted = portfolios.filter((p) => rateOf(p, display) !== undefined);
    const answers = await Promise.all(
      counted.map((p) =>
        performance(p.id ?? "", range).then((r) => ({ rate: rateOf(p, display) ?? 0, points: r.series ?? [] })),
      ),
    );
    // The sum across portfolios, day by day (a portfolio without a day counts nothing that day).
    const byDate = new Map<string, number>();
    for (const { rate, points } of answers) {
      for (const point of points) {
        const date = point.date ?? "";
        byDate.set(date, (byDate.get(date) ?? 0) + Number(point.value ?? 0) * rate);
      }
    }
    return [...byDate]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([date, value]): DailyPoint => ({ date, value }));
  }, [portfolios, display, range]);
  return (
    <section class="card" aria-labelledby="value-title">
      <div class="row spread">
        <h2 id="value-title">Value over time</h2>
        <RangePicker value={range} onChange={setRange} label="Value over time period" />
      </div>
      <ErrorBanner error={series.error} testid="value-chart-error" />
      <ValueChart
        points={series.data ?? []}
        label={`Total value of all portfolios over ${range}, in ${display.currency}`}
        testid="value-chart"
      />
    </section>
  );
}

const KINDS: Choice<"tracking" | "paper">[] = [
  { value: "paper", label: "Paper" },
  { value: "tracking", label: "Tracking" },
];

function CreatePortfolio({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"tracking" | "paper">("paper");
  const [cash, setCash] = useState("10000");
  const [currency, setCurrency] = useState("USD");
  // The key follows the whole form: a changed form is never answered with the portfolio an
  // earlier one made.
  const { busy, error, send } = useIdempotentPost();

  async function submit(event: Event) {
    event.preventDefault();
    const base = { name: name.trim(), kind, currency };
    const body = kind === "paper" && cash ? { ...base, initialCash: cash.trim() } : base;
    await send(body, {
      post: (key) => envelope(api().POST("/api/v1/portfolios", { body, headers: { "Idempotency-Key": key } })),
      done: () => {
        setName("");
        onCreated();
      },
    });
  }

  const fieldError = (field: string) => (error instanceof ApiError ? error.field(field) : undefined);
  return (
    <section class="card" aria-labelledby="create-title">
      <h2 id="create-title">New portfolio</h2>
      <ErrorBanner error={error} testid="create-portfolio-error" />
      <form onSubmit={submit} data-testid="create-portfolio-form" class="grid">
        <Field label="Name" id="portfolio-name" error={fieldError("name")}>
          <TextInput id="portfolio-name" required maxLength={100} value={name} onValue={setName} />
        </Field>
        <Field label="Kind" id="portfolio-kind" hint="Paper: trades spend its cash. Tracking: records real trades.">
          <Select id="portfolio-kind" value={kind} onValue={setKind} choices={KINDS} />
        </Field>
        <Field
          label="Currency"
          id="portfolio-currency"
          hint="Values, returns and gains are kept in it; it cannot change once there are trades."
          error={fieldError("currency")}
        >
          <Select
            id="portfolio-currency"
            value={currency}
            onValue={setCurrency}
            choices={CURRENCIES}
            data-testid="create-portfolio-currency"
          />
        </Field>
        {kind === "paper" && (
          <Field label="Starting cash" id="portfolio-cash" error={fieldError("initialCash")}>
            <TextInput id="portfolio-cash" inputMode="decimal" value={cash} onValue={setCash} />
          </Field>
        )}
        <div class="field">
          <span aria-hidden="true">&nbsp;</span>
          <button type="submit" class="primary" disabled={busy || !name.trim()} data-testid="create-portfolio-submit">
            {busy ? "Creating…" : "Create portfolio"}
          </button>
        </div>
      </form>
    </section>
  );
}
