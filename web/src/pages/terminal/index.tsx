/** Terminal: real shells in tabs, each started in a project the user picks (README,
 * "Terminals"). Sessions outlive the page: the caller's running ones come back as tabs. */

import { useEffect, useRef, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { messageOf } from "../../api/errors";
import { useIdempotentPost } from "../../api/useIdempotentPost";
import { ErrorBanner, Select } from "../../components/form";
import { LEAVE_KEY, TerminalView, type TerminalState } from "./TerminalView";
import "./terminal.css";

type Session = Schemas["stockfolio.terminal.v1.Terminal"];
type Project = Schemas["stockfolio.workspace.v1.Project"];
type Tab = { sessionId: string; title: string; state: TerminalState };

const HOME = "";

async function loadProjects(): Promise<Project[]> {
  const { data } = await envelope(
    api().GET("/api/v1/workspace/projects", { params: { query: { limit: 100 } } }),
  );
  return data;
}

async function loadSessions(): Promise<Session[]> {
  const { data } = await envelope(
    api().GET("/api/v1/terminal/terminals", { params: { query: { limit: 100 } } }),
  );
  return data.filter((s) => s.state === "running");
}

function titleOf(session: Session, projects: Project[], n: number): string {
  const project = projects.find((p) => p.id === session.projectId);
  return `${n}: ${project?.name ?? "home"}`;
}

export default function TerminalPage() {
  const [projects, setProjects] = useState<Project[]>([]);
  const [projectId, setProjectId] = useState(HOME);
  const [tabs, setTabs] = useState<Tab[]>([]);
  const [active, setActive] = useState<string | null>(null);
  // A create's busy state and key; its error is the page's, whichever action failed.
  const { busy, error, setError, send } = useIdempotentPost();
  const counter = useRef(0);
  const tabRefs = useRef(new Map<string, HTMLButtonElement>());

  useEffect(() => {
    Promise.all([loadProjects(), loadSessions()]).then(
      ([found, sessions]) => {
        setProjects(found);
        const restored = sessions.map((s) => ({
          sessionId: s.sessionId ?? "",
          title: titleOf(s, found, ++counter.current),
          state: { kind: "connecting" } as TerminalState,
        }));
        // A terminal started before this list came back (a quick click on a slow load) stays:
        // the list is merged in, never put in its place.
        const known = new Set(restored.map((t) => t.sessionId));
        setTabs((current) => [...restored, ...current.filter((t) => !known.has(t.sessionId))]);
        setActive((current) => current ?? restored[0]?.sessionId ?? null);
      },
      setError,
    );
  }, []);

  const create = async (event: Event) => {
    event.preventDefault();
    const body = projectId ? { cols: 80, rows: 24, projectId } : { cols: 80, rows: 24 };
    // One key until a create of this body succeeds: a retry after an answer that never came
    // (a dropped connection) gets the shell the first one opened, not a second shell.
    await send(body, {
      post: (key) =>
        envelope(api().POST("/api/v1/terminal/terminals/create", { body, headers: { "Idempotency-Key": key } })),
      done: ({ data }) => {
        const tab: Tab = {
          sessionId: data.sessionId ?? "",
          title: titleOf(data, projects, ++counter.current),
          state: { kind: "connecting" },
        };
        setTabs((all) => [...all, tab]);
        setActive(tab.sessionId);
      },
    });
  };

  const close = async (sessionId: string) => {
    setError(null);
    const tab = tabs.find((t) => t.sessionId === sessionId);
    if (tab && (tab.state.kind !== "ended" && tab.state.kind !== "failed")) {
      try {
        await api().DELETE("/api/v1/terminal/terminals/{session_id}", {
          params: { path: { session_id: sessionId } },
        });
      } catch (failure) {
        setError(failure);
        return;
      }
    }
    const rest = tabs.filter((t) => t.sessionId !== sessionId);
    setTabs(rest);
    if (active === sessionId) setActive(rest[rest.length - 1]?.sessionId ?? null);
  };

  const setState = (sessionId: string, state: TerminalState) =>
    setTabs((all) => all.map((t) => (t.sessionId === sessionId ? { ...t, state } : t)));

  // Arrow keys move along the tab strip, as the WAI-ARIA tabs pattern has it.
  const onTabKey = (event: KeyboardEvent, index: number) => {
    const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
    if (!step || tabs.length === 0) return;
    event.preventDefault();
    const next = tabs[(index + step + tabs.length) % tabs.length]!;
    setActive(next.sessionId);
    tabRefs.current.get(next.sessionId)?.focus();
  };

  return (
    <section class="terminal-page" aria-labelledby="terminal-title">
      <div class="row spread">
        <h1 id="terminal-title">Terminal</h1>
        <form class="row terminal-new" onSubmit={create}>
          <label for="terminal-project">Project</label>
          <Select
            id="terminal-project"
            data-testid="terminal-project"
            value={projectId}
            onValue={setProjectId}
            choices={projects.map((p) => ({ value: p.id ?? "", label: p.name ?? "" }))}
          >
            <option value={HOME}>Home folder (all projects)</option>
          </Select>
          <button type="submit" class="primary" disabled={busy} data-testid="terminal-new">
            {busy ? "Starting…" : "New terminal"}
          </button>
        </form>
      </div>
      <ErrorBanner error={error} testid="terminal-error" />
      {tabs.length === 0 ? (
        <p class="muted" data-testid="terminal-empty">
          No terminal open. Pick a project and start one: the shell runs in your own sandbox, with
          the project as its working directory.
        </p>
      ) : (
        <>
          <div class="terminal-tabs" role="tablist" aria-label="Open terminals">
            {tabs.map((tab, index) => (
              <div class="terminal-tab" key={tab.sessionId}>
                <button
                  type="button"
                  role="tab"
                  id={`tab-${tab.sessionId}`}
                  aria-selected={tab.sessionId === active}
                  aria-controls={`panel-${tab.sessionId}`}
                  tabIndex={tab.sessionId === active ? 0 : -1}
                  ref={(el) => {
                    if (el) tabRefs.current.set(tab.sessionId, el);
                    else tabRefs.current.delete(tab.sessionId);
                  }}
                  data-testid="terminal-tab"
                  data-session-id={tab.sessionId}
                  onClick={() => setActive(tab.sessionId)}
                  onKeyDown={(e) => onTabKey(e, index)}
                >
                  <span class={`dot dot-${tab.state.kind}`} aria-hidden="true" />
                  {tab.title}
                </button>
                <button
                  type="button"
                  class="link terminal-close"
                  aria-label={`Close terminal ${tab.title}`}
                  title="Close this terminal (ends its shell)"
                  data-testid="terminal-close"
                  onClick={() => void close(tab.sessionId)}
                >
                  ×
                </button>
              </div>
            ))}
          </div>
          {tabs.map((tab) => (
            <div
              key={tab.sessionId}
              role="tabpanel"
              id={`panel-${tab.sessionId}`}
              aria-labelledby={`tab-${tab.sessionId}`}
              class="terminal-panel"
              hidden={tab.sessionId !== active}
            >
              <div class="row spread terminal-meta">
                <p class="terminal-status muted" data-testid="terminal-status" aria-live="polite">
                  {describe(tab.state)}
                </p>
                <p class="muted terminal-hint">
                  <kbd>{LEAVE_KEY}</kbd> leaves the terminal (it keeps <kbd>Tab</kbd> for the shell)
                </p>
              </div>
              <TerminalView
                sessionId={tab.sessionId}
                label={tab.title}
                active={tab.sessionId === active}
                onState={(state) => setState(tab.sessionId, state)}
                onLeave={() => tabRefs.current.get(tab.sessionId)?.focus()}
              />
            </div>
          ))}
        </>
      )}
    </section>
  );
}

function describe(state: TerminalState): string {
  switch (state.kind) {
    case "connecting":
      return "Connecting…";
    case "attached":
      return "Connected";
    case "reconnecting":
      return "Connection lost; reconnecting (the shell keeps running)…";
    case "ended":
      return `Ended: ${state.why}.`;
    case "failed":
      return `Unavailable: ${messageOf(state.why)}`;
  }
}
