/** A creating POST sent from a form (a trade, an order, a split, a plan, a portfolio, an import, a
 * terminal), each submit carrying an Idempotency-Key (README: Idempotency-Key): the same key while
 * the same body is retried (after a lost answer, say), a new one once the body differs or was
 * answered, so a double click never makes two. */

import { useRef, useState } from "preact/hooks";

/** A key for one submit of a creating POST: the same key on a retry of the same body, so the
 * API answers it once. */
export function idempotencyKey(): string {
  // randomUUID exists only in secure contexts (https, localhost); getRandomValues everywhere.
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export type Sending<T> = {
  /** Run before the request goes (not for a submit ignored while one is on its way). */
  start?: () => void;
  /** The request itself, with the key to send as its Idempotency-Key header. */
  post: (key: string) => Promise<T>;
  /** What the answer does; what it throws is kept as the error, as the request's failure is. */
  done: (answer: T) => void;
};

export type IdempotentPost = {
  busy: boolean;
  error: unknown;
  setError: (error: unknown) => void;
  /** Sends `body` (what makes two requests the same); a second submit while one is on its way is
   * ignored. A failure is kept in `error` and keeps the key: sending the same body retries it. */
  send: <T>(body: unknown, sending: Sending<T>) => Promise<void>;
};

export function useIdempotentPost(): IdempotentPost {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  // The request being sent and its key: kept while the same one is retried after a failure.
  const attempt = useRef<{ request: string; key: string } | null>(null);
  // A ref, not `busy`: a second click can come before the render that disables the button.
  const inFlight = useRef(false);

  async function send<T>(body: unknown, sending: Sending<T>): Promise<void> {
    if (inFlight.current) return; // a second click while the first is on its way
    const request = JSON.stringify(body);
    if (attempt.current?.request !== request) attempt.current = { request, key: idempotencyKey() };
    inFlight.current = true;
    setBusy(true);
    setError(null);
    sending.start?.();
    try {
      const answer = await sending.post(attempt.current.key);
      attempt.current = null; // answered: sending it again is a new request
      sending.done(answer);
    } catch (failure) {
      setError(failure); // the key stays: sending the same again retries it
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }

  return { busy, error, setError, send };
}
