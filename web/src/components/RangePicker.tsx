/** The performance period: 1m, 3m, 6m, 1y, ytd, all (the API's `range`). */

import { RANGES, type Range } from "../api/portfolios";

export function RangePicker(props: { value: Range; onChange: (range: Range) => void; label: string }) {
  return (
    <div class="segmented" role="group" aria-label={props.label} data-testid="range-picker">
      {RANGES.map((range) => (
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
