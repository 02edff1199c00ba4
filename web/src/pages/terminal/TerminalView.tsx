/** One xterm.js terminal attached to one shell session over /ws/terminal (README, "Terminals").
 *
 * Every (re)connection resets the screen and joins with replay, so the service's recent output
 * redraws it exactly once however often the socket dropped. The fit addon sizes the terminal to
 * its box; each new size goes to the shell as a `resize`. */

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef } from "preact/hooks";
import type { TerminalServerMessage } from "../../ws/protocol";
import { LiveSocket, type SocketStatus } from "../../ws/socket";

/** What the tab strip shows for a terminal. */
export type TerminalState =
  | { kind: "connecting" }
  | { kind: "attached" }
  | { kind: "reconnecting" }
  | { kind: "ended"; why: string }
  | { kind: "failed"; why: string };

const EXIT_TEXT: Record<string, string> = {
  exited: "the shell exited",
  closed: "the session was closed",
  dropped: "this tab fell behind; joining again",
};

/** The terminal keeps Tab for the shell; this key moves focus out of it instead. */
export const LEAVE_KEY = "Ctrl+]";

export function TerminalView(props: {
  sessionId: string;
  active: boolean;
  label: string;
  onState: (state: TerminalState) => void;
  onLeave: () => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const fitRef = useRef<FitAddon | null>(null);
  const termRef = useRef<Terminal | null>(null);
  const onState = useRef(props.onState);
  onState.current = props.onState;
  const onLeave = useRef(props.onLeave);
  onLeave.current = props.onLeave;

  useEffect(() => {
    const container = box.current!;
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(container);
    // Keyboard users are never trapped: Ctrl+] leaves the terminal (to its tab).
    term.attachCustomKeyEventHandler((event) => {
      if (event.type === "keydown" && event.ctrlKey && event.key === "]") {
        onLeave.current();
        return false;
      }
      return true;
    });
    termRef.current = term;
    fitRef.current = fit;
    let ended = false;

    const join = () => {
      term.reset(); // the replay redraws the screen: never the same output twice
      socket.send({ type: "join", sessionId: props.sessionId, noReplay: false });
    };
    const receive = (message: TerminalServerMessage) => {
      switch (message.type) {
        case "joined":
          ended = false;
          onState.current({ kind: "attached" });
          // The shell was started (or last sized) elsewhere: give it this box's size.
          socket.send({ type: "resize", cols: term.cols, rows: term.rows });
          break;
        case "data":
          term.write(message.data);
          break;
        case "exit": {
          const why = EXIT_TEXT[message.reason] ?? message.reason;
          const code = message.reason === "exited" && message.code !== undefined ? ` (code ${message.code})` : "";
          term.write(`\r\n\x1b[2m[${why}${code}]\x1b[0m\r\n`);
          if (message.reason === "dropped") {
            join();
          } else {
            ended = true;
            onState.current({ kind: "ended", why: `${why}${code}` });
          }
          break;
        }
        case "error":
          if (message.code === "NOT_FOUND") {
            ended = true;
            onState.current({ kind: "failed", why: message.message ?? "the session no longer exists" });
          } else {
            term.write(`\r\n\x1b[31m[${message.message ?? message.code}]\x1b[0m\r\n`);
          }
          break;
      }
    };
    const status = (value: SocketStatus) => {
      if (ended) return;
      if (value === "connecting") onState.current({ kind: "connecting" });
      if (value === "reconnecting") onState.current({ kind: "reconnecting" });
    };
    const socket = new LiveSocket("/ws/terminal", { onReady: join, onMessage: receive, onStatus: status });

    const typing = term.onData((data) => {
      if (ended) return;
      for (const piece of pieces(data)) socket.send({ type: "data", data: piece });
    });
    const resizing = term.onResize(({ cols, rows }) => {
      if (!ended) socket.send({ type: "resize", cols, rows });
    });
    // A hidden tab has no size: fitting it then would shrink the shell to nothing.
    const observer = new ResizeObserver(() => {
      if (container.offsetParent !== null) fit.fit();
    });
    observer.observe(container);

    return () => {
      observer.disconnect();
      typing.dispose();
      resizing.dispose();
      socket.close(); // lets go of the session: the shell keeps running for the next join
      term.dispose();
      termRef.current = null;
      fitRef.current = null;
    };
  }, [props.sessionId]);

  useEffect(() => {
    if (!props.active) return;
    fitRef.current?.fit();
    termRef.current?.focus();
  }, [props.active]);

  return (
    <div
      ref={box}
      class="xterm-box"
      role="group"
      aria-label={`Terminal ${props.label}`}
      data-testid="terminal-output"
      data-session-id={props.sessionId}
    />
  );
}

/** A paste cut into frames the socket takes (its messages are at most 64 KiB, and a control
 * character is six bytes of JSON): a larger one closed the socket and the paste was lost. A
 * surrogate pair is never split. */
const PIECE = 8192;

export function pieces(data: string): string[] {
  const cut: string[] = [];
  let start = 0;
  while (data.length - start > PIECE) {
    let end = start + PIECE;
    const last = data.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end -= 1; // a high surrogate: keep it with its pair
    cut.push(data.slice(start, end));
    start = end;
  }
  cut.push(data.slice(start));
  return cut;
}
