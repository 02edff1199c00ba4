/** The stock splits a portfolio records (README: Stock splits), oldest first, each with the
 * shares held just before and after it and the cash paid for the part of a share below 8 places;
 * a form to record one, and a Delete to take one back.
 *
 * A split changes the history before trades already recorded: the API replays it all and refuses
 * (SPLIT_CONFLICT, its message naming the trade) a split a later trade would not hold with, or
 * the deletion of one a later trade needs. Either way the refusal's message is shown and nothing
 * changed. Once one is recorded or deleted, the quantities changed: `onChanged` reloads the page's
 * portfolio, and with it the positions, trades and performance.
 *
 * Each record carries an Idempotency-Key: the same key while the same split is retried (after a
 * lost answer, say), a new one for a new split, so a double click never records two. */

import { useEffect, useState } from "preact/hooks";
import { api, dataOf, envelope, type Schemas } from "../../api/client";
import { useApi } from "../../api/useApi";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import { DecimalField, ErrorBanner, Field, NoticeBanner, TextInput, useFieldChecks } from "../../components/form";
import { SymbolSearch } from "../../components/SymbolSearch";
import { ACTIONS, Table, type Column } from "../../components/Table";
import { decimalProblem } from "../../decimal";
import { money, price as formatPrice, quantity } from "../../format";

export type StockSplit = Schemas["stockfolio.portfolio.v1.StockSplit"];

const SYMBOL = /^\^?[A-Za-z0-9][A-Za-z0-9.=-]{0,14}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;
/** The API's bound on either term of a ratio. */
const MAX_TERM = 1_000_000;

/** "4-for-1" (4 new shares for every one held), "1-for-10" (a reverse split). */
export function ratioLabel(split: Pick<StockSplit, "numerator" | "denominator">): string {
  return `${split.numerator ?? "?"}-for-${split.denominator ?? "?"}`;
}

/** The heads of the columns SplitCells fills. */
export const SPLIT_COLUMNS: Column[] = [
  "Date",
  "Symbol",
  "Split",
  { label: "Shares", class: "num" },
  { label: "Cash in lieu", class: "num" },
];

/** A split's day, symbol, ratio, shares before → after and cash in lieu, as table cells (the
 * splits list and the import's check show them alike); `testid` prefixes each cell's test id. */
export function SplitCells(props: { split: StockSplit; currency: string; testid: string }) {
  const { split: s, currency, testid } = props;
  return (
    <>
      <td data-testid={`${testid}-date`}>{s.date}</td>
      <th scope="row">{s.symbol}</th>
      <td data-testid={`${testid}-ratio`}>
        {ratioLabel(s)}
        {(s.numerator ?? 0) < (s.denominator ?? 0) && <small class="muted"> reverse</small>}
      </td>
      <td class="num" data-testid={`${testid}-shares`}>
        {quantity(s.quantityBefore)} → {quantity(s.quantityAfter)}
      </td>
      <td class="num" data-testid={`${testid}-cash`}>
        {Number(s.cashInLieu ?? 0) !== 0 && (
          <>
            {money(s.cashInLieu, currency)}
            {s.price && <small class="muted"> at {formatPrice(s.price)}</small>}
          </>
        )}
      </td>
    </>
  );
}

/** Today in UTC, as YYYY-MM-DD: a split's day is a UTC day, and the API takes none after it. */
function utcToday(): string {
  return new Date().toISOString().slice(0, 10);
}

/** The problem with a term of the ratio, or undefined when it is a whole number in range. */
function termProblem(text: string): string | undefined {
  const value = text.trim();
  if (value === "") return "is required";
  if (!/^\d+$/.test(value)) return "must be a whole number";
  const n = Number(value);
  if (n < 1 || n > MAX_TERM) return "must be from 1 to 1,000,000";
  return undefined;
}

