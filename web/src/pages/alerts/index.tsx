/** Price alerts: create one (above or below a price, or a percent move over a window; once or
 * repeating with a cool-down), list them, pause, resume and delete them; and the alerts that
 * fired, newest first, with the unread count and "mark read". A firing arriving on /ws/portfolio
 * joins the list at once (the header's bell shows the toast). */

import { useEffect, useState } from "preact/hooks";
import { useApi } from "../../api/useApi";
import {
  createAlert,
  deleteAlert,
  listAlerts,
  listFired,
  markFiredRead,
  setAlertActive,
  type Alert,
  type AlertCondition,
  type FiredPage,
} from "../../api/watch";
import { setUnreadAlerts } from "../../components/AlertBell";
import { CheckBox, ErrorBanner, Field, Loading } from "../../components/form";
import { Table } from "../../components/Table";
import { dateTime, price } from "../../format";
import { portfolioFeed } from "../../ws/portfolioFeed";

const WINDOWS = [
  { seconds: 300, label: "5 minutes" },
  { seconds: 900, label: "15 minutes" },
  { seconds: 3600, label: "1 hour" },
  { seconds: 86400, label: "1 day" },
];

function describe(alert: Alert): string {
  if (alert.condition === "above") return `above ${price(alert.price)}`;
  if (alert.condition === "below") return `below ${price(alert.price)}`;
  const window = WINDOWS.find((w) => w.seconds === alert.windowSeconds)?.label ?? `${alert.windowSeconds ?? 0} s`;
  return `moves ${Number(alert.percent) > 0 ? "+" : ""}${alert.percent} % in ${window}`;
}

export default function AlertsPage() {
  const alerts = useApi(listAlerts, []);
  const fired = useApi(listFired, []);
  const [markError, setMarkError] = useState<unknown>(null);

  useEffect(() => {
    if (fired.data) setUnreadAlerts(fired.data.unread);
  }, [fired.data?.unread]);

  // A firing: it joins the list, and its alert shows its new state (a one-off is done).
  useEffect(
    () =>
      portfolioFeed.watchAlerts((message) => {
        const { type: _type, ...one } = message;
        fired.set((shown): FiredPage => ({
          fired: [one, ...(shown?.fired ?? []).filter((f) => f.id !== one.id)],
          unread: (shown?.unread ?? 0) + 1,
        }));
        alerts.reload();
      }),
    [fired.data, alerts.reload],
  );

  async function markAll() {
    try {
      await markFiredRead();
    } catch (failure) {
      setMarkError(failure);
      return;
    }
    setMarkError(null);
    fired.set((shown): FiredPage => ({ fired: (shown?.fired ?? []).map((f) => ({ ...f, read: true })), unread: 0 }));
  }

  async function markOne(id: string) {
    let marked: number;
    try {
      marked = await markFiredRead([id]);
    } catch (failure) {
      setMarkError(failure);
      return;
    }
    setMarkError(null);
    fired.set((shown): FiredPage => ({
      fired: (shown?.fired ?? []).map((f) => (f.id === id ? { ...f, read: true } : f)),
      unread: Math.max(0, (shown?.unread ?? 0) - marked),
    }));
  }

  return (
    <>
      <h1>Alerts</h1>
      <NewAlert
        onCreated={(alert) => {
          // Shown at once, then the list is asked for again: that answer supersedes one still on
          // its way (a reload after a firing), which was asked before this alert existed.
          alerts.set([...(alerts.data ?? []), alert]);
          alerts.reload();
        }}
      />
      <section class="card" aria-label="Your alerts">
        <h2>Your alerts</h2>
        <ErrorBanner error={alerts.error} testid="alerts-error" />
        {alerts.loading && !alerts.data && <Loading what="alerts" />}
        {alerts.data?.length === 0 && <p class="muted">No alerts yet.</p>}
        {alerts.data && alerts.data.length > 0 && (
          <Table
            columns={[
              "Symbol",
              "When",
              "Repeats",
              "State",
              { label: <span class="sr-only">Actions</span> },
            ]}
          >
            {alerts.data.map((alert) => (
              <AlertRow
                key={alert.id}
                alert={alert}
                onChange={(next) =>
                  alerts.set(
                    next
                      ? (alerts.data ?? []).map((a) => (a.id === alert.id ? next : a))
                      : (alerts.data ?? []).filter((a) => a.id !== alert.id),
                  )
                }
              />
            ))}
          </Table>
        )}
      </section>
      <section class="card" aria-label="Fired alerts">
        <div class="row spread">
          <h2>
            Fired <span data-testid="fired-unread">{fired.data?.unread ?? 0}</span> unread
          </h2>
          <button type="button" data-testid="fired-mark-all" disabled={!fired.data?.unread} onClick={() => void markAll()}>
            Mark all read
          </button>
        </div>
        <ErrorBanner error={fired.error} testid="fired-error" />
        <ErrorBanner error={markError} testid="fired-mark-error" />
        {fired.data?.fired.length === 0 && <p class="muted">Nothing fired yet.</p>}
        <ul class="plain">
          {fired.data?.fired.map((f) => (
            <li key={f.id} data-testid="fired-alert" class={f.read ? "muted" : ""}>
              <strong>{f.message}</strong> · {dateTime(f.firedAt)}
              {!f.read && (
                <button type="button" class="link" onClick={() => void markOne(f.id)}>
                  Mark read
                </button>
              )}
            </li>
          ))}
        </ul>
      </section>
    </>
  );
}

