/** Target allocations and rebalancing (README: Target allocations and rebalancing): a form of
 * target weights (percent of the portfolio's value; the rest is the cash target), saved whole,
 * and the trades the API suggests to reach them at current prices, with extra cash to invest,
 * whole or fractional shares, and trading costs (a fee per trade, a percent of each trade, a
 * minimum trade value): each line's fee and the total are shown. It suggests only: nothing is
 * traded from here. */

import { useEffect, useState } from "preact/hooks";
import { api, dataOf, envelope, type Schemas } from "../../api/client";
import { ApiError } from "../../api/errors";
import { useApi } from "../../api/useApi";
import { CheckBox, ErrorBanner, NoticeBanner } from "../../components/form";
import { ACTIONS, Table } from "../../components/Table";
import { decimalProblem } from "../../decimal";
import { money, percent, price as formatPrice, quantity } from "../../format";

type Line = Schemas["stockfolio.portfolio.v1.RebalanceLine"];
type Row = { symbol: string; weight: string };

const SYMBOL = /^\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,14}$/;
const REASONS: Record<string, string> = {
  NO_PRICE: "no current price",
  ON_TARGET: "on target",
  NO_CASH: "not enough cash",
  NO_TARGETS: "no targets set",
  BELOW_MINIMUM: "below the minimum trade",
  FEE_EXCEEDS_VALUE: "the fee exceeds its value",
};

/** What the suggestion is asked with: the form's fields as sent (empty: not given). */
type Asked = {
  cash: string;
  fractional: boolean;
  feePerTrade: string;
  feePercent: string;
  minTradeValue: string;
};

const NOTHING_ASKED: Asked = {
  cash: "",
  fractional: false,
  feePerTrade: "",
  feePercent: "",
  minTradeValue: "",
};

function feePercentProblem(text: string): string | undefined {
  return (
    decimalProblem(text, { places: 4, zero: true, optional: true }) ??
    (Number(text) >= 100 ? "must be less than 100" : undefined)
  );
}

function emptyRow(): Row {
  return { symbol: "", weight: "" };
}

export function Rebalance(props: { portfolioId: string; currency: string; version: string }) {
  const { portfolioId, currency } = props;
  const targets = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/portfolios/{portfolio_id}/targets", {
          params: { path: { portfolio_id: portfolioId } },
        }),
      ),
    [portfolioId],
  );
  const [saved, setSaved] = useState(0);
  return (
    <section class="card" aria-labelledby="rebalance-title" data-testid="rebalance">
      <h2 id="rebalance-title">Rebalance</h2>
      <p class="muted">
        Target weights in percent of the portfolio's value; what is left of 100 % is kept in cash.
        Holdings without a target are sold off. Suggestions only: nothing is traded from here.
      </p>
      <ErrorBanner error={targets.error} testid="targets-error" />
      {targets.data && (
        <TargetsForm
          portfolioId={portfolioId}
          initial={(targets.data.targets ?? []).map((t) => ({
            symbol: t.symbol ?? "",
            weight: t.weight ?? "",
          }))}
          onSaved={() => setSaved((n) => n + 1)}
        />
      )}
      <Suggestions portfolioId={portfolioId} currency={currency} version={`${props.version}:${saved}`} />
    </section>
  );
}

