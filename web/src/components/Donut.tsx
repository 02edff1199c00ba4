/** An allocation donut in plain SVG, with a legend that carries the numbers for screen readers. */

import { ratio } from "../format";

const COLORS = ["#1f5eff", "#12a37f", "#f59e0b", "#e11d48", "#7c3aed", "#0891b2", "#65a30d", "#db2777", "#ea580c", "#64748b"];

export type Slice = { name: string; value: number };

export function Donut({ slices, label }: { slices: Slice[]; label: string }) {
  const total = slices.reduce((sum, s) => sum + Math.max(0, s.value), 0);
  const shown = [...slices].filter((s) => s.value > 0).sort((a, b) => b.value - a.value);
  // Past nine slices, the rest is one "other" slice: a donut of forty slivers says nothing.
  const slicesDrawn =
    shown.length > 10
      ? [...shown.slice(0, 9), { name: "other", value: shown.slice(9).reduce((s, x) => s + x.value, 0) }]
      : shown;
  const radius = 15.9155; // circumference 100: dash lengths are percentages
  let offset = 25; // start at twelve o'clock
  return (
    <figure class="donut" data-testid="allocation">
      <svg viewBox="0 0 42 42" role="img" aria-label={label}>
        <circle cx="21" cy="21" r={radius} fill="none" stroke="var(--border)" stroke-width="6" />
        {total > 0 &&
          slicesDrawn.map((slice, i) => {
            const share = (slice.value / total) * 100;
            const dash = `${share} ${100 - share}`;
            const circle = (
              <circle
                key={slice.name}
                cx="21"
                cy="21"
                r={radius}
                fill="none"
                stroke={COLORS[i % COLORS.length]}
                stroke-width="6"
                stroke-dasharray={dash}
                stroke-dashoffset={offset}
              />
            );
            offset -= share;
            return circle;
          })}
      </svg>
      <figcaption>
        <ul class="legend">
          {slicesDrawn.map((slice, i) => (
            <li key={slice.name}>
              <span class="swatch" style={{ background: COLORS[i % COLORS.length] }} />
              <span>{slice.name}</span>
              <span class="muted num">{ratio(total > 0 ? slice.value / total : 0)}</span>
            </li>
          ))}
          {total === 0 && <li class="muted">Nothing held yet</li>}
        </ul>
      </figcaption>
    </figure>
  );
}
