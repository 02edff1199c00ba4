/** Create an account (the API names a weak password or a taken email on its field). */

import { useState } from "preact/hooks";
import { Field, TextInput } from "../../components/form";
import { AuthCard } from "../../auth/AuthCard";
import { useAuthForm } from "../../auth/authForm";
import { signUp } from "../../auth/session";
import { ApiError } from "../../api/errors";

export default function SignUp() {
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { error, busy, submit } = useAuthForm("/", () =>
    signUp(email.trim(), password, name.trim()),
  );

  const fieldError = (field: string) => {
    if (!(error instanceof ApiError)) return undefined;
    if (error.code === "EMAIL_TAKEN" && field === "email") return error.message;
    return error.field(field);
  };
  return (
    <AuthCard
      name="signup"
      title="Create your account"
      error={error}
      busy={busy}
      submit={submit}
      action="Create account"
      acting="Creating…"
      footer={
        <>
          Already have an account? <a href="/sign-in">Sign in</a>
        </>
      }
    >
      <Field label="Name (optional)" id="signup-name" error={fieldError("name")}>
        <TextInput id="signup-name" autoComplete="name" value={name} onValue={setName} />
      </Field>
      <Field label="Email" id="signup-email" error={fieldError("email")}>
        <TextInput id="signup-email" type="email" autoComplete="email" required value={email} onValue={setEmail} />
      </Field>
      <Field
        label="Password"
        id="signup-password"
        error={fieldError("password")}
        hint="At least 8 characters; a passphrase is best."
      >
        <TextInput
          id="signup-password"
          type="password"
          autoComplete="new-password"
          required
          value={password}
          onValue={setPassword}
        />
      </Field>
    </AuthCard>
  );
}
