/** Assistant: conversations in folders, search over the user's messages, and answers streamed
 * over /ws/chat with a stop button and a model picker (README, "Assistant"). */

import { useEffect, useRef, useState } from "preact/hooks";
import { api, envelope, type Schemas } from "../../api/client";
import { ErrorBanner } from "../../components/form";
import type { ChatServerMessage, ChatToolCall } from "../../ws/protocol";
import { LiveSocket, type SocketStatus } from "../../ws/socket";
import { Messages, type Live, type Message } from "./Conversation";
import { loadFolders, type Folder } from "./folders";
import "./assistant.css";

type ChatSession = Schemas["stockfolio.assistant.v1.ChatSession"];
type Model = Schemas["stockfolio.assistant.v1.Model"];

async function loadSessions(): Promise<ChatSession[]> {
  const { data } = await envelope(api().GET("/api/v1/chat/sessions", { params: { query: { limit: 100 } } }));
  return data;
}

type Transcript = { messages: Message[]; earlier: boolean };

/** A conversation's newest messages (the service's page of 100), or with `before`, the ones
 * written before that message: a long conversation is read backwards, a page at a time. */
async function loadMessages(id: string, before?: string): Promise<{ session: ChatSession } & Transcript> {
  const query = before ? { before } : {};
  const { data } = await envelope(api().GET("/api/v1/chat/sessions/{id}", { params: { path: { id }, query } }));
  return { session: data.session ?? { id }, messages: data.messages ?? [], earlier: data.hasEarlier ?? false };
}

/** The newest page read again, after what was shown before it (the earlier pages read stay). */
function withNewest(shown: Transcript, newest: Transcript): Transcript {
  const at = shown.messages.findIndex((m) => m.id === newest.messages[0]?.id);
  if (at < 0) return newest;
  return { messages: [...shown.messages.slice(0, at), ...newest.messages], earlier: shown.earlier };
}

function upsertTool(tools: ChatToolCall[], call: ChatToolCall): ChatToolCall[] {
  return tools.some((t) => t.id === call.id) ? tools.map((t) => (t.id === call.id ? call : t)) : [...tools, call];
}

