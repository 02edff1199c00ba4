/** Your account: a new name, a new email, a new password, or the account deleted (README, "Users
 * and authentication": PUT and DELETE /api/v1/users/{id}). All but the name need the current
 * password, checked by the API as a login is: a wrong one is a failed login, and enough of them
 * make it wait (429 TOO_MANY_ATTEMPTS, its message saying how long). */

import type { ComponentChildren, ComponentProps } from "preact";
import { useLocation } from "preact-iso";
import { useRef, useState } from "preact/hooks";
import { api, envelope, type User } from "../../api/client";
import { ApiError } from "../../api/errors";
import { forgetDeletedAccount, updateSignedInUser, useSession } from "../../auth/session";
import { ErrorBanner, Field, NoticeBanner, TextInput } from "../../components/form";

/** Where the API's refusal of a form is shown: beside each of the form's `fields` it names (all
 * of a field's reasons), else whole in the form's banner. A wrong current password names no
 * field, but here it can only be the current password's; a taken email is the email's. */
function refusal(error: unknown, fields: readonly string[]) {
  const apiError = error instanceof ApiError ? error : null;
  const at = (field: string): string | undefined => {
    if (!apiError) return undefined;
    if (field === "currentPassword" && apiError.code === "INVALID_CREDENTIALS") return apiError.message;
    if (field === "email" && apiError.code === "EMAIL_TAKEN") return apiError.message;
    const reasons = (apiError.details.fields ?? [])
      .filter((f) => f.field === field)
      .map((f) => f.description);
    return reasons.length ? reasons.join("; ") : undefined;
  };
  // A reason for a field this form lacks would be lost beside no field: then the banner says all.
  const named = apiError?.details.fields?.map((f) => f.field) ?? [];
  const placed = fields.some((f) => at(f) !== undefined) && named.every((f) => fields.includes(f));
  return { banner: placed ? null : error, at };
}

/** A form's send: busy (its button disabled) from the first submit until the API answers, with
 * a second submit meanwhile (Enter pressed twice) ignored; then what it said, or why not, placed
 * by `refusal` among the form's `fields`. What was typed is the caller's state and stays as it
 * was on a refusal. */
