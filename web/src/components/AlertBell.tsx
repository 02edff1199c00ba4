/** The header's alert bell: how many fired alerts are unread (a link to the Alerts page), and a
 * toast for a few seconds when an `alert` message arrives on /ws/portfolio. The Alerts page
 * tells it when firings are marked read (`setUnreadAlerts`). */

import { useEffect, useState } from "preact/hooks";
import { listFired } from "../api/watch";
import type { AlertMessage } from "../ws/protocol";
import { portfolioFeed } from "../ws/portfolioFeed";

const TOAST_MS = 8000;
const listeners = new Set<(unread: number) => void>();
let unread = 0;

/** The unread count as the Alerts page knows it (after a list or a mark-read). */
export function setUnreadAlerts(count: number): void {
  unread = Math.max(0, count);
  for (const listener of listeners) listener(unread);
}

export function AlertBell() {
  const [count, setCount] = useState(unread);
  const [toast, setToast] = useState<AlertMessage | null>(null);

  useEffect(() => {
    listeners.add(setCount);
    listFired().then(
      (page) => setUnreadAlerts(page.unread),
      () => undefined, // the bell stays at what it knew; the Alerts page shows the error
    );
    let hide: ReturnType<typeof setTimeout> | undefined;
    const stop = portfolioFeed.watchAlerts((alert) => {
      setUnreadAlerts(unread + 1);
      setToast(alert);
      clearTimeout(hide);
      hide = setTimeout(() => setToast(null), TOAST_MS);
    });
    return () => {
      listeners.delete(setCount);
      stop();
      clearTimeout(hide);
    };
  }, []);

  return (
    <>
      <a href="/alerts" class="bell" data-testid="alerts-unread" aria-label={`${count} unread alerts`}>
        Alerts{count > 0 && <span class="badge">{count}</span>}
      </a>
      {toast && (
        <p class="toast" role="status" data-testid="alert-toast">
          {toast.message}
          <button type="button" class="link" aria-label="Dismiss" onClick={() => setToast(null)}>
            ×
          </button>
        </p>
      )}
    </>
  );
}
