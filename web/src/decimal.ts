/** Decimal text as the API takes it (README: decimals are strings; quantities to 8 places,
 * prices to 6), checked before a form is sent so the person sees the rule at once. The API checks
 * the same rules again (its 422 names the field). */

export type DecimalRule = {
  places: number;
  /** Zero allowed (fees); otherwise the value must be positive. */
  zero?: boolean;
  /** Empty allowed (an optional field). */
  optional?: boolean;
};

const MAX_WHOLE_DIGITS = 12;

/** The problem with `text` as a decimal under `rule`, or undefined when it is fine. */
export function decimalProblem(text: string, rule: DecimalRule): string | undefined {
  const value = text.trim();
  if (value === "") return rule.optional ? undefined : "is required";
  const match = /^\+?(\d*)(?:\.(\d*))?$/.exec(value);
  if (!match || (match[1] === "" && (match[2] ?? "") === "")) {
    return "must be a decimal number such as 187.42";
  }
  const whole = (match[1] ?? "").replace(/^0+/, "");
  const fraction = (match[2] ?? "").replace(/0+$/, "");
  if (whole.length > MAX_WHOLE_DIGITS) return `must be below 10^${MAX_WHOLE_DIGITS}`;
  if (fraction.length > rule.places) return `at most ${rule.places} decimal places`;
  if (!rule.zero && whole === "" && fraction === "") return "must be more than 0";
  return undefined;
}
