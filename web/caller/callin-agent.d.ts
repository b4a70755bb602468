/**
 * Type declarations for callin-agent.js (hand-written; checked by tests/unit/test_js_package.py).
 * The wire protocol is docs/protocol.md; the JS package is described in docs/sdk-js.md.
 */

import type { CallinError, ClientMessage, ServerMessage } from "./callin-client.js";

export declare const VERSION: string;
/** hello errors after which the agent must sign in again. */
export declare const SESSION_ENDED: readonly string[];
/** The agent WebSocket URL of the gateway at `base` (default: this page's origin). */
export declare function agentSocketUrl(base?: string | URL): string;

/**
 * Send the offer of `pc` for a call and apply the gateway's answer. Sent while the call rings, the gateway connects
 * the leg but keeps it out of the call until call.accept (docs/protocol.md, "Media while ringing").
 */
export declare function offerCallMedia(session: CallinAgentSession, callId: string, pc: RTCPeerConnection,
  options?: { ready?: Promise<unknown> | null; onAnswer?: (() => void) | null }): Promise<void>;

export type DisconnectReason = "shutdown" | "session_ended" | "resume_failed" | "gave_up" | "replaced";

/** The `detail` of each event CallinAgentSession dispatches (CustomEvent). */
export interface CallinAgentEventMap {
  /** Every event of the gateway, once each and in order (the replay after a resume included). */
  message: ServerMessage;
  reconnecting: { attempt: number };
  reconnected: { welcome: AgentWelcome };
  disconnected: { reason: DisconnectReason; error: CallinError | null; retryAfterS: number | null };
}

/** The welcome on the agent socket (docs/protocol.md, welcome). */
export interface AgentWelcome extends ServerMessage {
  type: "welcome";
  session_id: string;
  resume_token: string;
  resumed: boolean;
  resume_grace_s: number;
  ice_servers: { urls: string[]; username: string | null; credential: string | null }[];
  max_message_bytes: number;
  agent: { username: string; display_name: string; status: string } | null;
  call: { call_id: string; state: "offered" | "connected"; card: Record<string, unknown> } | null;
  replayed: number;
  replay_complete: boolean;
}

export interface CallinAgentSessionOptions {
  /** The /ws/agent URL (default: this page's gateway). */
  url?: string;
  /** An agent session token for hello (default: none; the console's session cookie signs the socket in). */
  token?: string | null;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
}

/** The agent's signaling session: hello, seq, resume with last_seq, pings, back-off. */
export declare class CallinAgentSession extends EventTarget {
  constructor(options?: CallinAgentSessionOptions);
  readonly url: string;
  readonly welcome: AgentWelcome | null;
  readonly lastSeq: number;
  readonly reconnecting: boolean;
  readonly open: boolean;
  /** Open a new session (no resume); rejects with a CallinError. */
  connect(): Promise<AgentWelcome>;
  nextId(): string;
  request<T extends ServerMessage = ServerMessage>(message: ClientMessage, timeoutMs?: number): Promise<T>;
  send(message: ClientMessage): boolean;
  /** bye (the session ends for good), then close. */
  bye(timeoutMs?: number): Promise<void>;
  /** Close the socket and stop resuming. */
  close(code?: number, reason?: string): void;

  addEventListener<K extends keyof CallinAgentEventMap>(type: K, listener: (event: CustomEvent<CallinAgentEventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof CallinAgentEventMap>(type: K, listener: (event: CustomEvent<CallinAgentEventMap[K]>) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}
