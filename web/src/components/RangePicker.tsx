/** A period picker: the performance ranges (1m, 3m, 6m, 1y, ytd, all: the API's `range`) unless
 * a page gives its own. */

import { RANGES, type Range } from "../api/portfolios";

export function RangePicker<R extends string = Range>(props: {
  value: R;
  onChange: (range: R) => void;
  label: string;
  ranges?: readonly R[];
}) {
  const ranges = props.ranges ?? (RANGES as readonly string[] as readonly R[]);
  return (
    <div class="segmented" role="group" aria-label={props.label} data-testid="range-picker">
      {ranges.map((range) => (
        <button
          key={range}
          type="button"
          aria-pressed={range === props.value}
          onClick={() => props.onChange(range)}
          data-testid={`range-${range}`}
        >
          {range.toUpperCase()}
        </button>
      ))}
    </div>
  );
}