function TargetsForm(props: { portfolioId: string; initial: Row[]; onSaved: () => void }) {
  const [rows, setRows] = useState<Row[]>(props.initial.length ? props.initial : [emptyRow()]);
  const [checked, setChecked] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  useEffect(() => setError(null), [rows]);

  const filled = rows.filter((r) => r.symbol.trim() !== "" || r.weight.trim() !== "");
  const rowProblem = (r: Row): { symbol?: string; weight?: string } => ({
    symbol: SYMBOL.test(r.symbol.trim()) ? undefined : "a symbol such as AAPL",
    weight:
      decimalProblem(r.weight, { places: 4 }) ?? (Number(r.weight) > 100 ? "at most 100" : undefined),
  });
  const sum = filled.reduce((total, r) => total + (Number(r.weight) || 0), 0);
  const sumProblem =
    sum > 100 + 1e-9
      ? `the weights add up to ${sum.toFixed(4).replace(/\.?0+$/, "")} %, more than 100`
      : undefined;
  const apiError = error instanceof ApiError ? error : null;
  const shown = (i: number, field: "symbol" | "weight"): string | undefined =>
    (checked && rowProblem(rows[i] as Row)[field]) ||
    (rows[i] && filled.includes(rows[i] as Row)
      ? apiError?.field(`targets[${filled.indexOf(rows[i] as Row)}].${field}`)
      : undefined);

  function edit(i: number, change: Partial<Row>) {
    setRows(rows.map((r, j) => (j === i ? { ...r, ...change } : r)));
  }

  async function save(event: Event) {
    event.preventDefault();
    if (busy) return;
    setChecked(true);
    if (sumProblem || filled.some((r) => Object.values(rowProblem(r)).some(Boolean))) return;
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const answer = await envelope(
        api().PUT("/api/v1/portfolios/{portfolio_id}/targets", {
          params: { path: { portfolio_id: props.portfolioId } },
          body: { targets: filled.map((r) => ({ symbol: r.symbol.trim(), weight: r.weight.trim() })) },
        }),
      );
      const kept = (answer.data.targets ?? []).map((t) => ({
        symbol: t.symbol ?? "",
        weight: t.weight ?? "",
      }));
      setRows(kept.length ? kept : [emptyRow()]);
      setChecked(false);
      setNotice(`Targets saved; ${answer.data.cashWeight ?? "100"} % in cash.`);
      props.onSaved();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={save} data-testid="targets-form" noValidate>
      <ErrorBanner error={error} testid="targets-save-error" />
      <NoticeBanner notice={notice} testid="targets-saved" />
      <Table
        class="nowrap"
        data-testid="targets-table"
        columns={[
          "Symbol",
          { label: "Target %", class: "num" },
          ACTIONS,
        ]}
      >
        {rows.map((r, i) => (
          <tr key={i} data-testid="target-row">
            <td>
              <input
                aria-label={`Symbol ${i + 1}`}
                value={r.symbol}
                autoComplete="off"
                aria-invalid={Boolean(shown(i, "symbol"))}
                onInput={(e) => edit(i, { symbol: e.currentTarget.value.toUpperCase() })}
                data-testid="target-symbol"
              />
              {shown(i, "symbol") && <small class="error"> {shown(i, "symbol")}</small>}
            </td>
            <td class="num">
              <input
                aria-label={`Target percent ${i + 1}`}
                inputMode="decimal"
                autoComplete="off"
                value={r.weight}
                aria-invalid={Boolean(shown(i, "weight"))}
                onInput={(e) => edit(i, { weight: e.currentTarget.value })}
                data-testid="target-weight"
              />
              {shown(i, "weight") && <small class="error"> {shown(i, "weight")}</small>}
            </td>
            <td>
              <button
                type="button"
                class="link"
                onClick={() => setRows(rows.filter((_, j) => j !== i))}
                aria-label={`Remove target ${i + 1}`}
                data-testid="target-remove"
              >
                Remove
              </button>
            </td>
          </tr>
        ))}
      </Table>
      <p class="muted" data-testid="targets-sum">
        {sumProblem ?? `${Math.max(0, 100 - sum).toFixed(2)} % in cash`}
      </p>
      <div class="row">
        <button
          type="button"
          disabled={rows.length >= 100}
          onClick={() => setRows([...rows, emptyRow()])}
          data-testid="target-add"
        >
          Add a target
        </button>
        <button type="submit" class="primary" disabled={busy} aria-busy={busy} data-testid="targets-save">
          {busy ? "Saving…" : "Save targets"}
        </button>
      </div>
    </form>
  );
}