function useSend(fields: readonly string[], send: () => Promise<string>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  // The state above is drawn a moment later; this knows at once.
  const inFlight = useRef(false);

  async function submit(event: Event) {
    event.preventDefault();
    if (inFlight.current) return;
    inFlight.current = true;
    setBusy(true);
    setError(null);
    setNotice("");
    try {
      setNotice(await send());
    } catch (failure) {
      setError(failure);
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }

  return { busy, notice, submit, ...refusal(error, fields) };
}

/** One card of the page: a titled form, the API's refusal and what it said above it, its button
 * disabled while it is sent. Its test ids are `account-${slug}-…` (the button's, `-save` unless
 * it names its own). */
function Card(props: {
  slug: string;
  title: string;
  intro?: ComponentChildren;
  banner: unknown;
  notice?: string;
  onSubmit: (event: Event) => void;
  busy: boolean;
  button: { label: string; busyLabel: string; testid?: string; danger?: boolean };
  children: ComponentChildren;
}) {
  const { slug, busy, button } = props;
  return (
    <section class="card" aria-labelledby={`account-${slug}-title`}>
      <h2 id={`account-${slug}-title`}>{props.title}</h2>
      {props.intro}
      <ErrorBanner error={props.banner} testid={`account-${slug}-failed`} />
      <NoticeBanner notice={props.notice} testid={`account-${slug}-notice`} />
      <form onSubmit={props.onSubmit} data-testid={`account-${slug}-form`} noValidate>
        {props.children}
        <button
          type="submit"
          class={button.danger ? "danger" : "primary"}
          disabled={busy}
          data-testid={button.testid ?? `account-${slug}-save`}
        >
          {busy ? button.busyLabel : button.label}
        </button>
      </form>
    </section>
  );
}

/** A labelled text box whose id is its test id too; any other attribute passes to the box. */
function TextField(
  props: ComponentProps<typeof TextInput> & {
    label: string;
    id: string;
    error: string | undefined;
    hint?: string;
  },
) {
  const { label, error, hint, ...input } = props;
  return (
    <Field label={label} id={props.id} error={error} hint={hint}>
      <TextInput {...input} data-testid={props.id} />
    </Field>
  );
}

/** The current password the API asks for to change the email or the password, or to delete the
 * account. */
function CurrentPasswordField(props: {
  id: string;
  error: string | undefined;
  value: string;
  onValue: (value: string) => void;
}) {
  return <TextField label="Current password" type="password" autoComplete="current-password" {...props} />;
}

type Changes = { name?: string; email?: string; newPassword?: string; currentPassword?: string };

function updateMe(me: User, body: Changes) {
  return envelope(api().PUT("/api/v1/users/{id}", { params: { path: { id: me.id ?? "" } }, body }));
}

function NameCard({ me }: { me: User }) {
  const [name, setName] = useState(me.name ?? "");
  const { busy, notice, submit, banner, at } = useSend(["name"], async () => {
    const { data } = await updateMe(me, { name: name.trim() });
    updateSignedInUser(data);
    setName(data.name ?? ""); // as the API keeps it: spaces collapsed, or the email's first part
    return "Your name is saved.";
  });
  return (
    <Card
      slug="name"
      title="Name"
      banner={banner}
      notice={notice}
      onSubmit={submit}
      busy={busy}
      button={{ label: "Save name", busyLabel: "Saving…" }}
    >
      <TextField
        label="Name"
        id="account-name"
        error={at("name")}
        hint="Shown in the header; left empty, the first part of your email."
        autoComplete="name"
        maxLength={100}
        value={name}
        onValue={setName}
      />
    </Card>
  );
}

function EmailCard({ me }: { me: User }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { busy, notice, submit, banner, at } = useSend(["email", "currentPassword"], async () => {
    const before = me.email;
    const { data } = await updateMe(me, { email: email.trim(), currentPassword: password });
    updateSignedInUser(data);
    setEmail("");
    setPassword("");
    return data.email === before
      ? `Your email is still ${data.email ?? ""}: nothing changed.`
      : `Your email is now ${data.email ?? ""}. Sign in with it from now on.`;
  });
  return (
    <Card
      slug="email"
      title="Email"
      intro={
        <p>
          You sign in with <strong data-testid="account-current-email">{me.email}</strong>.
        </p>
      }
      banner={banner}
      notice={notice}
      onSubmit={submit}
      busy={busy}
      button={{ label: "Change email", busyLabel: "Changing…" }}
    >
      <TextField
        label="New email"
        id="account-email"
        error={at("email")}
        type="email"
        autoComplete="email"
        value={email}
        onValue={setEmail}
      />
      <CurrentPasswordField
        id="account-email-password"
        error={at("currentPassword")}
        value={password}
        onValue={setPassword}
      />
    </Card>
  );
}

function PasswordCard({ me }: { me: User }) {
  const [newPassword, setNewPassword] = useState("");
  const [repeated, setRepeated] = useState("");
  const [current, setCurrent] = useState("");
  const [mismatch, setMismatch] = useState(false);
  const { busy, notice, submit, banner, at } = useSend(["newPassword", "currentPassword"], async () => {
    await updateMe(me, { newPassword, currentPassword: current });
    setNewPassword("");
    setRepeated("");
    setCurrent("");
    // The users service ends every session of the account but the one that asked (accounts.py,
    // `keep`): this tab's tokens go on working, and its next renewal too.
    return "Your password is changed. Your other sessions were signed out; this one stays signed in.";
  });

  const send = (event: Event) => {
    // A typo in a password nobody sees would lock its owner out: checked before anything is sent.
    const differs = repeated !== newPassword;
    setMismatch(differs);
    if (differs) event.preventDefault();
    else void submit(event);
  };
  return (
    <Card
      slug="password"
      title="Password"
      intro={
        <p class="muted" data-testid="account-password-sessions">
          Changing your password signs you out everywhere else (other browsers and devices); you
          stay signed in here.
        </p>
      }
      banner={banner}
      notice={notice}
      onSubmit={send}
      busy={busy}
      button={{ label: "Change password", busyLabel: "Changing…" }}
    >
      <TextField
        label="New password"
        id="account-new-password"
        error={at("newPassword")}
        hint="At least 8 characters, with a letter and a digit."
        type="password"
        autoComplete="new-password"
        value={newPassword}
        onValue={setNewPassword}
      />
      <TextField
        label="New password again"
        id="account-repeat-password"
        error={mismatch && repeated !== newPassword ? "does not match the new password" : undefined}
        type="password"
        autoComplete="new-password"
        value={repeated}
        onValue={setRepeated}
      />
      <CurrentPasswordField
        id="account-password-current"
        error={at("currentPassword")}
        value={current}
        onValue={setCurrent}
      />
    </Card>
  );
}

function DeleteCard({ me }: { me: User }) {
  const { route } = useLocation();
  const [password, setPassword] = useState("");
  const { busy, submit, banner, at } = useSend(["currentPassword"], async () => {
    await envelope(
      api().DELETE("/api/v1/users/{id}", {
        params: { path: { id: me.id ?? "" } },
        body: { currentPassword: password },
      }),
    );
    // To the sign-in page itself (not back here after a sign-in: this account is gone).
    route("/sign-in", true);
    forgetDeletedAccount("Your account was deleted.");
    return "";
  });

  const send = (event: Event) => {
    event.preventDefault();
    if (busy) return;
    const question = "Delete your account? You can never sign in with it again, and every session of yours ends.";
    if (!window.confirm(question)) return;
    void submit(event);
  };
  return (
    <Card
      slug="delete"
      title="Delete your account"
      intro={
        <p class="muted">
          Your account goes for good: nobody can sign in with it again, and every session of yours ends.
        </p>
      }
      banner={banner}
      onSubmit={send}
      busy={busy}
      button={{ label: "Delete my account", busyLabel: "Deleting…", testid: "account-delete", danger: true }}
    >
      <CurrentPasswordField
        id="account-delete-password"
        error={at("currentPassword")}
        value={password}
        onValue={setPassword}
      />
    </Card>
  );
}

export default function AccountPage() {
  const session = useSession();
  if (session.status !== "signedIn") return null;
  const me = session.user;
  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Your account</h1>
      <div class="grid">
        <NameCard me={me} />
        <EmailCard me={me} />
        <PasswordCard me={me} />
        <DeleteCard me={me} />
      </div>
    </section>
  );
}
