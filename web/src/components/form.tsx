/** Small pieces every form uses: a labelled field with its error, its checks, bound inputs, an
 * error or notice banner. */

import type { ComponentChildren, JSX } from "preact";
import { useState } from "preact/hooks";
import { ApiError, messageOf } from "../api/errors";

export function Field(props: {
  label: string;
  id: string;
  error?: string | undefined;
  hint?: string;
  children: ComponentChildren;
}) {
  return (
    <div class={`field${props.error ? " invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && !props.error && <small class="hint">{props.hint}</small>}
      {props.error && (
        <small class="error" id={`${props.id}-error`} role="alert" data-testid={`${props.id}-error`}>
          {props.error}
        </small>
      )}
    </div>
  );
}

/** A form's own checks (a problem per field, undefined where it is fine), shown from its first
 * submit on, and else the reason the API's `error` gives on that field. */
export function useFieldChecks<F extends string>(problems: Record<F, string | undefined>, error: unknown) {
  const [checked, setChecked] = useState(false);
  const apiError = error instanceof ApiError ? error : null;
  return {
    checked,
    apiError,
    /** What to show under `field`, if anything. */
    shown: (field: F): string | undefined => (checked && problems[field]) || apiError?.field(field),
    /** On submit: the problems show from now on; true when there are none. */
    pass: (): boolean => {
      setChecked(true);
      return !Object.values<string | undefined>(problems).some(Boolean);
    },
    /** Once sent: the emptied form shows no problem until its next submit. */
    reset: () => setChecked(false),
  };
}

type InputAttributes = Omit<JSX.InputHTMLAttributes<HTMLInputElement>, "value" | "onInput">;

/** A text box bound to a string: `onValue` gets what is typed; any other attribute passes on. */
export function TextInput(props: InputAttributes & { value: string; onValue: (value: string) => void }) {
  const { value, onValue, ...rest } = props;
  return <input {...rest} value={value} onInput={(e) => onValue(e.currentTarget.value)} />;
}

type SelectAttributes = Omit<JSX.SelectHTMLAttributes<HTMLSelectElement>, "value" | "onChange">;
/** One choice of a Select: a value shown as it is, or a value and its label. */
export type Choice<T extends string> = T | { value: T; label: string };

/** A drop-down bound to a string: `onValue` gets what is chosen. Any children (a "Choose…"
 * placeholder) come before the `choices`. */
export function Select<T extends string>(
  props: SelectAttributes & {
    value: T;
    onValue: (value: T) => void;
    choices: readonly Choice<T>[];
    children?: ComponentChildren;
  },
) {
  const { value, onValue, choices, children, ...rest } = props;
  return (
    <select {...rest} value={value} onChange={(e) => onValue(e.currentTarget.value as T)}>
      {children}
      {choices.map((c) => {
        const { value: v, label } = typeof c === "string" ? { value: c, label: c } : c;
        return (
          <option key={v} value={v}>
            {label}
          </option>
        );
      })}
    </select>
  );
}

/** A check box bound to a boolean: `onChecked` gets whether it is ticked. */
export function CheckBox(
  props: Omit<InputAttributes, "checked" | "onChange" | "type"> & {
    checked: boolean;
    onChecked: (checked: boolean) => void;
  },
) {
  const { checked, onChecked, ...rest } = props;
  return <input type="checkbox" {...rest} checked={checked} onChange={(e) => onChecked(e.currentTarget.checked)} />;
}

/** A labelled box for a decimal (a quantity, a price, fees), which the browser must not
 * autocomplete; its id is its test id too, and its error marks it invalid and describes it. */
export function DecimalField(props: {
  label: string;
  id: string;
  error: string | undefined;
  hint?: string;
  value: string;
  onValue: (value: string) => void;
}) {
  const { label, id, error, hint } = props;
  return (
    <Field label={label} id={id} error={error} hint={hint}>
      <TextInput
        id={id}
        inputMode="decimal"
        autoComplete="off"
        value={props.value}
        aria-invalid={Boolean(error)}
        aria-describedby={error ? `${id}-error` : undefined}
        onValue={props.onValue}
        data-testid={id}
      />
    </Field>
  );
}

/** An error from the API (its envelope's message) or anything thrown, in a banner. */
export function ErrorBanner({ error, testid }: { error: unknown; testid?: string }) {
  if (error === null || error === undefined) return null;
  return (
    <p class="banner error" role="alert" data-testid={testid ?? "error"}>
      {messageOf(error)}
    </p>
  );
}

/** What an action said, in a banner that screen readers announce; nothing when it said nothing. */
export function NoticeBanner(props: { notice: string | null | undefined; testid: string }) {
  const { notice, testid } = props;
  if (!notice) return null;
  return (
    <p class="banner notice" role="status" data-testid={testid}>
      {notice}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" aria-busy="true">
      Loading {what}…
    </p>
  );
}