export function Splits(props: {
  portfolioId: string;
  currency: string;
  version: string;
  onChanged: () => void;
}) {
  const { portfolioId, currency } = props;
  // Quantities before and after come from the replayed history: they move with every trade, so
  // the list loads again whenever the page's portfolio does.
  const splits = useApi(
    () =>
      dataOf(
        api().GET("/api/v1/portfolios/{portfolio_id}/splits", {
          params: { path: { portfolio_id: portfolioId } },
        }),
      ),
    [portfolioId, props.version],
  );
  const [deleting, setDeleting] = useState<string | null>(null);
  const [deleteError, setDeleteError] = useState<unknown>(null);
  // Splits recorded or deleted here: each makes the last refusal shown (of either) stale.
  const [edits, setEdits] = useState(0);
  useEffect(() => setDeleteError(null), [portfolioId, edits]);

  function changed() {
    setEdits((n) => n + 1);
    splits.reload();
    props.onChanged();
  }

  async function remove(split: StockSplit) {
    const id = split.id ?? "";
    if (!id || deleting) return;
    const what = `the ${ratioLabel(split)} split of ${split.symbol} on ${split.date}`;
    if (!confirm(`Delete ${what}? The shares go back to what they were without it.`)) return;
    setDeleting(id);
    setDeleteError(null);
    try {
      await api().DELETE("/api/v1/portfolios/{portfolio_id}/splits/{id}", {
        params: { path: { portfolio_id: portfolioId, id } },
      });
      changed();
    } catch (failure) {
      setDeleteError(failure); // SPLIT_CONFLICT: its message names the trade that needs it
    } finally {
      setDeleting(null);
    }
  }

  const rows = splits.data ?? [];
  return (
    <section class="card" aria-labelledby="splits-title" data-testid="splits">
      <h2 id="splits-title">Splits</h2>
      <p class="muted">
        A split changes the shares held from its day on, at the same cost: 4-for-1 makes 4 shares
        of each one, 1-for-10 (a reverse split) one of every ten. The part of a share below 8
        decimal places is paid out in cash.
      </p>
      <ErrorBanner error={splits.error} testid="splits-error" />
      <ErrorBanner error={deleteError} testid="split-delete-error" />
      <Table
        class="nowrap"
        data-testid="splits-table"
        aria-busy={splits.loading}
        empty={rows.length === 0 && !splits.loading && "No splits recorded."}
        emptyTestid="no-splits"
        columns={[...SPLIT_COLUMNS, ACTIONS]}
      >
        {rows.map((s) => (
          <tr key={s.id} data-testid="split-row" data-split-id={s.id} data-symbol={s.symbol}>
            <SplitCells split={s} currency={currency} testid="split" />
            <td>
              <button
                type="button"
                class="link"
                disabled={deleting !== null}
                onClick={() => void remove(s)}
                aria-label={`Delete the ${ratioLabel(s)} split of ${s.symbol} on ${s.date}`}
                data-testid="split-delete"
              >
                {deleting === s.id ? "Deleting…" : "Delete"}
              </button>
            </td>
          </tr>
        ))}
      </Table>
      <RecordSplit portfolioId={portfolioId} currency={currency} edits={edits} onRecorded={changed} />
    </section>
  );
}

