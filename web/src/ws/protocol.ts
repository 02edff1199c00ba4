/** Every WebSocket message of /ws/portfolio, /ws/terminal and /ws/chat, typed by hand from the
 * README's protocol tables ("Streams and WebSockets", "Terminals", "Assistant"): one `type`
 * literal per message. A test reads these declarations against the README's tables, so a message
 * added there without a type here (or the other way round) fails. A message that carries a REST
 * resource carries the generated schema's type of it. */

import type { Schemas } from "../api/client";

// ---- Every socket: authentication, keep-alive, errors ------------------------------------------

export type AuthMessage = { type: "auth"; token: string };
export type PingMessage = { type: "ping" };

export type AuthOkMessage = { type: "auth_ok" };
export type PongMessage = { type: "pong" };
export type ErrorMessage = {
  type: "error";
  code: string;
  message?: string;
  /** /ws/chat: seconds to wait (a provider's or our own rate limit). */
  retryAfter?: number;
  /** /ws/chat: the session the failed answer belonged to. */
  sessionId?: string;
};

/** Sent by the client on every socket. */
export type CommonClientMessage = AuthMessage | PingMessage;
/** Sent by the server on every socket. */
export type CommonServerMessage = AuthOkMessage | PongMessage | ErrorMessage;

/** Close codes every socket uses. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  tryAgainLater: 1013,
  /** Bad, missing or expired token, or a session that ended: sign in again. */
  unauthorized: 4401,
  /** The client fell behind (its send queue passed WS_SEND_QUEUE_BYTES). */
  tooSlow: 4008,
} as const;

// ---- /ws/portfolio -----------------------------------------------------------------------------

export type SubscribeMessage = {
  type: "subscribe";
  symbols?: string[];
  /** The symbols of these watchlists of the user, as they are now. */
  watchlistIds?: string[];
  portfolioIds?: string[];
};
export type UnsubscribeMessage = {
  type: "unsubscribe";
  symbols?: string[];
  watchlistIds?: string[];
  portfolioIds?: string[];
};

export type PriceMessage = {
  type: "price";
  symbol: string;
  price: string;
  change: string;
  changePercent: string;
  time: string;
};
/** Price changes were missed (a gap in the market's numbered steps): the latest price of each
 * followed symbol comes next, so a client that keeps more than the latest (a tick chart) knows
 * that the line between is not complete. */
export type ResyncMessage = { type: "resync"; seq: number };
export type PortfolioValueMessage = {
  type: "portfolio_value";
  portfolioId: string;
  totalValue: string;
  totalGainLoss: string;
  time: string;
};
export type TradeMessage = {
  type: "trade";
  /** As REST returns it (GET /api/v1/trades), the order it filled named in `orderId` (empty
   * for a trade recorded by hand). */
  trade: Schemas["stockfolio.portfolio.v1.Trade"];
};

/** A trade of the user was deleted (DELETE /api/v1/trades/{id}): the trade as it was. */
export type TradeDeletedMessage = {
  type: "trade_deleted";
  trade: TradeMessage["trade"];
};

/** A trade of the user changed in place: edited (PATCH /api/v1/trades/{id}), or a dividend the
 * market paid recomputed after a trade before its ex-date was deleted or edited; the trade as it
 * is now. */
export type TradeUpdatedMessage = {
  type: "trade_updated";
  trade: TradeMessage["trade"];
};

/** An order of the user changed: placed, triggered, filled, rejected, cancelled or expired. */
export type OrderMessage = {
  type: "order";
  /** As REST returns it (GET /api/v1/orders/{id}). */
  order: Schemas["stockfolio.portfolio.v1.Order"];
};

/** A price alert of the user fired (as GET /api/v1/fired-alerts lists it). */
export type AlertMessage = {
  type: "alert";
  id: string;
  alertId: string;
  symbol: string;
  condition: "above" | "below" | "percent_change";
  /** The alert's price (above, below) or signed percent (percent_change). */
  threshold: string;
  /** The price of the tick that crossed it. */
  price: string;
  firedAt: string;
  read: boolean;
  /** "AAPL rose above 190.00 (190.12)". */
  message: string;
};