function NewAlert(props: { onCreated: (alert: Alert) => void }) {
  const [symbol, setSymbol] = useState("");
  const [condition, setCondition] = useState<AlertCondition>("above");
  const [threshold, setThreshold] = useState("");
  const [windowSeconds, setWindowSeconds] = useState(3600);
  const [repeat, setRepeat] = useState(false);
  const [cooldown, setCooldown] = useState("300");
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [checked, setChecked] = useState(false);
  const percentMove = condition === "percent_change";
  // Whole seconds: "5 min" or "1.5" is refused here, not sent as 0 (no cool-down at all).
  const cooldownProblem =
    repeat && !/^\d{1,9}$/.test(cooldown.trim()) ? "a whole number of seconds, such as 300" : undefined;

  async function submit(event: Event) {
    event.preventDefault();
    setChecked(true);
    if (cooldownProblem) return;
    setBusy(true);
    try {
      const made = await createAlert({
        symbol: symbol.trim(),
        condition,
        ...(percentMove ? { percent: threshold.trim(), windowSeconds } : { price: threshold.trim() }),
        repeat,
        ...(repeat ? { cooldownSeconds: Number(cooldown.trim()) } : {}),
        note: note.trim(),
      });
      props.onCreated(made);
      // Cleared for the next alert, unless the next one was typed while this one was saved.
      const [sentThreshold, sentNote] = [threshold, note];
      setThreshold((now) => (now === sentThreshold ? "" : now));
      setNote((now) => (now === sentNote ? "" : now));
      setError(null);
      setChecked(false);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section class="card" aria-label="New alert">
      <h2>New alert</h2>
      <form onSubmit={submit} class="grid" data-testid="alert-form">
        <Field label="Symbol" id="alert-symbol">
          <input id="alert-symbol" required value={symbol} onInput={(e) => setSymbol(e.currentTarget.value)} />
        </Field>
        <Field label="Condition" id="alert-condition">
          <select id="alert-condition" value={condition} onChange={(e) => setCondition(e.currentTarget.value as AlertCondition)}>
            <option value="above">Price at or above</option>
            <option value="below">Price at or below</option>
            <option value="percent_change">Moves by a percent</option>
          </select>
        </Field>
        <Field label={percentMove ? "Percent (signed: -5 is a fall)" : "Price"} id="alert-threshold">
          <input id="alert-threshold" required inputMode="decimal" value={threshold} onInput={(e) => setThreshold(e.currentTarget.value)} />
        </Field>
        {percentMove && (
          <Field label="Over" id="alert-window">
            <select id="alert-window" value={windowSeconds} onChange={(e) => setWindowSeconds(Number(e.currentTarget.value))}>
              {WINDOWS.map((w) => (
                <option key={w.seconds} value={w.seconds}>
                  {w.label}
                </option>
              ))}
            </select>
          </Field>
        )}
        <div class="field">
          <label>
            <CheckBox id="alert-repeat" checked={repeat} onChecked={setRepeat} /> Repeat
          </label>
        </div>
        {repeat && (
          <Field label="Cool-down (seconds)" id="alert-cooldown" error={checked ? cooldownProblem : undefined}>
            <input
              id="alert-cooldown"
              inputMode="numeric"
              value={cooldown}
              aria-invalid={Boolean(checked && cooldownProblem)}
              aria-describedby={checked && cooldownProblem ? "alert-cooldown-error" : undefined}
              onInput={(e) => setCooldown(e.currentTarget.value)}
            />
          </Field>
        )}
        <Field label="Note" id="alert-note">
          <input id="alert-note" maxLength={200} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
        </Field>
        <div class="field">
          <button type="submit" disabled={busy} data-testid="alert-create">
            Create alert
          </button>
        </div>
      </form>
      <ErrorBanner error={error} testid="alert-error" />
    </section>
  );
}

function AlertRow(props: { alert: Alert; onChange: (alert: Alert | null) => void }) {
  const { alert, onChange } = props;
  const [error, setError] = useState<unknown>(null);

  async function act(run: () => Promise<Alert | null>) {
    try {
      onChange(await run());
      setError(null);
    } catch (failure) {
      setError(failure);
    }
  }

  return (
    <tr data-testid="alert-row" data-symbol={alert.symbol}>
      <th scope="row">{alert.symbol}</th>
      <td>
        {describe(alert)}
        {alert.note && <span class="muted"> · {alert.note}</span>}
      </td>
      <td>{alert.repeat ? `every time, ${alert.cooldownSeconds ?? 0} s apart` : "once"}</td>
      <td data-testid="alert-state">{alert.active ? "active" : alert.lastFiredAt && !alert.repeat ? "fired" : "paused"}</td>
      <td class="row">
        <button
          type="button"
          class="link"
          data-testid="alert-toggle"
          onClick={() => void act(() => setAlertActive(alert.id, !alert.active))}
        >
          {alert.active ? "Pause" : "Resume"}
        </button>
        <button
          type="button"
          class="link"
          data-testid="alert-delete"
          onClick={() =>
            void act(async () => {
              await deleteAlert(alert.id);
              return null;
            })
          }
        >
          Delete
        </button>
        {error !== null && <ErrorBanner error={error} testid="alert-row-error" />}
      </td>
    </tr>
  );
}
