/** CSV import: check first (dryRun), then import; every refused row shows its reasons beside it.
 * The API imports nothing unless every row is good, and names each bad cell `row N: column`
 * (rows counted from 1 after the header). The splits of the file's `split` rows are listed as the
 * API answers them, the check's (what each would do) and the import's (what each did): day,
 * symbol, "4-for-1", shares before → after and the cash in lieu, as the Splits list shows them.
 *
 * Each send carries an Idempotency-Key, one per CSV, portfolio and check-or-import: a double
 * click or a retry after a lost answer imports once. An import done clears the CSV, so the same
 * file is not sent again by mistake. */

import { useState } from "preact/hooks";
import { api, envelope } from "../../api/client";
import { ApiError } from "../../api/errors";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import { ErrorBanner } from "../../components/form";
import { Table } from "../../components/Table";
import { SPLIT_COLUMNS, SplitCells, type StockSplit } from "./Splits";

const EXAMPLE = "date,side,symbol,quantity,price,fees,notes\n2024-03-15,buy,MSFT,2,410.5,0,first buy\n";

/** Rows of a CSV for display (quoted fields with commas and doubled quotes understood). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i += 1;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(cell);
      cell = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i += 1;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
    } else cell += ch;
  }
  if (cell !== "" || row.length) {
    row.push(cell);
    rows.push(row);
  }
  return rows.filter((r) => r.some((c) => c.trim() !== ""));
}

type Outcome = { kind: "checked" | "imported"; count: number; splits: StockSplit[] } | null;

/** "3 trades", or "3 trades and 1 split" when the file has split rows. */
function what(outcome: NonNullable<Outcome>): string {
  const trades = `${outcome.count} trades`;
  const n = outcome.splits.length;
  return n === 0 ? trades : `${trades} and ${n} split${n === 1 ? "" : "s"}`;
}

export function Import(props: { portfolioId: string; currency: string; onImported: () => void }) {
  const [csv, setCsv] = useState("");
  const { busy, error, setError, send } = useIdempotentPost();
  const [outcome, setOutcome] = useState<Outcome>(null);

  async function submit(dryRun: boolean) {
    const body = { portfolioId: props.portfolioId, csv, dryRun };
    await send(body, {
      start: () => setOutcome(null),
      post: (key) => envelope(api().POST("/api/v1/trades:import", { body, headers: { "Idempotency-Key": key } })),
      done: ({ data }) => {
        const count = dryRun ? (data.trades?.length ?? 0) : (data.imported ?? 0);
        setOutcome({ kind: dryRun ? "checked" : "imported", count, splits: data.splits ?? [] });
        if (!dryRun) {
          setCsv("");
          props.onImported();
        }
      },
    });
  }

  async function readFile(event: Event) {
    const file = (event.currentTarget as HTMLInputElement).files?.[0];
    if (file) {
      setCsv(await file.text());
      setOutcome(null);
      setError(null);
    }
  }

  // "row 3: price" → row 3's reasons; anything else (the whole file) goes to the banner.
  const byRow = new Map<number, string[]>();
  const general: string[] = [];
  if (error instanceof ApiError) {
    for (const f of error.details.fields ?? []) {
      const match = /^row (\d+)(?:: (.*))?$/.exec(f.field);
      if (match) {
        const n = Number(match[1]);
        byRow.set(n, [...(byRow.get(n) ?? []), match[2] ? `${match[2]}: ${f.description}` : f.description]);
      } else general.push(`${f.field}: ${f.description}`);
    }
  }
  const rows = parseCsv(csv);
  const header = rows[0] ?? [];
  const body = rows.slice(1);
  return (
    <section class="card" aria-labelledby="import-title">
      <h2 id="import-title">Import trades (CSV)</h2>
      <form onSubmit={(e) => e.preventDefault()} data-testid="import-form">
        <div class="field">
          <label for="import-file">CSV file</label>
          <input id="import-file" type="file" accept=".csv,text/csv" onChange={readFile} data-testid="import-file" />
        </div>
        <div class="field">
          <label for="import-csv">Or paste it (header: date, side, symbol, quantity, price, fees, notes)</label>
          <textarea
            id="import-csv"
            rows={6}
            placeholder={EXAMPLE}
            value={csv}
            onInput={(e) => {
              setCsv(e.currentTarget.value);
              setOutcome(null);
            }}
            data-testid="import-csv"
            aria-describedby="import-csv-hint"
          />
          <small class="hint" id="import-csv-hint">
            A stock split is a row too: side split, quantity its ratio (4:1, or 1:10 for a reverse split), price
            the cash-in-lieu price in the stock's currency (optional).
          </small>
        </div>
        <div class="row">
          <button type="button" disabled={busy || !csv.trim()} onClick={() => submit(true)} data-testid="import-check">
            Check
          </button>
          <button
            type="button"
            class="primary"
            disabled={busy || !csv.trim()}
            onClick={() => submit(false)}
            data-testid="import-submit"
          >
            {busy ? "Working…" : "Import"}
          </button>
        </div>
      </form>
      {error !== null && <ErrorBanner error={error} testid="import-error" />}
      {general.length > 0 && (
        <ul class="error" data-testid="import-general-errors">
          {general.map((g) => (
            <li key={g}>{g}</li>
          ))}
        </ul>
      )}
      {outcome && (
        <p class="banner notice" role="status" data-testid="import-result">
          {outcome.kind === "checked"
            ? `Every row is good: ${what(outcome)} would be imported.`
            : `${what(outcome)} imported.`}
        </p>
      )}
      {outcome && outcome.splits.length > 0 && (
        <ImportedSplits splits={outcome.splits} currency={props.currency} checked={outcome.kind === "checked"} />
      )}
      {body.length > 0 && (
        <div class="table-wrap">
          <table data-testid="import-rows">
            <thead>
              <tr>
                <th scope="col">Row</th>
                {header.map((h, i) => (
                  <th scope="col" key={i}>
                    {h}
                  </th>
                ))}
                <th scope="col">Problems</th>
              </tr>
            </thead>
            <tbody>
              {body.map((cells, i) => {
                const problems = byRow.get(i + 1);
                return (
                  <tr key={i} class={problems ? "bad" : ""} data-testid={`import-row-${i + 1}`}>
                    <th scope="row">{i + 1}</th>
                    {header.map((_, j) => (
                      <td key={j}>{cells[j] ?? ""}</td>
                    ))}
                    <td data-testid={`import-row-${i + 1}-errors`}>
                      {problems ? (
                        <ul class="plain error">
                          {problems.map((p) => (
                            <li key={p}>{p}</li>
                          ))}
                        </ul>
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The file's splits as the API answered them: those the check would record, or those recorded. */
function ImportedSplits(props: { splits: StockSplit[]; currency: string; checked: boolean }) {
  return (
    <div data-testid="import-splits">
      <h3 id="import-splits-title" style={{ margin: "1rem 0 0.5rem" }} data-testid="import-splits-title">
        {props.checked ? "Splits that would be recorded" : "Splits recorded"}
      </h3>
      <Table
        class="nowrap"
        aria-labelledby="import-splits-title"
        columns={SPLIT_COLUMNS}
      >
        {props.splits.map((s) => (
          <tr key={`${s.symbol} ${s.date}`} data-testid="import-split-row" data-symbol={s.symbol}>
            <SplitCells split={s} currency={props.currency} testid="import-split" />
          </tr>
        ))}
      </Table>
    </div>
  );
}
