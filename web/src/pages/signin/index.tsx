/** Sign in; also where a session that ended elsewhere lands, with the reason. */

import { useLocation } from "preact-iso";
import { useEffect, useState } from "preact/hooks";
import { ErrorBanner, Field } from "../../components/form";
import { signIn, useSession } from "../../auth/session";
import { ApiError } from "../../api/errors";

export default function SignIn() {
  const session = useSession();
  const { query, route } = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const next = query.next && query.next.startsWith("/") ? query.next : "/";

  useEffect(() => {
    if (session.status === "signedIn") route(next, true);
  }, [session.status]);

  async function submit(event: Event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(email.trim(), password);
      route(next, true);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const notice = session.status === "signedOut" ? session.message : undefined;
  const fieldError = (name: string) => (error instanceof ApiError ? error.field(name) : undefined);
  return (
    <section class="auth card" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to Stockfolio</h1>
      {notice && !error && (
        <p class="banner notice" role="status" data-testid="signin-notice">
          {notice}
        </p>
      )}
      <ErrorBanner error={error} testid="signin-error" />
      <form onSubmit={submit} data-testid="signin-form" noValidate>
        <Field label="Email" id="signin-email" error={fieldError("email")}>
          <input
            id="signin-email"
            type="email"
            autoComplete="username"
            required
            value={email}
            onInput={(e) => setEmail(e.currentTarget.value)}
          />
        </Field>
        <Field label="Password" id="signin-password" error={fieldError("password")}>
          <input
            id="signin-password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </Field>
        <button type="submit" class="primary" disabled={busy} data-testid="signin-submit">
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <p>
        New here? <a href="/sign-up">Create an account</a>
      </p>
    </section>
  );
}
