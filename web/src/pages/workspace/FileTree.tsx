/** A project's files as a tree: each folder's entries are read when it is first opened (folders
 * first, then by name, as the API lists them). `generation` going up reads every open folder
 * again (after a save, an upload, a delete). */

import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ErrorBanner } from "../../components/form";

export type Entry = Schemas["stockfolio.workspace.v1.Entry"];

async function listFolder(project: string, path: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (let page = 1; ; page += 1) {
    const answer = await envelope(
      api().GET("/api/v1/files", {
        params: { query: path ? { project, path, page, limit: 100 } : { project, page, limit: 100 } },
      }),
    );
    entries.push(...answer.data);
    if (page >= (answer.pagination?.totalPages ?? 1)) return entries;
  }
}

type TreeProps = {
  project: string;
  selected: string | null;
  generation: number;
  onSelect: (entry: Entry) => void;
};

export function FileTree(props: TreeProps) {
  return (
    <ul class="tree" role="tree" aria-label="Files" data-testid="file-tree">
      <Folder {...props} path="" depth={0} />
    </ul>
  );
}

function Folder(props: TreeProps & { path: string; depth: number }) {
  const [entries, setEntries] = useState<Entry[] | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    listFolder(props.project, props.path).then(
      (found) => {
        setEntries(found);
        setError(null);
      },
      setError,
    );
  }, [props.project, props.path, props.generation]);

  if (error) {
    return (
      <li role="none">
        <ErrorBanner error={error} testid="file-tree-error" />
      </li>
    );
  }
  if (entries === null) {
    return (
      <li role="none" class="muted">
        Loading…
      </li>
    );
  }
  if (entries.length === 0 && props.depth === 0) {
    return (
      <li role="none" class="muted">
        No files yet.
      </li>
    );
  }
  return (
    <>
      {entries.map((entry) => (
        <Item key={entry.path} {...props} entry={entry} />
      ))}
    </>
  );
}

function Item(props: TreeProps & { entry: Entry; depth: number }) {
  const { entry } = props;
  const [open, setOpen] = useState(false);
  const folder = entry.type === "directory";
  const path = entry.path ?? "";
  const selected = props.selected === path;
  return (
    <li role="none">
      <button
        type="button"
        role="treeitem"
        class={`tree-item${selected ? " selected" : ""}`}
        style={{ paddingLeft: `${0.4 + props.depth * 1}rem` }}
        aria-selected={selected}
        aria-expanded={folder ? open : undefined}
        data-testid="file-tree-item"
        data-path={path}
        data-type={entry.type}
        onClick={() => {
          if (folder) setOpen(!open);
          props.onSelect(entry);
        }}
      >
        <span aria-hidden="true" class="tree-icon">
          {folder ? (open ? "▾" : "▸") : entry.type === "symlink" ? "↪" : "·"}
        </span>
        {entry.name}
      </button>
      {folder && open && (
        <ul role="group">
          <Folder {...props} path={path} depth={props.depth + 1} />
        </ul>
      )}
    </li>
  );
}
