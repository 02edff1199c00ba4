/** The inline form that corrects a trade (PATCH /api/v1/trades/{id}), shown under its row of the
 * trades table: its quantity (a cash trade's amount), price, fees, time and notes. Only the fields
 * changed are sent; a trade's side, symbol and portfolio stay (to change one, delete the trade and
 * record it anew). The API replays the history with the trade as edited and refuses (nothing
 * changed) when it or a later trade would not hold, its message naming that trade: the refusal is
 * shown under the form, which stays open to be fixed or cancelled. */

import { useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import type { ComponentProps } from "preact";
import { ErrorBanner, TextInput } from "../../components/form";

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

  // Each box's id is the trade's own (several forms can be open), its test id the field's.
  const box = (name: keyof Changes, testid: string) => ({
    id: `trade-edit-${name}-${id}`,
    value: form[name],
    onValue: (value: string) => setForm({ ...form, [name]: value }),
    "data-testid": testid,
  });
  return (
    <form
      class="row wrap"
      onSubmit={(e) => void save(e)}
      aria-label={`Edit the ${props.what}`}
      data-testid="trade-edit-form"
      data-trade-id={id}
    >
      <EditBox {...box("quantity", "trade-edit-quantity")} label={cash ? "Amount" : "Quantity"} inputMode="decimal" />
      {!cash && <EditBox {...box("price", "trade-edit-price")} label="Price" inputMode="decimal" />}
      <EditBox {...box("fees", "trade-edit-fees")} label="Fees" inputMode="decimal" />
      <EditBox {...box("executedAt", "trade-edit-date")} label="Date" type="datetime-local" />
      <EditBox {...box("notes", "trade-edit-notes")} label="Notes" maxLength={1000} />
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

/** A box of the form with its label around it. */
function EditBox(props: ComponentProps<typeof TextInput> & { id: string; label: string }) {
  const { label, ...input } = props;
  return (
    <label for={props.id}>
      {label}
      <TextInput {...input} />
    </label>
  );
}
