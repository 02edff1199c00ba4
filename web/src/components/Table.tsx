/** A table as every screen lays one out: in its scrolling wrapper, one row of column heads, the
 * rows, and a row saying so when there are none. */

import type { ComponentChildren, JSX } from "preact";

/** A column head: its text alone, or with its class ("num" for figures, "hide-narrow" for one a
 * phone leaves out); one without text (the row's buttons) names itself to screen readers. */
export type Column = string | { label?: ComponentChildren; class?: string; ariaLabel?: string };

/** The column of a row's buttons. */
export const ACTIONS: Column = { ariaLabel: "Actions" };

export function Table(
  props: Omit<JSX.HTMLAttributes<HTMLTableElement>, "children"> & {
    columns: Column[];
    /** Said in one row across the table when given (and not false): "No trades yet." */
    empty?: ComponentChildren;
    emptyTestid?: string;
    /** The table's footer rows, if any. */
    foot?: ComponentChildren;
    children?: ComponentChildren;
  },
) {
  const { columns, empty, emptyTestid, foot, children, ...table } = props;
  return (
    <div class="table-wrap">
      <table {...table}>
        <thead>
          <tr>
            {columns.map((column, i) =>
              typeof column === "string" ? (
                <th key={i} scope="col">
                  {column}
                </th>
              ) : (
                <th key={i} scope="col" class={column.class} aria-label={column.ariaLabel}>
                  {column.label}
                </th>
              ),
            )}
          </tr>
        </thead>
        <tbody>
          {children}
          {empty !== undefined && empty !== false && empty !== null && (
            <tr>
              <td colSpan={columns.length} class="muted" data-testid={emptyTestid}>
                {empty}
              </td>
            </tr>
          )}
        </tbody>
        {foot && <tfoot>{foot}</tfoot>}
      </table>
    </div>
  );
}

/** Earlier and later pages of a list, and which one is shown; `testid` names the buttons
 * (`-prev`, `-next`) and the page line (`-page`). */
export function Pager(props: {
  label: string;
  page: number;
  pages: number;
  onPage: (page: number) => void;
  previous: string;
  next: string;
  class?: string;
  testid?: string;
  /** Said after "Page 2 of 5". */
  children?: ComponentChildren;
}) {
  const { page, pages, onPage, testid } = props;
  const id = (part: string) => (testid ? `${testid}-${part}` : undefined);
  return (
    <nav class={props.class ?? "row spread"} aria-label={props.label}>
      <button type="button" disabled={page <= 1} onClick={() => onPage(page - 1)} data-testid={id("prev")}>
        {props.previous}
      </button>
      <span data-testid={id("page")}>
        Page {page} of {pages}
        {props.children}
      </span>
      <button type="button" disabled={page >= pages} onClick={() => onPage(page + 1)} data-testid={id("next")}>
        {props.next}
      </button>
    </nav>
  );
}