export default function AssistantPage() {
  const [sessions, setSessions] = useState<ChatSession[]>([]);
  const [folders, setFolders] = useState<Folder[]>([]);
  const [models, setModels] = useState<Model[]>([]);
  const [model, setModel] = useState("");
  const [current, setShownCurrent] = useState<string | null>(null);
  // The conversation on screen, read by answers that arrive later: one that is not for it (the
  // user opened another meanwhile) is dropped.
  const currentRef = useRef<string | null>(null);
  const setCurrent = (id: string | null) => {
    currentRef.current = id;
    setShownCurrent(id);
  };
  const [transcript, setTranscript] = useState<Transcript>({ messages: [], earlier: false });
  const messages = transcript.messages;
  const [live, setLive] = useState<Live | null>(null);
  // The streamed answer is read by the socket's handler between renders: kept here as it is set.
  const liveRef = useRef<Live | null>(null);
  const update = (next: Live | null | ((l: Live | null) => Live | null)) => {
    liveRef.current = typeof next === "function" ? next(liveRef.current) : next;
    setLive(liveRef.current);
  };
  const [question, setQuestion] = useState("");
  const [status, setStatus] = useState<SocketStatus>("connecting");
  const [error, setError] = useState<unknown>(null);
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<Message[] | null>(null);
  const [newFolder, setNewFolder] = useState("");
  const socket = useRef<LiveSocket<"/ws/chat"> | null>(null);

  const refreshSessions = () => loadSessions().then(setSessions, setError);
  const refreshFolders = () => loadFolders().then(setFolders, setError);

  const open = async (id: string | null) => {
    setCurrent(id);
    update(null);
    setError(null);
    if (id === null) {
      setTranscript({ messages: [], earlier: false });
      return;
    }
    try {
      const loaded = await loadMessages(id);
      if (currentRef.current !== id) return;
      setTranscript(loaded);
      if (loaded.session.model) setModel(loaded.session.model);
    } catch (failure) {
      if (currentRef.current === id) setError(failure);
    }
  };

  /** The stored turn replaces the streamed one once the service has kept it. */
  const settle = async (id: string | null) => {
    void refreshSessions();
    if (!id) return;
    try {
      const loaded = await loadMessages(id);
      if (currentRef.current !== id) return;
      setTranscript((shown) => withNewest(shown, loaded));
      update((l) => (l && l.state !== "streaming" && l.state !== "failed" ? null : l));
    } catch (failure) {
      if (currentRef.current === id) setError(failure);
    }
  };

  useEffect(() => {
    void refreshSessions();
    void refreshFolders();
    envelope(api().GET("/api/v1/chat/models")).then(({ data }) => {
      setModels(data);
      setModel((m) => m || data[0]?.id || "");
    }, setError);

    // Only the answer this page asked for is drawn: a socket also hears the sessions it joined
    // (its answers' relays from other tabs), which belong to other conversations.
    const ours = (l: Live | null, sessionId: string): l is Live => l !== null && l.sessionId === sessionId;
    const receive = (message: ChatServerMessage) => {
      const streaming = liveRef.current?.state === "streaming";
      switch (message.type) {
        case "session":
          if (!streaming || liveRef.current?.sessionId !== null) break;
          setCurrent(message.sessionId);
          update((l) => (l && l.sessionId === null ? { ...l, sessionId: message.sessionId } : l));
          setSessions((all) =>
            all.some((s) => s.id === message.sessionId) ? all : [{ id: message.sessionId, title: message.title }, ...all],
          );
          break;
        case "chunk":
          update((l) => (ours(l, message.sessionId) ? { ...l, text: l.text + message.text } : l));
          break;
        case "tool_call":
        case "tool_result":
          update((l) => (ours(l, message.sessionId) ? { ...l, tools: upsertTool(l.tools, message.toolCall) } : l));
          break;
        case "done":
          if (!ours(liveRef.current, message.sessionId) || !streaming) break;
          update((l) => (ours(l, message.sessionId) ? { ...l, state: "done" } : l));
          void settle(message.sessionId);
          break;
        case "stopped":
          // The service stores the cut answer after it hears of the cancel, later than this:
          // the streamed text stays on screen (the next question reads the stored turn).
          if (!ours(liveRef.current, message.sessionId) || !streaming) break;
          update((l) => (ours(l, message.sessionId) ? { ...l, state: "stopped" } : l));
          void refreshSessions();
          break;
        case "error": {
          const wait = message.retryAfter ? ` Try again in ${Math.ceil(message.retryAfter)} s.` : "";
          const text = `${message.message ?? message.code}${wait}`;
          const mine = streaming && (!message.sessionId || liveRef.current?.sessionId === message.sessionId || liveRef.current?.sessionId === null);
          if (mine) {
            update((l) => (l ? { ...l, state: "failed", error: text } : l));
            void refreshSessions();
          } else if (!message.sessionId || message.sessionId === liveRef.current?.sessionId) {
            setError(new Error(text));
          }
          break;
        }
      }
    };
    const onStatus = (value: SocketStatus) => {
      setStatus(value);
      if (value === "reconnecting" && liveRef.current?.state === "streaming") {
        // The answer streamed on the socket that dropped: the service keeps what was written.
        update((l) => (l ? { ...l, state: "failed", error: "The connection dropped; what was written so far is kept." } : l));
      }
    };
    socket.current = new LiveSocket("/ws/chat", { onMessage: receive, onStatus });
    return () => socket.current?.close();
  }, []);

  const ask = (event: Event) => {
    event.preventDefault();
    const text = question.trim();
    if (!text || live?.state === "streaming") return;
    const sent = socket.current?.send({
      type: "stream_chat",
      message: text,
      ...(current ? { sessionId: current } : {}),
      ...(model ? { model } : {}),
    });
    if (!sent) {
      setError(new Error("Not connected to the assistant yet; try again in a moment."));
      return;
    }
    setError(null);
    if (live) {
      // The previous streamed turn is stored by now: show it as stored before the new one.
      const asked = current;
      void loadMessages(current ?? "").then(
        (l) => {
          if (currentRef.current === asked) setTranscript((shown) => withNewest(shown, l));
        },
        () => undefined,
      );
    }
    update({ sessionId: current, question: text, text: "", tools: [], state: "streaming" });
    setQuestion("");
  };

  const stop = () => socket.current?.send({ type: "stop" });

  const showEarlier = async () => {
    const first = messages[0]?.id;
    if (!current || !first) return;
    const asked = current;
    try {
      const page = await loadMessages(current, first);
      if (currentRef.current !== asked) return;
      setTranscript((shown) =>
        shown.messages[0]?.id === first ? { messages: [...page.messages, ...shown.messages], earlier: page.earlier } : shown,
      );
    } catch (failure) {
      setError(failure);
    }
  };

  const search = async (event: Event) => {
    event.preventDefault();
    if (!query.trim()) {
      setHits(null);
      return;
    }
    try {
      const { data } = await envelope(api().GET("/api/v1/chat/search", { params: { query: { q: query.trim(), limit: 50 } } }));
      setHits(data);
    } catch (failure) {
      setError(failure);
    }
  };

  const createFolder = async (event: Event) => {
    event.preventDefault();
    try {
      await envelope(api().POST("/api/v1/assistant/folders", { body: { name: newFolder.trim() } }));
      setNewFolder("");
      void refreshFolders();
    } catch (failure) {
      setError(failure);
    }
  };

  const deleteFolder = async (id: string, name: string) => {
    if (!window.confirm(`Delete the folder ${name}? Its conversations are kept, out of any folder.`)) return;
    try {
      await api().DELETE("/api/v1/assistant/folders/{id}", { params: { path: { id } } });
      void refreshFolders();
      void refreshSessions();
    } catch (failure) {
      setError(failure);
    }
  };

  const moveTo = async (folderId: string) => {
    if (!current) return;
    try {
      const { data } = await envelope(
        api().PUT("/api/v1/chat/sessions/{id}", { params: { path: { id: current } }, body: { folderId } }),
      );
      setSessions((all) => all.map((s) => (s.id === current ? { ...s, ...data } : s)));
    } catch (failure) {
      setError(failure);
    }
  };

  const deleteSession = async () => {
    if (!current || !window.confirm("Delete this conversation?")) return;
    try {
      await api().DELETE("/api/v1/chat/sessions/{id}", { params: { path: { id: current } } });
      setSessions((all) => all.filter((s) => s.id !== current));
      void open(null);
    } catch (failure) {
      setError(failure);
    }
  };

  const groups = [{ id: "", name: "Conversations" }, ...folders].map((f) => ({
    id: f.id ?? "",
    name: f.name ?? "",
    sessions: sessions.filter((s) => (s.folderId ?? "") === (f.id ?? "")),
  }));
  const session = sessions.find((s) => s.id === current);
  const streaming = live?.state === "streaming";

  return (
    <section class="assistant" aria-labelledby="assistant-title">
      <aside class="chat-side card" aria-label="Conversations">
        <button type="button" class="primary" onClick={() => void open(null)} data-testid="chat-new">
          New conversation
        </button>
        <form role="search" onSubmit={search} class="chat-search">
          <label for="chat-search-input">Search messages</label>
          <div class="row">
            <input
              id="chat-search-input"
              type="search"
              data-testid="chat-search"
              value={query}
              onInput={(e) => setQuery(e.currentTarget.value)}
            />
            <button type="submit">Search</button>
          </div>
        </form>
        {hits && (
          <div class="hits">
            <div class="row spread">
              <h2>
                {hits.length} result{hits.length === 1 ? "" : "s"}
              </h2>
              <button type="button" class="link" onClick={() => setHits(null)}>
                Clear
              </button>
            </div>
            <ul>
              {hits.map((hit) => (
                <li key={hit.id}>
                  <button
                    type="button"
                    class="hit"
                    data-testid="chat-search-result"
                    onClick={() => void open(hit.sessionId ?? null)}
                  >
                    <strong>{sessions.find((s) => s.id === hit.sessionId)?.title ?? "Conversation"}</strong>
                    <span>{(hit.content ?? "").slice(0, 140)}</span>
                  </button>
                </li>
              ))}
            </ul>
          </div>
        )}
        <nav aria-label="Conversations by folder">
          {groups.map((group) => (
            <div key={group.id || "none"} class="folder" data-testid="chat-folder" data-folder-id={group.id}>
              <div class="row spread">
                <h2>{group.name}</h2>
                {group.id && (
                  <button
                    type="button"
                    class="link"
                    aria-label={`Delete the folder ${group.name}`}
                    onClick={() => void deleteFolder(group.id, group.name)}
                  >
                    Delete
                  </button>
                )}
              </div>
              {group.sessions.length === 0 ? (
                <p class="muted small">Empty</p>
              ) : (
                <ul>
                  {group.sessions.map((s) => (
                    <li key={s.id}>
                      <button
                        type="button"
                        class="session"
                        aria-current={s.id === current ? "true" : undefined}
                        data-testid="chat-session"
                        data-session-id={s.id}
                        onClick={() => void open(s.id ?? null)}
                      >
                        {s.title || "Untitled"}
                      </button>
                    </li>
                  ))}
                </ul>
              )}
            </div>
          ))}
        </nav>
        <form onSubmit={createFolder} class="chat-folder-new">
          <label for="chat-folder-name">New folder</label>
          <div class="row">
            <input
              id="chat-folder-name"
              data-testid="chat-folder-name"
              value={newFolder}
              required
              maxLength={100}
              onInput={(e) => setNewFolder(e.currentTarget.value)}
            />
            <button type="submit" disabled={!newFolder.trim()}>
              Add
            </button>
          </div>
        </form>
      </aside>
      <div class="chat-main card">
        <div class="row spread chat-head">
          <h1 id="assistant-title">{session?.title || (current ? "Conversation" : "New conversation")}</h1>
          <span class={`live live-${status}`} title={`Assistant connection: ${status}`} aria-label={`Assistant connection: ${status}`} data-testid="chat-status" />
        </div>
        <div class="row chat-tools">
          <div class="field">
            <label for="chat-model">Model</label>
            <select id="chat-model" data-testid="chat-model" value={model} onChange={(e) => setModel(e.currentTarget.value)}>
              {models.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.name || m.id}
                </option>
              ))}
              {model && !models.some((m) => m.id === model) && <option value={model}>{model}</option>}
            </select>
          </div>
          {current && (
            <div class="field">
              <label for="chat-move">Folder</label>
              <select
                id="chat-move"
                data-testid="chat-move"
                value={session?.folderId ?? ""}
                onChange={(e) => void moveTo(e.currentTarget.value)}
              >
                <option value="">(none)</option>
                {folders.map((f) => (
                  <option key={f.id} value={f.id}>
                    {f.name}
                  </option>
                ))}
              </select>
            </div>
          )}
          {current && (
            <button type="button" class="link" onClick={() => void deleteSession()} data-testid="chat-delete">
              Delete conversation
            </button>
          )}
        </div>
        <ErrorBanner error={error} testid="chat-error" />
        {messages.length === 0 && !live ? (
          <p class="muted" data-testid="chat-empty">
            Ask about your portfolios: “what is my portfolio worth?”, “what do I hold?”. Without an API
            key the assistant runs offline and answers those two.
          </p>
        ) : (
          <>
            {transcript.earlier && (
              <button type="button" class="link chat-earlier" onClick={() => void showEarlier()} data-testid="chat-earlier">
                Show earlier messages
              </button>
            )}
            <Messages messages={messages} live={live} />
          </>
        )}
        <form class="composer" onSubmit={ask}>
          <label for="chat-input" class="visually-hidden">
            Your question
          </label>
          <textarea
            id="chat-input"
            data-testid="chat-input"
            rows={2}
            value={question}
            placeholder="Ask the assistant…"
            onInput={(e) => setQuestion(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                if (status === "open") ask(e);
              }
            }}
          />
          {streaming ? (
            <button type="button" onClick={stop} data-testid="chat-stop" class="stop">
              Stop
            </button>
          ) : (
            <button
              type="submit"
              class="primary"
              disabled={!question.trim() || status !== "open"}
              title={status === "open" ? undefined : "Connecting to the assistant…"}
              data-testid="chat-send"
            >
              {status === "open" ? "Send" : "Connecting…"}
            </button>
          )}
        </form>
      </div>
    </section>
  );
}
