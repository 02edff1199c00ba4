/** A text file in a textarea with line numbers, saved with the sha it was read at: a stale save
 * (someone else changed the file since, a terminal or another tab) is the API's 409 SHA_MISMATCH,
 * shown in a dialog that offers to reload theirs or overwrite with mine. */

import { useEffect, useRef, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ApiError, messageOf } from "../../api/errors";
import { ErrorBanner, NoticeBanner } from "../../components/form";

type File = Schemas["stockfolio.workspace.v1.File"];

export type Opened = { path: string; content: string; sha: string; binary: boolean; size: number };

export async function openFile(project: string, path: string): Promise<Opened> {
  const { data } = await envelope(
    api().GET("/api/v1/files/{path}", { params: { path: { path }, query: { project } } }),
  );
  return fromFile(path, data);
}

function fromFile(path: string, file: File): Opened {
  const binary = file.encoding === "base64";
  return {
    path,
    content: binary ? "" : (file.content ?? ""),
    sha: file.sha ?? "",
    binary,
    size: Number(file.size ?? 0),
  };
}

type Conflict = { message: string; theirSha: string };

export function Editor(props: {
  project: string;
  file: Opened;
  onSaved: (file: Opened) => void;
  onDirty: (dirty: boolean) => void;
  onDelete: () => void;
  onDownload: () => void;
}) {
  const { project, file } = props;
  const [text, setText] = useState(file.content);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [conflict, setConflict] = useState<Conflict | null>(null);
  const gutter = useRef<HTMLPreElement>(null);
  const area = useRef<HTMLTextAreaElement>(null);
  const dialog = useRef<HTMLDialogElement>(null);
  // The version our own last save wrote (path and sha): what was typed while it was on its way
  // is still in the editor and is kept.
  const ownSave = useRef<{ path: string; sha: string } | null>(null);

  // Another file: a clean slate. A new version of this one (reloaded, changed elsewhere): its
  // text. Our own save's version: the text as it is now, unsaved where it differs from what was
  // saved (`dirty` compares the two).
  useEffect(() => {
    setError(null);
    setNotice("");
  }, [file.path]);
  useEffect(() => {
    const own = ownSave.current;
    ownSave.current = null;
    if (!own || own.path !== file.path || own.sha !== file.sha) setText(file.content);
    setConflict(null);
  }, [file.path, file.sha]);

  const dirty = text !== file.content;
  useEffect(() => props.onDirty(dirty), [dirty]);

  useEffect(() => {
    const d = dialog.current;
    if (!d) return;
    if (conflict && !d.open) d.showModal();
    if (!conflict && d.open) d.close();
  }, [conflict]);

  const save = async (sha: string) => {
    setSaving(true);
    setError(null);
    setNotice("");
    try {
      const { data } = await envelope(
        api().PUT("/api/v1/files/{path}", {
          params: { path: { path: file.path } },
          body: { project, content: text, sha },
        }),
      );
      setConflict(null);
      const written = data.sha ?? "";
      // The same sha (nothing new written) brings no new version, so nothing to keep.
      ownSave.current = written !== file.sha ? { path: file.path, sha: written } : null;
      props.onSaved({ ...file, content: text, sha: written, size: Number(data.size ?? 0) });
      setNotice(`Saved ${file.path}.`);
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 409) {
        const theirSha = typeof failure.details.sha === "string" ? failure.details.sha : "";
        setConflict({ message: failure.message, theirSha });
      } else {
        setError(failure);
      }
    } finally {
      setSaving(false);
    }
  };

  const reloadTheirs = async () => {
    try {
      const fresh = await openFile(project, file.path);
      setConflict(null);
      props.onSaved(fresh);
      setText(fresh.content);
      setNotice(`Reloaded ${file.path}: your changes were discarded.`);
    } catch (failure) {
      setConflict(null);
      setError(failure);
    }
  };

  const onKey = (event: KeyboardEvent) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "s") {
      event.preventDefault();
      if (!saving) void save(file.sha);
    }
  };

  const lines = text.split("\n").length;
  const numbers = Array.from({ length: lines }, (_, i) => i + 1).join("\n");

  return (
    <div class="editor" data-testid="editor-panel">
      <div class="row spread editor-bar">
        <h2 class="editor-path" data-testid="editor-path">
          {file.path}
          {dirty && (
            <span class="muted" data-testid="editor-dirty">
              {" "}
              (unsaved)
            </span>
          )}
        </h2>
        <div class="row">
          <button type="button" onClick={props.onDownload} data-testid="file-download">
            Download
          </button>
          <button type="button" onClick={props.onDelete} data-testid="file-delete">
            Delete
          </button>
          {!file.binary && (
            <button
              type="button"
              class="primary"
              disabled={saving || !dirty}
              onClick={() => void save(file.sha)}
              data-testid="editor-save"
            >
              {saving ? "Saving…" : "Save"}
            </button>
          )}
        </div>
      </div>
      <ErrorBanner error={error} testid="editor-error" />
      <NoticeBanner notice={notice} testid="editor-notice" />
      {file.binary ? (
        <p class="muted" data-testid="editor-binary">
          This file is not text ({file.size} bytes): download it to open it.
        </p>
      ) : (
        <div class="code">
          <pre class="gutter" ref={gutter} aria-hidden="true">
            {numbers}
          </pre>
          <textarea
            ref={area}
            aria-label={`Contents of ${file.path}`}
            data-testid="editor"
            spellcheck={false}
            wrap="off"
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            onScroll={(e) => {
              if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
            }}
            onKeyDown={onKey}
          />
        </div>
      )}
      <dialog
        ref={dialog}
        class="conflict"
        data-testid="conflict-dialog"
        aria-labelledby="conflict-title"
        onCancel={() => setConflict(null)}
      >
        <h2 id="conflict-title">This file changed since you opened it</h2>
        <p role="alert" data-testid="conflict-message">
          {conflict ? messageOf(conflict.message) : ""}
        </p>
        <p class="muted">
          Reload to see the current version (your edits are lost), or overwrite it with yours
          (theirs is lost; git still has the last commit).
        </p>
        <div class="row">
          <button type="button" onClick={() => void reloadTheirs()} data-testid="conflict-reload">
            Reload theirs
          </button>
          <button
            type="button"
            class="primary"
            disabled={saving || !conflict?.theirSha}
            onClick={() => conflict && void save(conflict.theirSha)}
            data-testid="conflict-overwrite"
          >
            Overwrite with mine
          </button>
          <button type="button" class="link" onClick={() => setConflict(null)}>
            Keep editing
          </button>
        </div>
      </dialog>
    </div>
  );
}