export type PortfolioClientMessage = CommonClientMessage | SubscribeMessage | UnsubscribeMessage;
export type PortfolioServerMessage =
  | CommonServerMessage
  | PriceMessage
  | ResyncMessage
  | PortfolioValueMessage
  | TradeMessage
  | TradeDeletedMessage
  | TradeUpdatedMessage
  | OrderMessage
  | AlertMessage;

// ---- /ws/terminal ------------------------------------------------------------------------------

export type JoinMessage = { type: "join"; sessionId: string; noReplay?: boolean };
/** Keystrokes (client to server) and output (server to client) share one shape. */
export type DataMessage = { type: "data"; data: string };
export type ResizeMessage = { type: "resize"; cols: number; rows: number };
export type DisconnectMessage = { type: "disconnect" };

export type JoinedTerminalMessage = {
  type: "joined";
  sessionId: string;
  /** The session as REST returns it (GET /api/v1/terminal/terminals/{sessionId}). */
  terminal: Record<string, unknown>;
};
export type ExitMessage = {
  type: "exit";
  code?: number;
  /** exited: the shell ended with `code`; closed: deleted, culled or shut down; dropped: this
   * socket fell behind (join again to resume). */
  reason: "exited" | "closed" | "dropped";
};

export type TerminalClientMessage =
  | CommonClientMessage
  | JoinMessage
  | DataMessage
  | ResizeMessage
  | DisconnectMessage;
export type TerminalServerMessage =
  | CommonServerMessage
  | JoinedTerminalMessage
  | DataMessage
  | ExitMessage;

// ---- /ws/chat ----------------------------------------------------------------------------------

export type StreamChatMessage = {
  type: "stream_chat";
  message: string;
  sessionId?: string;
  model?: string;
};
export type StopMessage = { type: "stop" };
export type JoinSessionMessage = { type: "join_session"; sessionId: string };
export type LeaveSessionMessage = { type: "leave_session"; sessionId: string };
export type TypingStartMessage = { type: "typing_start"; sessionId: string };
export type TypingStopMessage = { type: "typing_stop"; sessionId: string };

export type ChatToolCall = {
  id: string;
  name: string;
  input: unknown;
  result?: unknown;
  isError?: boolean;
};
export type ChatUsage = { inputTokens: number; outputTokens: number };

export type SessionMessage = { type: "session"; sessionId: string; title: string };
export type ChunkMessage = { type: "chunk"; sessionId: string; text: string };
export type ToolCallMessage = { type: "tool_call"; sessionId: string; toolCall: ChatToolCall };
export type ToolResultMessage = { type: "tool_result"; sessionId: string; toolCall: ChatToolCall };
export type DoneMessage = {
  type: "done";
  sessionId: string;
  messageId: string;
  usage: ChatUsage;
};
export type StoppedMessage = { type: "stopped"; sessionId: string };
export type JoinedSessionMessage = { type: "joined"; sessionId: string };
export type LeftSessionMessage = { type: "left"; sessionId: string };
export type UserJoinedMessage = { type: "user_joined"; sessionId: string; userId: string };
export type UserLeftMessage = { type: "user_left"; sessionId: string; userId: string };
export type TypingMessage = { type: "typing"; sessionId: string; userId: string; active: boolean };

export type ChatClientMessage =
  | CommonClientMessage
  | StreamChatMessage
  | StopMessage
  | JoinSessionMessage
  | LeaveSessionMessage
  | TypingStartMessage
  | TypingStopMessage;
export type ChatServerMessage =
  | CommonServerMessage
  | SessionMessage
  | ChunkMessage
  | ToolCallMessage
  | ToolResultMessage
  | DoneMessage
  | StoppedMessage
  | JoinedSessionMessage
  | LeftSessionMessage
  | UserJoinedMessage
  | UserLeftMessage
  | TypingMessage;

// ---- The three sockets -------------------------------------------------------------------------

export type Protocols = {
  "/ws/portfolio": { client: PortfolioClientMessage; server: PortfolioServerMessage };
  "/ws/terminal": { client: TerminalClientMessage; server: TerminalServerMessage };
  "/ws/chat": { client: ChatClientMessage; server: ChatServerMessage };
};
export type SocketPath = keyof Protocols;
