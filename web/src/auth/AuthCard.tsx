/** The frame the sign-in and sign-up pages share: a titled card, the error of the last submit,
 * the form with its fields and submit button, and a link to the other page. */

import type { ComponentChildren } from "preact";
import { ErrorBanner } from "../components/form";

export function AuthCard(props: {
  /** "signin": the prefix of the title's id and the test ids. */
  name: string;
  title: string;
  error: unknown;
  busy: boolean;
  submit: (event: Event) => void;
  /** The button's text, and what it says while the form is sent. */
  action: string;
  acting: string;
  /** Shown above the error (a notice). */
  banner?: ComponentChildren;
  /** Under the form: the link to the other page. */
  footer: ComponentChildren;
  children: ComponentChildren;
}) {
  const { name } = props;
  return (
    <section class="auth card" aria-labelledby={`${name}-title`}>
      <h1 id={`${name}-title`}>{props.title}</h1>
      {props.banner}
      <ErrorBanner error={props.error} testid={`${name}-error`} />
      <form onSubmit={props.submit} data-testid={`${name}-form`} noValidate>
        {props.children}
        <button type="submit" class="primary" disabled={props.busy} data-testid={`${name}-submit`}>
          {props.busy ? props.acting : props.action}
        </button>
      </form>
      <p>{props.footer}</p>
    </section>
  );
}
