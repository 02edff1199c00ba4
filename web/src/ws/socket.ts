/** A WebSocket to the facade that stays up: it authenticates with a first `auth` message (the
 * token stays out of URLs and logs), re-authenticates on the same socket whenever the access token
 * is renewed, pings while quiet, and reconnects with backoff. A 4401 close renews the token once;
 * a second one in a row means the session is over and the app goes to sign-in. */

import { endSession, renewAccessToken } from "../api/client";
import { accessToken, onAccessToken } from "../auth/tokens";
import { socketUrl } from "../config";
import { CloseCode, type Protocols, type SocketPath } from "./protocol";

export type SocketStatus = "connecting" | "open" | "reconnecting" | "closed";

export type SocketHandlers<P extends SocketPath> = {
  onMessage: (message: Protocols[P]["server"]) => void;
  /** Authenticated (again): (re)subscribe here, a new socket remembers nothing. */
  onReady?: () => void;
  onStatus?: (status: SocketStatus) => void;
};

const PING_EVERY_MS = 25_000;
const SILENT_LIMIT_MS = 60_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15_000;

export class LiveSocket<P extends SocketPath> {
  private socket: WebSocket | null = null;
  private ready = false;
  private closedByUs = false;
  private attempts = 0;
  private unauthorizedInARow = 0;
  private lastHeard = 0;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly stopListening: () => void;

  constructor(
    private readonly path: P,
    private readonly handlers: SocketHandlers<P>,
  ) {
    this.stopListening = onAccessToken((token) => {
      if (token === null) this.close();
      else if (this.socket?.readyState === WebSocket.OPEN) this.sendRaw({ type: "auth", token });
    });
    this.connect();
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** Sends once authenticated; false (dropped) otherwise: onReady sends what a socket needs. */
  send(message: Protocols[P]["client"]): boolean {
    if (!this.ready) return false;
    return this.sendRaw(message);
  }

  close(): void {
    this.closedByUs = true;
    this.stopListening();
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ready = false;
    this.socket?.close(CloseCode.normal);
    this.socket = null;
    this.handlers.onStatus?.("closed");
  }

  private sendRaw(message: object): boolean {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  private connect(): void {
    if (this.closedByUs) return;
    const token = accessToken();
    if (token === null) {
      // No token yet (a renewal in flight): try again shortly rather than connecting bare.
      this.scheduleReconnect();
      return;
    }
    this.handlers.onStatus?.(this.attempts === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(socketUrl(this.path));
    this.socket = socket;
    socket.onopen = () => {
      this.lastHeard = Date.now();
      this.sendRaw({ type: "auth", token: accessToken() ?? token });
    };
    socket.onmessage = (event) => this.receive(event);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.ready = false;
      clearInterval(this.pingTimer);
      if (!this.closedByUs) void this.afterClose(event.code);
    };
  }

  private receive(event: MessageEvent): void {
    this.lastHeard = Date.now();
    let message: Protocols[P]["server"];
    try {
      message = JSON.parse(String(event.data)) as Protocols[P]["server"];
    } catch {
      return; // every message is JSON; anything else is not ours to read
    }
    if (message.type === "auth_ok") {
      const first = !this.ready;
      this.ready = true;
      this.attempts = 0;
      this.unauthorizedInARow = 0;
      if (first) {
        this.startPinging();
        this.handlers.onStatus?.("open");
        this.handlers.onReady?.();
      }
      return;
    }
    if (message.type === "pong") return;
    this.handlers.onMessage(message);
  }

  private startPinging(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENT_LIMIT_MS) {
        this.socket?.close(); // a dead connection: onclose reconnects
        return;
      }
      this.sendRaw({ type: "ping" });
    }, PING_EVERY_MS);
  }

  private async afterClose(code: number): Promise<void> {
    if (code === CloseCode.unauthorized) {
      this.unauthorizedInARow += 1;
      if (this.unauthorizedInARow > 1) {
        endSession("Your session has ended; sign in again.");
        return;
      }
      try {
        await renewAccessToken();
      } catch {
        return; // the renewal ended the session (and said why) or will be retried by a page
      }
      this.connect();
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closedByUs) return;
    this.handlers.onStatus?.("reconnecting");
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempts);
    this.attempts += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
  }
}