function RecordSplit(props: {
  portfolioId: string;
  currency: string;
  edits: number;
  onRecorded: () => void;
}) {
  const [symbol, setSymbol] = useState("");
  const [day, setDay] = useState(utcToday);
  const [numerator, setNumerator] = useState("");
  const [denominator, setDenominator] = useState("1");
  const [price, setPrice] = useState("");
  const { busy, error, setError, send } = useIdempotentPost();
  const [notice, setNotice] = useState<string | null>(null);

  // A changed split is a new question, and a split deleted above changes the history it was
  // refused against: the last answer's error no longer applies.
  useEffect(
    () => setError(null),
    [props.portfolioId, props.edits, symbol, day, numerator, denominator, price],
  );

  const sameTerms =
    numerator.trim() !== "" && Number(numerator) === Number(denominator)
      ? "must differ from the new shares (that is no split)"
      : undefined;
  const problems = {
    symbol: SYMBOL.test(symbol) ? undefined : "choose a symbol such as AAPL",
    date: DAY.test(day) ? undefined : "choose a day",
    numerator: termProblem(numerator),
    denominator: termProblem(denominator) ?? sameTerms,
    price: decimalProblem(price, { places: 6, optional: true }),
  };
  const { shown, pass, reset } = useFieldChecks(problems, error);

  async function submit(event: Event) {
    event.preventDefault();
    if (!pass()) return;
    const body = {
      symbol,
      date: day,
      numerator: Number(numerator.trim()),
      denominator: Number(denominator.trim()),
      ...(price.trim() ? { price: price.trim() } : {}),
    };
    await send([props.portfolioId, body], {
      start: () => setNotice(null),
      post: (key) =>
        envelope(
          api().POST("/api/v1/portfolios/{portfolio_id}/splits", {
            params: { path: { portfolio_id: props.portfolioId } },
            body,
            headers: { "Idempotency-Key": key },
          }),
        ),
      done: (answer) => {
        setNotice(describe(answer.data, props.currency));
        setNumerator("");
        setDenominator("1");
        setPrice("");
        reset();
        props.onRecorded();
      },
    });
  }

  return (
    <>
      <h3 class="subhead">Record a split</h3>
      <ErrorBanner error={error} testid="split-error" />
      <NoticeBanner notice={notice} testid="split-result" />
      <form onSubmit={submit} class="grid" data-testid="split-form" noValidate>
        <Field label="Symbol" id="split-symbol" error={shown("symbol")}>
          <SymbolSearch id="split-symbol" value={symbol} onChange={setSymbol} invalid={Boolean(shown("symbol"))} />
        </Field>
        <Field label="Date (UTC)" id="split-date" error={shown("date")} hint="The first day the shares trade split.">
          <TextInput
            id="split-date"
            type="date"
            max={utcToday()}
            value={day}
            aria-invalid={Boolean(shown("date"))}
            onValue={setDay}
            data-testid="split-date-input"
          />
        </Field>
        <TermInput
          label="New shares"
          id="split-numerator"
          hint="4 in a 4-for-1 split."
          value={numerator}
          error={shown("numerator")}
          onValue={setNumerator}
        />
        <TermInput
          label="For old shares"
          id="split-denominator"
          hint="10 in a 1-for-10 split."
          value={denominator}
          error={shown("denominator")}
          onValue={setDenominator}
        />
        <DecimalField
          label={`Cash-in-lieu price (${props.currency}, optional)`}
          id="split-price"
          error={shown("price")}
          hint="One share after the split; empty: the last trade price, split."
          value={price}
          onValue={setPrice}
        />
        <div class="field">
          <button type="submit" class="primary" disabled={busy} aria-busy={busy} data-testid="split-submit">
            {busy ? "Recording…" : "Record split"}
          </button>
        </div>
      </form>
    </>
  );
}

/** "Recorded the 4-for-1 split of AAPL on 2026-03-02: 10 → 40 shares." (and the cash in lieu). */
function describe(split: StockSplit, currency: string): string {
  const cash = Number(split.cashInLieu ?? 0) !== 0 ? `, ${money(split.cashInLieu, currency)} paid in cash` : "";
  return (
    `Recorded the ${ratioLabel(split)} split of ${split.symbol} on ${split.date}: ` +
    `${quantity(split.quantityBefore)} → ${quantity(split.quantityAfter)} shares${cash}.`
  );
}

/** One term of the ratio: a whole number of shares, 1 to MAX_TERM; its id is its test id too. */
function TermInput(props: {
  label: string;
  id: string;
  hint: string;
  value: string;
  error: string | undefined;
  onValue: (value: string) => void;
}) {
  return (
    <Field label={props.label} id={props.id} error={props.error} hint={props.hint}>
      <TextInput
        id={props.id}
        type="number"
        inputMode="numeric"
        min={1}
        max={MAX_TERM}
        step={1}
        value={props.value}
        aria-invalid={Boolean(props.error)}
        onValue={props.onValue}
        data-testid={props.id}
      />
    </Field>
  );
}
