/** What the sign-in and sign-up forms share: leave for `destination` once signed in, and a
 * submit that sends the form, shows it busy and keeps what went wrong. */

import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { useSession } from "./session";

export function useAuthForm(destination: string, send: () => Promise<void>) {
  const session = useSession();
  const { route } = useLocation();
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (session.status === "signedIn") route(destination, true);
  }, [session.status]);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await send();
      route(destination, true);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return { session, error, busy, submit };
}
