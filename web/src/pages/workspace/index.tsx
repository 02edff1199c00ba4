/** Workspace: the user's projects, their files in a tree, a text editor that saves with the sha,
 * uploads and downloads with progress, and git (README, "Workspace"). */

import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ErrorBanner, Field, NoticeBanner, Select, TextInput } from "../../components/form";
import { Editor, openFile, type Opened } from "./Editor";
import { FileTree, type Entry } from "./FileTree";
import { GitPanel } from "./GitPanel";
import { bytes, downloadFile, uploadFile, type Progress } from "./transfer";
import { useFileWatch, type Change } from "./watch";
import "./workspace.css";

type Project = Schemas["stockfolio.workspace.v1.Project"];
type Template = NonNullable<Schemas["stockfolio.workspace.v1.CreateProjectRequest"]["template"]>;

const TEMPLATES: { value: Template; label: string }[] = [
  { value: "empty", label: "Empty" },
  { value: "python", label: "Python" },
  { value: "node", label: "Node" },
  { value: "notes", label: "Notes" },
];

async function loadProjects(): Promise<Project[]> {
  const { data } = await envelope(api().GET("/api/v1/workspace/projects", { params: { query: { limit: 100 } } }));
  return data;
}

type Transfer = { what: string; progress: Progress } | null;

function parentOf(path: string): string {
  const at = path.lastIndexOf("/");
  return at < 0 ? "" : path.slice(0, at);
}

