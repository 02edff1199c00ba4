/** A paper portfolio's savings plans (README: Savings plans): a buy of a fixed sum of one symbol
 * every week or month, made by the service at the market price. The list shows each plan's next
 * date and what its latest date did; Pause/Resume and Delete act on one; Runs lists what each of
 * its dates did (bought, or skipped and why). A form sets up a new one.
 *
 * Each create carries an Idempotency-Key: the same key while the same plan is retried, a new one
 * for a new plan, so a double click never sets up two. */

import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, dataOf, envelope, type Schemas } from "../../api/client";
import { useApi } from "../../api/useApi";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import {
  CheckBox,
  DecimalField,
  ErrorBanner,
  Field,
  NoticeBanner,
  Select,
  TextInput,
  useFieldChecks,
} from "../../components/form";
import { SymbolSearch } from "../../components/SymbolSearch";
import { ACTIONS, Table } from "../../components/Table";
import { decimalProblem } from "../../decimal";
import { money, price as formatPrice, quantity } from "../../format";

export type Plan = Schemas["stockfolio.portfolio.v1.Plan"];
export type PlanRun = Schemas["stockfolio.portfolio.v1.PlanRun"];

const SYMBOL = /^\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,14}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

function utcToday(): string {
  return new Date().toISOString().slice(0, 10);
}

/** "bought 1.5 at 187.42" (its trade deleted since, if it was), "skipped: INSUFFICIENT_CASH". */
function runLabel(run: PlanRun | undefined): string {
  if (!run) return "—";
  if (run.status === "done") {
    const bought = `${run.date}: bought ${quantity(run.quantity)} at ${formatPrice(run.price)}`;
    return run.tradeDeleted ? `${bought} (trade deleted since)` : bought;
  }
  return `${run.date}: skipped (${run.reason})`;
}

export function Plans(props: { portfolioId: string; currency: string; version: string }) {
  const { portfolioId, currency } = props;
  const plans = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/portfolios/{portfolio_id}/plans", {
          params: { path: { portfolio_id: portfolioId }, query: { limit: 100 } },
        }),
      ),
    [portfolioId, props.version],
  );
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState<string | null>(null);

  async function act(plan: Plan, what: "pause" | "resume" | "delete") {
    const id = plan.id ?? "";
    if (!id || busy) return;
    if (what === "delete" && !confirm(`Delete the plan buying ${plan.symbol}? Its trades stay.`)) return;
    setBusy(id);
    setError(null);
    try {
      if (what === "delete") {
        await api().DELETE("/api/v1/plans/{id}", { params: { path: { id } } });
      } else {
        await envelope(
          api().PATCH("/api/v1/plans/{id}", {
            params: { path: { id } },
            body: { paused: what === "pause" },
          }),
        );
      }
      plans.reload();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(null);
    }
  }

  const rows = plans.data ?? [];
  return (
    <section class="card" aria-labelledby="plans-title" data-testid="plans">
      <h2 id="plans-title">Savings plans</h2>
      <p class="muted">
        A plan buys a fixed sum of one symbol every week or month at the market price, from this
        portfolio's cash. A date without enough cash is skipped, not bought in part.
      </p>
      <ErrorBanner error={plans.error} testid="plans-error" />
      <ErrorBanner error={error} testid="plan-action-error" />
      <Table
        class="nowrap"
        data-testid="plans-table"
        aria-busy={plans.loading}
        empty={rows.length === 0 && !plans.loading && "No savings plans."}
        emptyTestid="no-plans"
        columns={[
          "Symbol",
          { label: "Amount", class: "num" },
          "Every",
          "Next",
          "Last run",
          ACTIONS,
        ]}
      >
        {rows.map((p) => (
          <Fragment key={p.id}>
            <tr data-testid="plan-row" data-plan-id={p.id} data-symbol={p.symbol}>
              <th scope="row">{p.symbol}</th>
              <td class="num">
                {money(p.amount, p.currency || currency)}
                {!p.fractional && <small class="muted"> whole shares</small>}
              </td>
              <td>{p.every}</td>
              <td data-testid="plan-next">{p.paused ? <em>paused</em> : p.nextRunDate}</td>
              <td data-testid="plan-last">{runLabel(p.lastRun)}</td>
              <td class="row">
                <button
                  type="button"
                  class="link"
                  disabled={busy !== null}
                  onClick={() => void act(p, p.paused ? "resume" : "pause")}
                  data-testid="plan-toggle"
                >
                  {p.paused ? "Resume" : "Pause"}
                </button>
                <button
                  type="button"
                  class="link"
                  onClick={() => setOpen(open === p.id ? null : (p.id ?? null))}
                  aria-expanded={open === p.id}
                  data-testid="plan-runs-toggle"
                >
                  Runs
                </button>
                <button
                  type="button"
                  class="link"
                  disabled={busy !== null}
                  onClick={() => void act(p, "delete")}
                  data-testid="plan-delete"
                >
                  {busy === p.id ? "…" : "Delete"}
                </button>
              </td>
            </tr>
            {open === p.id && (
              <tr>
                <td colSpan={6}>
                  <Runs planId={p.id ?? ""} version={props.version} />
                </td>
              </tr>
            )}
          </Fragment>
        ))}
      </Table>
      <CreatePlan portfolioId={portfolioId} currency={currency} onCreated={() => plans.reload()} />
    </section>
  );
}

