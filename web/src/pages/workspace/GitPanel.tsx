/** A project's git: status, the working tree's diff, commit, remotes, push and pull. Each action
 * says what happened in a sentence, or the API's message when it did not (a push the remote
 * refused, a pull that cannot fast-forward: 409 GIT_CONFLICT saying why). */

import { useEffect, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ErrorBanner, Field, NoticeBanner, Select, TextInput } from "../../components/form";

type Status = Schemas["stockfolio.workspace.v1.GitStatusResponse"];
type Remote = Schemas["stockfolio.workspace.v1.GitRemote"];
type Commit = Schemas["stockfolio.workspace.v1.GitCommitInfo"];
type Branch = Schemas["stockfolio.workspace.v1.GitBranch"];

type Loaded = { status: Status; remotes: Remote[]; log: Commit[]; branches: Branch[] };

async function load(project: string): Promise<Loaded> {
  const query = { params: { query: { project } } };
  const [status, remotes, log, branches] = await Promise.all([
    envelope(api().GET("/api/v1/git/status", query)),
    envelope(api().GET("/api/v1/git/remotes", query)),
    envelope(api().GET("/api/v1/git/log", { params: { query: { project, limit: 5 } } })),
    envelope(api().GET("/api/v1/git/branches", query)),
  ]);
  return { status: status.data, remotes: remotes.data, log: log.data, branches: branches.data };
}

function short(sha: string | undefined): string {
  return (sha ?? "").slice(0, 7);
}