export default function WorkspacePage() {
  const [projects, setProjects] = useState<Project[] | null>(null);
  const [project, setProject] = useState<string>("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [generation, setGeneration] = useState(0);
  const [selected, setSelected] = useState<Entry | null>(null);
  const [file, setFile] = useState<Opened | null>(null);
  const [dirty, setDirty] = useState(false);
  const [transfer, setTransfer] = useState<Transfer>(null);
  const [newName, setNewName] = useState("");
  const [template, setTemplate] = useState<Template>("empty");
  const [newPath, setNewPath] = useState("");

  const changed = () => setGeneration((g) => g + 1);
  const folder = selected ? (selected.type === "directory" ? (selected.path ?? "") : parentOf(selected.path ?? "")) : "";

  useEffect(() => {
    loadProjects().then((found) => {
      setProjects(found);
      setProject((current) => current || found[0]?.id || "");
    }, setError);
  }, []);

  // Changes made elsewhere (a terminal, git, another tab): the tree and git follow; the open file
  // follows too unless it has unsaved edits, which are never replaced behind the user's back.
  useFileWatch(project, (changes: Change[]) => {
    changed();
    const mine = file && changes.find((c) => c.path === file.path);
    if (!mine || !file) return;
    if (mine.kind === "deleted") {
      say(`${file.path} was deleted elsewhere; saving it would create it again.`);
    } else if (dirty) {
      say(`${file.path} changed elsewhere; saving will offer to reload it or overwrite it.`);
    } else {
      openFile(project, file.path).then(
        (fresh) => {
          if (fresh.sha === file.sha) return; // our own save coming back
          setFile(fresh);
          say(`${file.path} changed elsewhere and was reloaded.`);
        },
        () => undefined,
      );
    }
  });

  const say = (text: string) => {
    setError(null);
    setNotice(text);
  };
  const fail = (failure: unknown) => {
    setNotice("");
    setError(failure);
  };
  const leaveFile = (): boolean =>
    !dirty || window.confirm(`${file?.path ?? "This file"} has unsaved changes. Discard them?`);

  const chooseProject = (id: string) => {
    if (!leaveFile()) return;
    setProject(id);
    setSelected(null);
    setFile(null);
    setNotice("");
    setError(null);
  };

  const createProject = async (event: Event) => {
    event.preventDefault();
    try {
      const { data } = await envelope(
        api().POST("/api/v1/workspace/projects", { body: { name: newName.trim(), template } }),
      );
      setProjects((all) => [...(all ?? []), data]);
      setNewName("");
      chooseProject(data.id ?? "");
      say(`Created the project ${data.name ?? ""}.`);
    } catch (failure) {
      fail(failure);
    }
  };

  const select = async (entry: Entry) => {
    setSelected(entry);
    if (entry.type === "directory") return;
    if (file?.path === entry.path || !leaveFile()) return;
    try {
      setFile(await openFile(project, entry.path ?? ""));
      setDirty(false);
      setError(null);
    } catch (failure) {
      fail(failure);
    }
  };

  const create = async (directory: boolean) => {
    const path = newPath.trim().replace(/^\/+/, "");
    if (!path) return;
    try {
      await envelope(
        api().POST("/api/v1/files", { body: directory ? { project, path, directory } : { project, path, content: "" } }),
      );
      setNewPath("");
      changed();
      say(`Created ${directory ? "the folder" : "the file"} ${path}.`);
      if (!directory && leaveFile()) {
        setFile(await openFile(project, path));
        setSelected({ path, type: "file", name: path.split("/").pop() ?? path });
      }
    } catch (failure) {
      fail(failure);
    }
  };

  const remove = async () => {
    if (!selected?.path) return;
    const isFolder = selected.type === "directory";
    if (!window.confirm(`Delete ${selected.path}${isFolder ? " and everything in it" : ""}?`)) return;
    try {
      await api().DELETE("/api/v1/files/{path}", {
        params: { path: { path: selected.path }, query: isFolder ? { project, recursive: true } : { project } },
      });
      if (file && (file.path === selected.path || file.path.startsWith(`${selected.path}/`))) setFile(null);
      setSelected(null);
      changed();
      say(`Deleted ${selected.path}.`);
    } catch (failure) {
      fail(failure);
    }
  };

  const move = async () => {
    const from = selected?.path;
    if (!from) return;
    const to = window.prompt(`Rename or move ${from} to:`, from)?.trim().replace(/^\/+/, "");
    if (!to || to === from) return;
    if (file && (file.path === from || file.path.startsWith(`${from}/`)) && !leaveFile()) return;
    try {
      await envelope(api().POST("/api/v1/files:move", { body: { project, path: from, newPath: to } }));
      setSelected({ ...selected, path: to, name: to.split("/").pop() ?? to });
      if (file?.path === from) setFile(await openFile(project, to));
      else if (file?.path.startsWith(`${from}/`)) setFile(null);
      changed();
      say(`Moved ${from} to ${to}.`);
    } catch (failure) {
      fail(failure);
    }
  };

  const upload = async (input: HTMLInputElement) => {
    const chosen = input.files?.[0];
    if (!chosen) return;
    const path = folder ? `${folder}/${chosen.name}` : chosen.name;
    setTransfer({ what: `Uploading ${path}`, progress: { loaded: 0, total: chosen.size } });
    try {
      await uploadFile({ project, path }, chosen, (progress) =>
        setTransfer({ what: `Uploading ${path}`, progress }),
      );
      changed();
      say(`Uploaded ${path} (${bytes(chosen.size)}).`);
      if (file?.path === path) setFile(await openFile(project, path));
    } catch (failure) {
      fail(failure);
    } finally {
      setTransfer(null);
      input.value = "";
    }
  };

  const download = async () => {
    if (!file) return;
    const what = `Downloading ${file.path}`;
    try {
      await downloadFile(project, file.path, file.size || null, (progress) => setTransfer({ what, progress }));
      say(`Downloaded ${file.path}.`);
    } catch (failure) {
      fail(failure);
    } finally {
      setTransfer(null);
    }
  };

  if (projects === null) {
    return error ? <ErrorBanner error={error} /> : <p class="loading">Loading projects…</p>;
  }

  return (
    <section class="workspace" aria-labelledby="workspace-title">
      <h1 id="workspace-title">Workspace</h1>
      <div class="ws-projects card">
        <Field label="Project" id="ws-project">
          <Select
            id="ws-project"
            data-testid="project-select"
            value={project}
            onValue={chooseProject}
            choices={projects.map((p) => ({ value: p.id ?? "", label: p.name ?? "" }))}
          >
            {projects.length === 0 && <option value="">No projects yet</option>}
          </Select>
        </Field>
        <form class="ws-create" onSubmit={createProject} data-testid="project-create">
          <Field label="New project" id="ws-new-name">
            <TextInput
              id="ws-new-name"
              data-testid="project-name"
              value={newName}
              required
              maxLength={100}
              placeholder="my-project"
              onValue={setNewName}
            />
          </Field>
          <Field label="Template" id="ws-template">
            <Select
              id="ws-template"
              data-testid="project-template"
              value={template}
              onValue={setTemplate}
              choices={TEMPLATES}
            />
          </Field>
          <button type="submit" class="primary" disabled={!newName.trim()} data-testid="project-create-submit">
            Create
          </button>
        </form>
      </div>
      <ErrorBanner error={error} testid="workspace-error" />
      <NoticeBanner notice={notice} testid="workspace-notice" />
      {transfer && (
        <div class="transfer" role="status" data-testid="transfer">
          <label for="ws-progress">
            {transfer.what}: {bytes(transfer.progress.loaded)}
            {transfer.progress.total ? ` of ${bytes(transfer.progress.total)}` : ""}
            {transfer.what.startsWith("Uploading") &&
            transfer.progress.total !== null &&
            transfer.progress.loaded >= transfer.progress.total
              ? "; sent, the service is storing it…"
              : ""}
          </label>
          <progress
            id="ws-progress"
            data-testid="transfer-progress"
            max={transfer.progress.total ?? undefined}
            value={transfer.progress.total ? transfer.progress.loaded : undefined}
          />
        </div>
      )}
      {project && (
        <div class="ws-body">
          <aside class="ws-files card" aria-label="Files">
            <div class="row spread">
              <h2>Files</h2>
              <button type="button" class="link" onClick={changed} data-testid="file-tree-refresh">
                Refresh
              </button>
            </div>
            <FileTree project={project} selected={selected?.path ?? null} generation={generation} onSelect={(e) => void select(e)} />
            <div class="field">
              <label for="ws-new-path">New file or folder{folder ? ` (in ${folder})` : ""}</label>
              <input
                id="ws-new-path"
                data-testid="new-path"
                value={newPath}
                placeholder={folder ? `${folder}/name.txt` : "notes/todo.md"}
                onFocus={() => !newPath && folder && setNewPath(`${folder}/`)}
                onInput={(e) => setNewPath(e.currentTarget.value)}
              />
            </div>
            <div class="row">
              <button type="button" onClick={() => void create(false)} disabled={!newPath.trim()} data-testid="new-file">
                New file
              </button>
              <button type="button" onClick={() => void create(true)} disabled={!newPath.trim()} data-testid="new-folder">
                New folder
              </button>
              {selected && (
                <button type="button" onClick={() => void move()} data-testid="file-move">
                  Rename…
                </button>
              )}
              {selected?.type === "directory" && (
                <button type="button" onClick={() => void remove()} data-testid="folder-delete">
                  Delete folder
                </button>
              )}
            </div>
            <div class="field">
              <label for="ws-upload">Upload a file{folder ? ` into ${folder}` : ""}</label>
              <input
                id="ws-upload"
                type="file"
                data-testid="upload-input"
                disabled={transfer !== null}
                onChange={(e) => void upload(e.currentTarget)}
              />
            </div>
          </aside>
          <div class="ws-main">
            {file ? (
              <Editor
                project={project}
                file={file}
                onSaved={(saved) => {
                  setFile(saved);
                  changed();
                }}
                onDirty={setDirty}
                onDelete={() => void remove()}
                onDownload={() => void download()}
              />
            ) : (
              <p class="muted card" data-testid="editor-empty">
                Pick a file in the tree to open it. Changes you save are checked against the version
                you opened, so nobody's work is overwritten by surprise.
              </p>
            )}
            <GitPanel project={project} generation={generation} onChanged={changed} />
          </div>
        </div>
      )}
      {!project && <p class="muted">Create a project to start: pick a template above.</p>}
    </section>
  );
}