function Runs(props: { planId: string; version: string }) {
  const runs = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/plans/{id}/runs", { params: { path: { id: props.planId }, query: { limit: 12 } } }),
      ),
    [props.planId, props.version],
  );
  const rows = runs.data ?? [];
  return (
    <>
      <ErrorBanner error={runs.error} testid="plan-runs-error" />
      <ul class="plain" data-testid="plan-runs">
        {rows.map((r) => (
          <li key={r.date} data-status={r.status}>
            {runLabel(r)}
            {r.status === "skipped" && r.message && <small class="muted"> — {r.message}</small>}
          </li>
        ))}
        {rows.length === 0 && !runs.loading && <li class="muted">No run yet.</li>}
      </ul>
    </>
  );
}

function CreatePlan(props: { portfolioId: string; currency: string; onCreated: () => void }) {
  const [symbol, setSymbol] = useState("");
  const [amount, setAmount] = useState("");
  const [every, setEvery] = useState<"week" | "month">("month");
  const [start, setStart] = useState(utcToday);
  const [whole, setWhole] = useState(false);
  const { busy, error, setError, send } = useIdempotentPost();
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => setError(null), [props.portfolioId, symbol, amount, every, start, whole]);

  const problems = {
    symbol: SYMBOL.test(symbol) ? undefined : "choose a symbol such as AAPL",
    amount: decimalProblem(amount, { places: 2 }),
    startDate: DAY.test(start) ? undefined : "choose a day",
  };
  const { shown, pass, reset } = useFieldChecks(problems, error);

  async function submit(event: Event) {
    event.preventDefault();
    if (!pass()) return;
    const body = { symbol, amount: amount.trim(), every, startDate: start, fractional: !whole };
    await send([props.portfolioId, body], {
      start: () => setNotice(null),
      post: (key) =>
        envelope(
          api().POST("/api/v1/portfolios/{portfolio_id}/plans", {
            params: { path: { portfolio_id: props.portfolioId } },
            body,
            headers: { "Idempotency-Key": key },
          }),
        ),
      done: ({ data: made }) => {
        setNotice(
          `Every ${made.every}, ${money(made.amount, made.currency || props.currency)} of ${made.symbol}; ` +
            `first buy on ${made.nextRunDate}.`,
        );
        setAmount("");
        reset();
        props.onCreated();
      },
    });
  }

  return (
    <>
      <h3 class="subhead">New plan</h3>
      <ErrorBanner error={error} testid="plan-error" />
      <NoticeBanner notice={notice} testid="plan-result" />
      <form onSubmit={submit} class="grid" data-testid="plan-form" noValidate>
        <Field label="Symbol" id="plan-symbol" error={shown("symbol")}>
          <SymbolSearch id="plan-symbol" value={symbol} onChange={setSymbol} invalid={Boolean(shown("symbol"))} />
        </Field>
        <DecimalField
          label={`Amount (${props.currency})`}
          id="plan-amount"
          error={shown("amount")}
          value={amount}
          onValue={setAmount}
        />
        <Field label="Every" id="plan-every">
          <Select id="plan-every" value={every} onValue={setEvery} choices={["month", "week"]} data-testid="plan-every" />
        </Field>
        <Field
          label="First buy (UTC day)"
          id="plan-start"
          error={shown("startDate")}
          hint="Days already past are not bought at today's price."
        >
          <TextInput
            id="plan-start"
            type="date"
            value={start}
            aria-invalid={Boolean(shown("startDate"))}
            onValue={setStart}
            data-testid="plan-start"
          />
        </Field>
        <label class="field">
          <span>
            <CheckBox checked={whole} onChecked={setWhole} data-testid="plan-whole" />{" "}
            Whole shares only (the rest stays cash)
          </span>
        </label>
        <div class="field">
          <button type="submit" class="primary" disabled={busy} aria-busy={busy} data-testid="plan-submit">
            {busy ? "Saving…" : "Start plan"}
          </button>
        </div>
      </form>
    </>
  );
}
