/** A tax year (UTC) or all time, for a report over a period: this year and the nine before it,
 * newest first, then "All time". The chosen value is a year ("2026") or ALL_TIME. */

const YEARS_SHOWN = 10;
export const ALL_TIME = "all";

/** This year (UTC): the picker's usual start. */
export function thisYear(): string {
  return String(new Date().getUTCFullYear());
}

/** The days a chosen value covers, as the reports' `from` and `to` take them (none: all time). */
export function yearPeriod(year: string): { from?: string; to?: string } {
  return year === ALL_TIME ? {} : { from: `${year}-01-01`, to: `${year}-12-31` };
}

export function YearPicker(props: {
  label: string;
  value: string;
  onChange: (year: string) => void;
  testid: string;
}) {
  const now = new Date().getUTCFullYear();
  const years = Array.from({ length: YEARS_SHOWN }, (_, i) => String(now - i));
  return (
    <label>
      {props.label}{" "}
      <select
        value={props.value}
        onChange={(e) => props.onChange((e.target as HTMLSelectElement).value)}
        data-testid={props.testid}
      >
        {years.map((y) => (
          <option key={y} value={y}>
            {y}
          </option>
        ))}
        <option value={ALL_TIME}>All time</option>
      </select>
    </label>
  );
}
