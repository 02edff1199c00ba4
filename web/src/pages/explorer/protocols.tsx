/** The WebSocket protocols, drawn from the README's own sections (read at build time), so they
 * are written once: the `/ws/portfolio`, `/ws/terminal` and `/ws/chat` paragraphs and tables, in
 * a small Markdown subset (paragraphs, tables, `code`, **bold**, [links](url)). A glob rather
 * than an import: a build without the README (a container given only web/) still succeeds, and
 * the page says what is missing. */

import type { ComponentChildren } from "preact";

const found = import.meta.glob<string>("../../../../README.md", { query: "?raw", import: "default", eager: true });
const readme = Object.values(found)[0] ?? "";

export const SOCKETS = ["/ws/portfolio", "/ws/terminal", "/ws/chat"] as const;

type Block = { kind: "paragraph"; text: string } | { kind: "table"; rows: string[][] };

/** The README's text about one socket: from its bold lead-in to the next heading, code block or
 * other bold lead-in. */
export function sectionOf(path: string, text: string = readme): Block[] {
  const lines = text.split("\n");
  const start = lines.findIndex((line) => line.startsWith(`**\`${path}\`**`));
  if (start < 0) return [];
  const taken: string[] = [];
  for (let i = start; i < lines.length; i += 1) {
    const line = lines[i]!;
    const leadIn = i > start && line.startsWith("**") && (lines[i - 1] ?? "").trim() === "";
    if (line.startsWith("#") || line.startsWith("```") || leadIn) break;
    taken.push(line);
  }
  const blocks: Block[] = [];
  let pending: string[] = [];
  const flush = () => {
    if (pending.length === 0) return;
    if (pending.every((l) => l.trimStart().startsWith("|"))) {
      const rows = pending.filter((l) => !/^\s*\|[\s|:-]+\|\s*$/.test(l)).map(cells);
      blocks.push({ kind: "table", rows });
    } else {
      blocks.push({ kind: "paragraph", text: pending.join(" ") });
    }
    pending = [];
  };
  for (const line of taken) {
    if (line.trim() === "") flush();
    else pending.push(line);
  }
  flush();
  return blocks;
}

/** A table row's cells; a `|` inside backticks stays in its cell. */
function cells(row: string): string[] {
  const out: string[] = [];
  let cell = "";
  let code = false;
  for (const ch of row.trim().replace(/^\||\|$/g, "")) {
    if (ch === "`") code = !code;
    if (ch === "|" && !code) {
      out.push(cell.trim());
      cell = "";
    } else {
      cell += ch;
    }
  }
  out.push(cell.trim());
  return out;
}

function inline(text: string): ComponentChildren[] {
  return text.split(/(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))/g).map((part, i) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) return <code key={i}>{part.slice(1, -1)}</code>;
    if (part.startsWith("**") && part.endsWith("**") && part.length > 3) return <strong key={i}>{inline(part.slice(2, -2))}</strong>;
    const link = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(part);
    if (link && /^https?:\/\//.test(link[2]!)) {
      return (
        <a key={i} href={link[2]} rel="noreferrer">
          {link[1]}
        </a>
      );
    }
    return part;
  });
}

export function Protocol({ path }: { path: string }) {
  const blocks = sectionOf(path);
  if (blocks.length === 0) {
    return (
      <p class="muted">
        {readme ? `The README does not describe ${path}.` : "This build was made without the README, where the protocols are described."}
      </p>
    );
  }
  return (
    <>
      {blocks.map((block, i) =>
        block.kind === "paragraph" ? (
          <p key={i}>{inline(block.text)}</p>
        ) : (
          <div class="table-wrap" key={i}>
            <table class="protocol">
              <thead>
                <tr>
                  {(block.rows[0] ?? []).map((cell, j) => (
                    <th key={j} scope="col">
                      {inline(cell)}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {block.rows.slice(1).map((row, r) => (
                  <tr key={r}>
                    {row.map((cell, j) => (
                      <td key={j}>{inline(cell)}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ),
      )}
    </>
  );
}