export function GitPanel(props: { project: string; generation: number; onChanged: () => void }) {
  const { project } = props;
  const [state, setState] = useState<Loaded | null>(null);
  const [diff, setDiff] = useState<string | null>(null);
  const [message, setMessage] = useState("");
  const [remoteName, setRemoteName] = useState("origin");
  const [remoteUrl, setRemoteUrl] = useState("");
  const [newBranch, setNewBranch] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [said, setSaid] = useState("");
  const [error, setError] = useState<unknown>(null);

  const refresh = () => load(project).then(setState, setError);
  // Another project: a clean slate. Files changed (a save, a pull, a switch): the state again,
  // with what the last action said kept on screen.
  useEffect(() => {
    setDiff(null);
    setSaid("");
    setError(null);
  }, [project]);
  useEffect(() => {
    void refresh();
  }, [project, props.generation]);

  /** Runs one git action: its sentence on success, the API's message otherwise. */
  const act = async (name: string, action: () => Promise<string>) => {
    setBusy(name);
    setError(null);
    setSaid("");
    try {
      setSaid(await action());
      await refresh();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(null);
    }
  };

  const commit = (event: Event) => {
    event.preventDefault();
    void act("commit", async () => {
      const { data } = await envelope(api().POST("/api/v1/git/commit", { body: { project, message } }));
      setMessage("");
      setDiff(null);
      return `Committed ${short(data.commit)} as ${data.authorName ?? ""} <${data.authorEmail ?? ""}>.`;
    });
  };

  const push = () =>
    act("push", async () => {
      const { data } = await envelope(api().POST("/api/v1/git/push", { body: { project } }));
      return `Pushed ${data.branch ?? "the branch"} to ${data.remote ?? "the remote"}. ${data.summary ?? ""}`.trim();
    });

  const pull = () =>
    act("pull", async () => {
      const { data } = await envelope(api().POST("/api/v1/git/pull", { body: { project } }));
      props.onChanged(); // the files may have changed
      return `Pulled: ${data.summary || "up to date"}${data.commit ? ` (now at ${short(data.commit)})` : ""}.`;
    });

  const showDiff = () =>
    act("diff", async () => {
      const { data } = await envelope(api().GET("/api/v1/git/diff", { params: { query: { project } } }));
      setDiff(data.diff ?? "");
      return data.diff ? "" : "No changes in the working tree.";
    });

  const switchTo = (name: string) =>
    act("switch", async () => {
      const { data } = await envelope(api().POST("/api/v1/git/branches:switch", { body: { project, name } }));
      props.onChanged(); // the working tree is the branch's now
      return `Switched to ${data.name ?? name}.`;
    });

  const createBranch = (event: Event) => {
    event.preventDefault();
    void act("branch", async () => {
      const { data } = await envelope(api().POST("/api/v1/git/branches", { body: { project, name: newBranch.trim() } }));
      setNewBranch("");
      return `Created the branch ${data.name ?? newBranch}${data.commit ? ` at ${short(data.commit)}` : ""}.`;
    });
  };

  const addRemote = (event: Event) => {
    event.preventDefault();
    void act("remote", async () => {
      const { data } = await envelope(
        api().POST("/api/v1/git/remotes", { body: { project, name: remoteName, url: remoteUrl } }),
      );
      setRemoteUrl("");
      return `Added the remote ${data.name ?? remoteName} (${data.url ?? remoteUrl}).`;
    });
  };

  const status = state?.status;
  const changes = status
    ? [
        ...(status.conflicted ?? []).map((p) => ["conflicted", p] as const),
        ...(status.staged ?? []).map((p) => ["staged", p] as const),
        ...(status.unstaged ?? []).map((p) => ["modified", p] as const),
        ...(status.untracked ?? []).map((p) => ["new", p] as const),
      ]
    : [];

  return (
    <section class="card git" aria-labelledby="git-title" data-testid="git-panel">
      <div class="row spread">
        <h2 id="git-title">Git</h2>
        <button type="button" onClick={() => void refresh()} data-testid="git-refresh">
          Refresh
        </button>
      </div>
      {status && (
        <p data-testid="git-branch">
          On <strong>{status.branch || "(no branch)"}</strong>
          {status.commit ? ` at ${short(status.commit)}` : ""}
          {status.upstream
            ? `, tracking ${status.upstream} (${status.ahead ?? 0} ahead, ${status.behind ?? 0} behind)`
            : ", no upstream yet"}
          .
        </p>
      )}
      {status && (
        <ul class="changes" data-testid="git-changes">
          {changes.length === 0 ? (
            <li class="muted">Nothing to commit: the working tree is clean.</li>
          ) : (
            changes.map(([kind, path]) => (
              <li key={`${kind}:${path}`}>
                <span class={`tag tag-${kind}`}>{kind}</span> {path}
              </li>
            ))
          )}
        </ul>
      )}
      <div class="row">
        <button type="button" disabled={busy !== null} onClick={() => void showDiff()} data-testid="git-diff">
          Show diff
        </button>
        <button type="button" disabled={busy !== null} onClick={() => void pull()} data-testid="git-pull">
          {busy === "pull" ? "Pulling…" : "Pull"}
        </button>
        <button type="button" disabled={busy !== null} onClick={() => void push()} data-testid="git-push">
          {busy === "push" ? "Pushing…" : "Push"}
        </button>
      </div>
      <ErrorBanner error={error} testid="git-error" />
      <NoticeBanner notice={said} testid="git-message" />
      {diff && (
        <pre class="diff" data-testid="git-diff-text" tabIndex={0} aria-label="Diff of the working tree">
          {diff.split("\n").map((line, i) => (
            <span key={i} class={line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : undefined}>
              {line}
              {"\n"}
            </span>
          ))}
        </pre>
      )}
      <form onSubmit={commit} class="git-commit">
        <label for="git-message-input">Commit message</label>
        <TextInput
          id="git-message-input"
          data-testid="git-commit-message"
          value={message}
          required
          onValue={setMessage}
          placeholder="What changed, and why"
        />
        <button type="submit" class="primary" disabled={busy !== null || !message.trim()} data-testid="git-commit">
          {busy === "commit" ? "Committing…" : "Commit all changes"}
        </button>
      </form>
      <details class="remotes">
        <summary>Branches ({state?.branches.length ?? 0})</summary>
        <Field label="Switch to" id="git-branch-select">
          <Select
            id="git-branch-select"
            data-testid="git-branch-select"
            disabled={busy !== null}
            value={state?.branches.find((b) => b.current)?.name ?? ""}
            onValue={(name) => void switchTo(name)}
            choices={(state?.branches ?? []).map((b) => b.name ?? "")}
          />
        </Field>
        <form onSubmit={createBranch}>
          <Field label="New branch (from here)" id="git-branch-new">
            <TextInput id="git-branch-new" data-testid="git-branch-new" value={newBranch} required onValue={setNewBranch} />
          </Field>
          <button type="submit" disabled={busy !== null || !newBranch.trim()} data-testid="git-branch-create">
            Create branch
          </button>
        </form>
      </details>
      <details class="remotes">
        <summary>Remotes ({state?.remotes.length ?? 0})</summary>
        <ul data-testid="git-remotes">
          {(state?.remotes ?? []).map((r) => (
            <li key={r.name}>
              <strong>{r.name}</strong> <code>{r.url}</code>
            </li>
          ))}
        </ul>
        <form onSubmit={addRemote}>
          <Field label="Remote name" id="git-remote-name">
            <TextInput id="git-remote-name" value={remoteName} required onValue={setRemoteName} />
          </Field>
          <Field label="URL" id="git-remote-url">
            <TextInput
              id="git-remote-url"
              value={remoteUrl}
              required
              placeholder="https://example.com/me/project.git"
              onValue={setRemoteUrl}
            />
          </Field>
          <button type="submit" disabled={busy !== null}>
            Add remote
          </button>
        </form>
      </details>
      {state && state.log.length > 0 && (
        <details class="log">
          <summary>Recent commits</summary>
          <ol data-testid="git-log">
            {state.log.map((c) => (
              <li key={c.sha}>
                <code>{short(c.sha)}</code> {c.subject} <span class="muted">— {c.authorName}</span>
              </li>
            ))}
          </ol>
        </details>
      )}
    </section>
  );
}
