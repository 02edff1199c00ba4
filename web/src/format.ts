/** Numbers for the screen. The API sends decimals as strings; they are shown, never computed with,
 * except for display-only sums (day change, chart points), where a float's last cent is fine. */

const moneyFormats = new Map<string, Intl.NumberFormat>();

export function money(value: string | number | undefined, currency = "USD"): string {
  if (value === undefined || value === "") return "—";
  let format = moneyFormats.get(currency);
  if (!format) {
    // The API states money to the cent in every currency, yen too: Intl's own 0 places for JPY
    // would round each figure to the yen, and rows the API adds up exactly would not on screen.
    format = new Intl.NumberFormat(undefined, {
      style: "currency",
      currency,
      minimumFractionDigits: 2,
      maximumFractionDigits: 2,
    });
    moneyFormats.set(currency, format);
  }
  return format.format(Number(value));
}

// Made once: a formatter per call (toLocaleString with options) costs some 30 times as much,
// and prices are formatted on every tick.
const PRICE = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 6 });
const QUANTITY = new Intl.NumberFormat(undefined, { maximumFractionDigits: 8 });

/** A price: at least 2 decimals, up to the 6 the API keeps. */
export function price(value: string | number | undefined): string {
  if (value === undefined || value === "") return "—";
  return PRICE.format(Number(value));
}

export function quantity(value: string | undefined): string {
  if (value === undefined || value === "") return "—";
  return QUANTITY.format(Number(value));
}

/** A ratio ("0.1" is 10 %) as a percentage; `signed` for a return, plain for a weight. */
export function ratio(value: string | number | undefined, signed = false): string {
  if (value === undefined || value === "") return "—";
  return percent(Number(value) * 100, signed);
}

/** A plain figure such as a Sharpe ratio ("1.234567" is shown 1.23). */
export function decimal(value: string | number | undefined, places = 2): string {
  if (value === undefined || value === "" || !Number.isFinite(Number(value))) return "—";
  return Number(value).toFixed(places);
}

/** A number already in percent ("0.65" is 0.65 %), signed by default (a change). */
export function percent(value: string | number | undefined, signed = true): string {
  if (value === undefined || value === "" || !Number.isFinite(Number(value))) return "—";
  const n = Number(value);
  // An annualized return of a few days can be 1e41 %: past a million it is said as a bound
  // (toFixed writes such a number in exponent notation, which no one reads as a percentage).
  if (n >= PERCENT_BOUND) return `> ${signed ? "+" : ""}${BOUND_TEXT} %`;
  return `${signed && n > 0 ? "+" : ""}${n.toFixed(2)} %`;
}

const PERCENT_BOUND = 1_000_000;
const BOUND_TEXT = new Intl.NumberFormat(undefined).format(PERCENT_BOUND);

export function signed(value: string | number | undefined, currency = "USD"): string {
  if (value === undefined || value === "") return "—";
  const n = Number(value);
  return `${n > 0 ? "+" : ""}${money(n, currency)}`;
}

/** "up", "down" or "flat": the CSS class of a change. */
export function trend(value: string | number | undefined): "up" | "down" | "flat" {
  const n = Number(value ?? 0);
  return n > 0 ? "up" : n < 0 ? "down" : "flat";
}

export function dateTime(value: string | undefined): string {
  if (!value) return "—";
  return new Date(value).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** A price change with its sign ("+1.20", "-0.35"). */
export function change(value: string | number | undefined): string {
  if (value === undefined || value === "") return "—";
  const n = Number(value);
  return `${n > 0 ? "+" : ""}${price(n)}`;
}

/** "1 position", "3 positions": a count with its noun (English plurals by "s"). */
export function counted(count: number, noun: string): string {
  return `${count} ${count === 1 ? noun : `${noun}s`}`;
}
