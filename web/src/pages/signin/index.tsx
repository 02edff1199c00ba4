/** Sign in; also where a session that ended elsewhere lands, with the reason. */

import { useLocation } from "preact-iso";
import { useState } from "preact/hooks";
import { ErrorBanner, Field, NoticeBanner, TextInput } from "../../components/form";
import { useAuthForm } from "../../auth/authForm";
import { signIn } from "../../auth/session";
import { ApiError } from "../../api/errors";

export default function SignIn() {
  const { query } = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  // A path of this app only: "//host" and "/\\host" would name another site.
  const next = query.next && /^\/(?![/\\])/.test(query.next) ? query.next : "/";
  const { session, error, busy, submit } = useAuthForm(next, () => signIn(email.trim(), password));

  const notice = session.status === "signedOut" ? session.message : undefined;
  const fieldError = (name: string) => (error instanceof ApiError ? error.field(name) : undefined);
  return (
    <section class="auth card" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to Stockfolio</h1>
      <NoticeBanner notice={error ? undefined : notice} testid="signin-notice" />
      <ErrorBanner error={error} testid="signin-error" />
      <form onSubmit={submit} data-testid="signin-form" noValidate>
        <Field label="Email" id="signin-email" error={fieldError("email")}>
          <TextInput id="signin-email" type="email" autoComplete="username" required value={email} onValue={setEmail} />
        </Field>
        <Field label="Password" id="signin-password" error={fieldError("password")}>
          <TextInput
            id="signin-password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onValue={setPassword}
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