function Suggestions(props: { portfolioId: string; currency: string; version: string }) {
  const { portfolioId, currency } = props;
  const [extra, setExtra] = useState("");
  const [fractional, setFractional] = useState(false);
  const [feePerTrade, setFeePerTrade] = useState("");
  const [feePercent, setFeePercent] = useState("");
  const [minTradeValue, setMinTradeValue] = useState("");
  const [asked, setAsked] = useState<Asked>(NOTHING_ASKED);
  const extraProblem = decimalProblem(extra, { places: 8, zero: true, optional: true });
  const feeProblem = decimalProblem(feePerTrade, { places: 6, zero: true, optional: true });
  const percentProblem = feePercentProblem(feePercent);
  const minimumProblem = decimalProblem(minTradeValue, { places: 6, zero: true, optional: true });
  const plan = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/portfolios/{portfolio_id}/rebalance", {
          params: {
            path: { portfolio_id: portfolioId },
            query: {
              ...(asked.cash ? { cash: asked.cash } : {}),
              fractional: asked.fractional,
              ...(asked.feePerTrade ? { feePerTrade: asked.feePerTrade } : {}),
              ...(asked.feePercent ? { feePercent: asked.feePercent } : {}),
              ...(asked.minTradeValue ? { minTradeValue: asked.minTradeValue } : {}),
            },
          },
        }),
      ),
    [
      portfolioId,
      props.version,
      asked.cash,
      asked.fractional,
      asked.feePerTrade,
      asked.feePercent,
      asked.minTradeValue,
    ],
  );
  const apiError = plan.error instanceof ApiError ? plan.error : null;

  function ask(event: Event) {
    event.preventDefault();
    if (extraProblem || feeProblem || percentProblem || minimumProblem) return;
    const next: Asked = {
      cash: extra.trim(),
      fractional,
      feePerTrade: feePerTrade.trim(),
      feePercent: feePercent.trim(),
      minTradeValue: minTradeValue.trim(),
    };
    setAsked(next);
    if ((Object.keys(next) as (keyof Asked)[]).every((k) => asked[k] === next[k])) plan.reload();
  }

  const p = plan.data;
  const lines = p?.lines ?? [];
  return (
    <>
      <h3 class="subhead">Suggested trades</h3>
      <form class="row" onSubmit={ask} data-testid="rebalance-form" noValidate>
        <label>
          Extra cash to invest ({currency}){" "}
          <input
            inputMode="decimal"
            autoComplete="off"
            value={extra}
            aria-invalid={Boolean(extraProblem)}
            onInput={(e) => setExtra(e.currentTarget.value)}
            data-testid="rebalance-cash"
          />
        </label>
        {extraProblem && <small class="error">{extraProblem}</small>}
        <label>
          Fee per trade ({currency}){" "}
          <input
            inputMode="decimal"
            autoComplete="off"
            size={6}
            value={feePerTrade}
            aria-invalid={Boolean(feeProblem ?? apiError?.field("feePerTrade"))}
            onInput={(e) => setFeePerTrade(e.currentTarget.value)}
            data-testid="rebalance-fee-per-trade"
          />
        </label>
        {(feeProblem ?? apiError?.field("feePerTrade")) && (
          <small class="error">{feeProblem ?? apiError?.field("feePerTrade")}</small>
        )}
        <label>
          Fee % of each trade{" "}
          <input
            inputMode="decimal"
            autoComplete="off"
            size={5}
            value={feePercent}
            aria-invalid={Boolean(percentProblem ?? apiError?.field("feePercent"))}
            onInput={(e) => setFeePercent(e.currentTarget.value)}
            data-testid="rebalance-fee-percent"
          />
        </label>
        {(percentProblem ?? apiError?.field("feePercent")) && (
          <small class="error">{percentProblem ?? apiError?.field("feePercent")}</small>
        )}
        <label>
          Minimum trade ({currency}){" "}
          <input
            inputMode="decimal"
            autoComplete="off"
            size={8}
            value={minTradeValue}
            aria-invalid={Boolean(minimumProblem ?? apiError?.field("minTradeValue"))}
            onInput={(e) => setMinTradeValue(e.currentTarget.value)}
            data-testid="rebalance-min-trade"
          />
        </label>
        {(minimumProblem ?? apiError?.field("minTradeValue")) && (
          <small class="error">{minimumProblem ?? apiError?.field("minTradeValue")}</small>
        )}
        <label>
          <CheckBox checked={fractional} onChecked={setFractional} data-testid="rebalance-fractional" />{" "}
          Fractional shares
        </label>
        <button type="submit" disabled={plan.loading} data-testid="rebalance-submit">
          Suggest
        </button>
      </form>
      <ErrorBanner error={plan.error} testid="rebalance-error" />
      <Table
        class="nowrap"
        data-testid="rebalance-table"
        aria-busy={plan.loading}
        columns={[
          "Symbol",
          { label: "Price", class: "num" },
          { label: "Value", class: "num" },
          { label: "Weight", class: "num" },
          { label: "Target", class: "num" },
          { label: "Drift", class: "num" },
          "Suggestion",
          { label: "Fee", class: "num" },
          { label: "Weight after", class: "num" },
        ]}
      >
        {lines.map((line) => (
          <tr key={line.symbol} data-testid="rebalance-row" data-symbol={line.symbol}>
            <th scope="row">{line.symbol}</th>
            <td class="num">
              {line.price ? formatPrice(line.price) : "—"}
              {line.currency && line.currency !== currency && (
                <small class="muted"> ({formatPrice(line.localPrice)} {line.currency})</small>
              )}
            </td>
            <td class="num">{money(line.value, currency)}</td>
            <td class="num">{percent(line.weight, false)}</td>
            <td class="num">{percent(line.targetWeight, false)}</td>
            <td class="num">{percent(line.drift)}</td>
            <td data-testid="rebalance-suggestion">{suggestion(line, currency)}</td>
            <td class="num" data-testid="rebalance-fee">
              {line.fee ? money(line.fee, currency) : "—"}
            </td>
            <td class="num">{percent(line.weightAfter, false)}</td>
          </tr>
        ))}
        {p && (
          <tr data-testid="rebalance-cash-row">
            <th scope="row">Cash</th>
            <td />
            <td class="num">{money(Number(p.cash ?? 0) + Number(p.extraCash ?? 0), currency)}</td>
            <td class="num">{percent(p.cashWeight, false)}</td>
            <td class="num">{percent(p.targetCashWeight, false)}</td>
            <td />
            <td data-testid="rebalance-cash-after">{money(p.cashAfter, currency)} left</td>
            <td />
            <td class="num">{percent(p.cashWeightAfter, false)}</td>
          </tr>
        )}
      </Table>
      {p && (
        <p class="muted" data-testid="rebalance-fees">
          Fees in all: <span data-testid="rebalance-total-fees">{money(p.totalFees, currency)}</span>;
          worth <span data-testid="rebalance-value-after">{money(p.totalValueAfter, currency)}</span>{" "}
          once the trades are made (the weights after are of that).
        </p>
      )}
    </>
  );
}

/** "Buy 9 · $3,737.70", "Sell 8 · $1,516.00", or why there is no trade. */
function suggestion(line: Line, currency: string): string {
  if (line.side === "buy" || line.side === "sell") {
    const verb = line.side === "buy" ? "Buy" : "Sell";
    return `${verb} ${quantity(line.tradeQuantity)} · ${money(line.tradeValue, currency)}`;
  }
  return REASONS[line.reason ?? ""] ?? "—";
}
