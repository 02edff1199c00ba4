/** Every portfolio with its live value and day change, the allocation across them, the value over
 * time, and a form to start a portfolio. */

import { useEffect, useMemo, useState } from "preact/hooks";
import { api, envelope, type Portfolio } from "../../api/client";
import { ApiError } from "../../api/errors";
import { CURRENCIES } from "../../api/currencies";
import { idempotencyKey, listPortfolios, performance, type Range } from "../../api/portfolios";
import { useApi } from "../../api/useApi";
import { ValueChart, type DailyPoint } from "../../components/charts";
import { Donut, type Slice } from "../../components/Donut";
import { ErrorBanner, Field, Loading } from "../../components/form";
import { RangePicker } from "../../components/RangePicker";
import { money, ratio, signed, trend } from "../../format";
import { useLiveTotals } from "../../ws/liveTotals";
import { portfolioFeed } from "../../ws/portfolioFeed";

export default function Dashboard() {
  const portfolios = useApi(listPortfolios, []);
  // A trade made anywhere (this tab, another, the API) changes a portfolio: load them again.
  useEffect(() => portfolioFeed.watchTrades(() => portfolios.reload()), []);
  const list = portfolios.data;

  return (
    <>
      <div class="row spread">
        <h1>Dashboard</h1>
        <a href="/trade" class="muted">
          New trade →
        </a>
      </div>
      <ErrorBanner error={portfolios.error} testid="dashboard-error" />
      {list === undefined ? (
        portfolios.loading && <Loading what="your portfolios" />
      ) : (
        <Overview portfolios={list} />
      )}
      <CreatePortfolio onCreated={portfolios.reload} />
    </>
  );
}

/** The live parts (the summary, each card) follow the ticks on their own; the donut and the
 * chart below them are drawn again only when the portfolios are loaded again. */
function Overview({ portfolios }: { portfolios: Portfolio[] }) {
  return (
    <>
      <Summary portfolios={portfolios} />
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
          <Allocation portfolios={portfolios} />
        </section>
        <ValueOverTime portfolios={portfolios} />
      </div>
    </>
  );
}

function Summary({ portfolios }: { portfolios: Portfolio[] }) {
  const totals = useLiveTotals(portfolios);
  let total = 0;
  let dayChange = 0;
  let gain = 0;
  for (const t of totals.values()) {
    total += t.total;
    dayChange += t.dayChange;
    gain += t.gain;
  }
  const currency = portfolios[0]?.currency || "USD";
  const previous = total - dayChange;
  return (
    <section class="card" aria-labelledby="all-title">
      <h2 id="all-title">All portfolios</h2>
      <dl class="stats">
        <div>
          <dt>Total value</dt>
          <dd class="big" data-testid="dashboard-total">
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
      <p class="muted">
        {(portfolio.positions ?? []).length} positions · cash {money(portfolio.cash, currency)}
      </p>
    </li>
  );
}

function Allocation({ portfolios }: { portfolios: Portfolio[] }) {
  const slices = useMemo(() => {
    const bySymbol = new Map<string, number>();
    let cash = 0;
    for (const p of portfolios) {
      cash += Math.max(0, Number(p.cash ?? 0));
      for (const position of p.positions ?? []) {
        const symbol = position.symbol ?? "?";
        bySymbol.set(symbol, (bySymbol.get(symbol) ?? 0) + Number(position.marketValue ?? 0));
      }
    }
    const result: Slice[] = [...bySymbol].map(([name, value]) => ({ name, value }));
    if (cash > 0) result.push({ name: "cash", value: cash });
    return result;
  }, [portfolios]);
  return <Donut slices={slices} label="Allocation of all portfolios by holding and cash" />;
}

function ValueOverTime({ portfolios }: { portfolios: Portfolio[] }) {
  const [range, setRange] = useState<Range>("3m");
  const series = useApi(async () => {
    const answers = await Promise.all(
      portfolios.map((p) => performance(p.id ?? "", range).then((r) => r.series ?? [])),
    );
    // The sum across portfolios, day by day (a portfolio without a day counts nothing that day).
    const byDate = new Map<string, number>();
    for (const points of answers) {
      for (const point of points) {
        const date = point.date ?? "";
        byDate.set(date, (byDate.get(date) ?? 0) + Number(point.value ?? 0));
      }
    }
    return [...byDate]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([date, value]): DailyPoint => ({ date, value }));
  }, [portfolios, range]);
  return (
    <section class="card" aria-labelledby="value-title">
      <div class="row spread">
        <h2 id="value-title">Value over time</h2>
        <RangePicker value={range} onChange={setRange} label="Value over time period" />
      </div>
      <ErrorBanner error={series.error} testid="value-chart-error" />
      <ValueChart
        points={series.data ?? []}
        label={`Total value of all portfolios over ${range}`}
        testid="value-chart"
      />
    </section>
  );
}

function CreatePortfolio({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"tracking" | "paper">("paper");
  const [cash, setCash] = useState("10000");
  const [currency, setCurrency] = useState("USD");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [key, setKey] = useState(idempotencyKey);

  async function submit(event: Event) {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      const base = { name: name.trim(), kind, currency };
      const body = kind === "paper" && cash ? { ...base, initialCash: cash.trim() } : base;
      await envelope(api().POST("/api/v1/portfolios", { body, headers: { "Idempotency-Key": key } }));
      setName("");
      setKey(idempotencyKey());
      onCreated();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const fieldError = (field: string) => (error instanceof ApiError ? error.field(field) : undefined);
  return (
    <section class="card" aria-labelledby="create-title">
      <h2 id="create-title">New portfolio</h2>
      <ErrorBanner error={error} testid="create-portfolio-error" />
      <form onSubmit={submit} data-testid="create-portfolio-form" class="grid">
        <Field label="Name" id="portfolio-name" error={fieldError("name")}>
          <input
            id="portfolio-name"
            required
            maxLength={100}
            value={name}
            onInput={(e) => {
              setName(e.currentTarget.value);
              setKey(idempotencyKey());
            }}
          />
        </Field>
        <Field label="Kind" id="portfolio-kind" hint="Paper: trades spend its cash. Tracking: records real trades.">
          <select
            id="portfolio-kind"
            value={kind}
            onChange={(e) => setKind(e.currentTarget.value as "tracking" | "paper")}
          >
            <option value="paper">Paper</option>
            <option value="tracking">Tracking</option>
          </select>
        </Field>
        <Field
          label="Currency"
          id="portfolio-currency"
          hint="Values, returns and gains are kept in it; it cannot change once there are trades."
          error={fieldError("currency")}
        >
          <select
            id="portfolio-currency"
            value={currency}
            onChange={(e) => setCurrency(e.currentTarget.value)}
            data-testid="create-portfolio-currency"
          >
            {CURRENCIES.map((code) => (
              <option key={code} value={code}>
                {code}
              </option>
            ))}
          </select>
        </Field>
        {kind === "paper" && (
          <Field label="Starting cash" id="portfolio-cash" error={fieldError("initialCash")}>
            <input
              id="portfolio-cash"
              inputMode="decimal"
              value={cash}
              onInput={(e) => setCash(e.currentTarget.value)}
            />
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
