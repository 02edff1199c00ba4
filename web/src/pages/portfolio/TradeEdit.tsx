/** The inline form that corrects a trade (PATCH /api/v1/trades/{id}), shown under its row of the
 * trades table: its quantity (a cash trade's amount), price, fees, time and notes. Only the fields
 * changed are sent; a trade's side, symbol and portfolio stay (to change one, delete the trade and
 * record it anew). The API replays the history with the trade as edited and refuses (nothing
 * changed) when it or a later trade would not hold, its message naming that trade: the refusal is
 * shown under the form, which stays open to be fixed or cancelled. */

import { useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ErrorBanner } from "../../components/form";

type Trade = Schemas["stockfolio.portfolio.v1.Trade"];
type Changes = {
  quantity?: string;
  price?: string;
  fees?: string;
  executedAt?: string;
  notes?: string;
};

/** An RFC 3339 time as a datetime-local input shows it: the browser's own time zone, to the
 * minute ("2026-03-02T15:00"). */
function localInput(at: string | undefined): string {
  if (!at) return "";
  const d = new Date(at);
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}`
  );
}

/** What the form holds that differs from the trade: the body of the PATCH. */
function changed(t: Trade, form: Required<Changes>): Changes {
  const body: Changes = {};
  if (form.quantity.trim() !== (t.quantity ?? "")) body.quantity = form.quantity.trim();
  if (form.price.trim() !== (t.price ?? "")) body.price = form.price.trim();
  if (form.fees.trim() !== (t.fees ?? "")) body.fees = form.fees.trim();
  if (form.notes !== (t.notes ?? "")) body.notes = form.notes;
  // The minute shown is compared, not the instant: seconds the input cannot show stay.
  if (form.executedAt && form.executedAt !== localInput(t.executedAt)) {
    body.executedAt = new Date(form.executedAt).toISOString();
  }
  return body;
}

export function TradeEdit(props: {
  trade: Trade;
  /** "buy of 10 AAPL on …", as the row's buttons name the trade. */
  what: string;
  onSaved: (trade: Trade | undefined) => void;
  onCancel: () => void;
}) {
  const t = props.trade;
  const id = t.id ?? "";
  const cash = t.side === "deposit" || t.side === "withdrawal";
  const [form, setForm] = useState<Required<Changes>>({
    quantity: t.quantity ?? "",
    price: t.price ?? "",
    fees: t.fees ?? "",
    executedAt: localInput(t.executedAt),
    notes: t.notes ?? "",
  });
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const set = (field: keyof Changes) => (e: Event) =>
    setForm({ ...form, [field]: (e.currentTarget as HTMLInputElement).value });

  async function save(e: Event) {
    e.preventDefault();
    if (saving) return;
    const body = changed(t, form);
    if (Object.keys(body).length === 0) {
      props.onCancel();
      return;
    }
    setSaving(true);
    setError(null);
    try {
      const answer = await envelope(
        api().PATCH("/api/v1/trades/{id}", { params: { path: { id } }, body }),
      );
      props.onSaved(answer.data?.trade);
    } catch (failure) {
      setError(failure); // INSUFFICIENT_SHARES, INSUFFICIENT_CASH: its message names the trade
    } finally {
      setSaving(false);
    }
  }

  const field = (name: keyof Changes) => `trade-edit-${name}-${id}`;
  return (
    <form
      class="row wrap"
      onSubmit={(e) => void save(e)}
      aria-label={`Edit the ${props.what}`}
      data-testid="trade-edit-form"
      data-trade-id={id}
    >
      <label for={field("quantity")}>
        {cash ? "Amount" : "Quantity"}
        <input
          id={field("quantity")}
          inputMode="decimal"
          value={form.quantity}
          onInput={set("quantity")}
          data-testid="trade-edit-quantity"
        />
      </label>
      {!cash && (
        <label for={field("price")}>
          Price
          <input
            id={field("price")}
            inputMode="decimal"
            value={form.price}
            onInput={set("price")}
            data-testid="trade-edit-price"
          />
        </label>
      )}
      <label for={field("fees")}>
        Fees
        <input
          id={field("fees")}
          inputMode="decimal"
          value={form.fees}
          onInput={set("fees")}
          data-testid="trade-edit-fees"
        />
      </label>
      <label for={field("executedAt")}>
        Date
        <input
          id={field("executedAt")}
          type="datetime-local"
          value={form.executedAt}
          onInput={set("executedAt")}
          data-testid="trade-edit-date"
        />
      </label>
      <label for={field("notes")}>
        Notes
        <input
          id={field("notes")}
          maxLength={1000}
          value={form.notes}
          onInput={set("notes")}
          data-testid="trade-edit-notes"
        />
      </label>
      <button type="submit" disabled={saving} data-testid="trade-edit-save">
        {saving ? "Saving…" : "Save"}
      </button>
      <button type="button" class="link" onClick={props.onCancel} data-testid="trade-edit-cancel">
        Cancel
      </button>
      <ErrorBanner error={error} testid="trade-edit-error" />
    </form>
  );
}
