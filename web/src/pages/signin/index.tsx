/** Sign in; also where a session that ended elsewhere lands, with the reason. */

import { useLocation } from "preact-iso";
import { useState } from "preact/hooks";
import { Field, NoticeBanner, TextInput } from "../../components/form";
import { AuthCard } from "../../auth/AuthCard";
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
    <AuthCard
      name="signin"
      title="Sign in to Stockfolio"
      banner={<NoticeBanner notice={error ? undefined : notice} testid="signin-notice" />}
      error={error}
      busy={busy}
      submit={submit}
      action="Sign in"
      acting="Signing in…"
      footer={
        <>
          New here? <a href="/sign-up">Create an account</a>
        </>
      }
    >
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
    </AuthCard>
  );
}
