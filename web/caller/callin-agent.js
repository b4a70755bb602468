/**
 * callin-agent.js: the agent's side of the Callin signaling session, with no UI (the agent console is built on it).
 *
 * One ES module, no dependencies, no build step. It owns the /ws/agent socket and keeps the session through
 * socket losses: `hello`, numbered events (seq) handled once each and in order, a resume with `resume_token` and
 * `last_seq` after a drop (back-off 0.3 s doubling to 3 s, within the gateway's resume_grace_s), application pings
 * that notice a socket gone silent, and the gateway's `shutdown`.
 *
 *   import { CallinAgentSession } from "/static/caller/callin-agent.js";
 *   const session = new CallinAgentSession();          // signed in by the console's session cookie
 *   session.addEventListener("message", (e) => handle(e.detail));        // every event, once, in order
 *   session.addEventListener("disconnected", (e) => showWhy(e.detail.reason));
 *   const welcome = await session.connect();
 *   await session.request({ type: "agent.status", status: "available" });
 *
 * Events (CustomEvent, data in `detail`):
 *   message {…the gateway's event}   (responses to requests resolve their request() instead)
 *   reconnecting {attempt}   reconnected {welcome}   (the session is back; the replayed events came as "message")
 *   disconnected {reason, error, retryAfterS}   the session is over on this socket:
 *     "shutdown" (the gateway is restarting: connect() again after retryAfterS), "session_ended" (sign in again:
 *     invalid/expired/revoked session), "resume_failed" (the session is gone), "gave_up" (no resume within the
 *     grace period), "replaced" (a newer connection took the session, close 4409)
 * The wire protocol is docs/protocol.md.
 *
 * Media while a call rings (docs/protocol.md, "Media while ringing"): `offerCallMedia(session, callId, pc)` sends a
 * prepared peer connection's offer as soon as the call rings; the gateway connects the leg (ICE, DTLS) and keeps it
 * out of the call until call.accept, so that accepting only opens the gate.
 */

import { CallinError, Signaling } from "./callin-client.js";

export const VERSION = "1.0.0";
/** hello errors after which the agent must sign in again. */
export const SESSION_ENDED = Object.freeze(["invalid_token", "token_expired", "not_authenticated", "session_revoked"]);
const CLOSE_REPLACED = 4409;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The agent WebSocket URL of the gateway at `base` (default: this page's origin). */
export function agentSocketUrl(base = globalThis.location?.href) {
  const url = new URL("/ws/agent", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * Send the offer of `pc` for the call `callId` and apply the gateway's answer. Sent while the call rings at this
 * agent, it sets the call's media up ahead of the answer: the gateway connects the leg but keeps it out of the
 * call until `call.accept` (nothing of the caller reaches this agent before, nothing of this agent reaches the
 * caller), closes it if the ring ends unanswered, and on accept sends the caller's latest picture at once.
 * After the accept it is the ordinary offer of the call's media.
 *
 * @param {CallinAgentSession} session
 * @param {string} callId
 * @param {RTCPeerConnection} pc its local offer set, or being set (`ready`)
 * @param {object} [options]
 * @param {Promise<unknown>} [options.ready] resolves once pc.setLocalDescription(offer) is done
 * @param {() => void} [options.onAnswer] called when the gateway answered, before the answer is applied (the time
 *   to send ICE candidates held back until the offer was out)
 * @returns {Promise<void>} once the answer is applied; rejects with a CallinError (e.g. "not_offered": the ring
 *   ended meanwhile, "not_accepted": it rings elsewhere now)
 */
export async function offerCallMedia(session, callId, pc, { ready = null, onAnswer = null } = {}) {
  await ready;
  if (pc.signalingState === "closed") throw new CallinError("closed", "the peer connection was closed");
  const answer = await session.request({ type: "sdp.offer", call_id: callId, sdp: pc.localDescription.sdp });
  onAnswer?.();
  if (pc.signalingState !== "closed") await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
}

export class CallinAgentSession extends EventTarget {
  #signal = null;
  #welcome = null;
  #lastSeq = 0;
  #closing = false;
  #reconnecting = false;
  #shutdown = null;
  #token;
  #pingIntervalMs;
  #pingTimeoutMs;

  /**
   * @param {object} [options]
   * @param {string} [options.url] the /ws/agent URL (default: this page's gateway)
   * @param {string|null} [options.token] an agent session token for `hello` (default: none, the session cookie signs the socket in)
   * @param {number} [options.pingIntervalMs] application pings (default 15000); a ping unanswered in pingTimeoutMs (8000) drops the socket, which resumes
   */
  constructor({ url = agentSocketUrl(), token = null, pingIntervalMs = 15000, pingTimeoutMs = 8000 } = {}) {
    super();
    this.url = url;
    this.#token = token;
    this.#pingIntervalMs = pingIntervalMs;
    this.#pingTimeoutMs = pingTimeoutMs;
  }

  /** The last welcome (ice_servers, agent, call, resume_grace_s, …); null before connect(). */
  get welcome() {
    return this.#welcome;
  }

  /** The seq of the last event handled (0: none yet): hello.last_seq on resume. */
  get lastSeq() {
    return this.#lastSeq;
  }

  get reconnecting() {
    return this.#reconnecting;
  }

  get open() {
    return this.#signal !== null && this.#signal.open;
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Open a new session (no resume) and resolve with its welcome; rejects with a CallinError. */
  async connect() {
    this.#closing = false;
    return this.#hello(null);
  }

  async #hello(resumeToken) {
    const signal = new Signaling(this.url);
    await signal.connect();
    const hello = { type: "hello" };
    if (this.#token) hello.token = this.#token;
    if (resumeToken) {
      hello.resume_token = resumeToken;
      hello.last_seq = this.#lastSeq; // the gateway sends again every event after it
    }
    let welcome;
    try {
      welcome = await signal.request(hello, 10000);
    } catch (err) {
      signal.close();
      throw err;
    }
    const old = this.#signal;
    this.#signal = signal;
    old?.close();
    this.#welcome = welcome;
    this.#shutdown = null;
    if (!resumeToken) this.#lastSeq = 0; // a new session numbers its events from 1
    signal.addEventListener("message", (e) => this.#onEvent(e.detail));
    signal.addEventListener("close", (e) => this.#onClose(signal, e.detail));
    this.#pingLoop(signal);
    return welcome;
  }

  /** Every event is numbered (seq): skip what was already handled (a replay may overlap what arrived). */
  #onEvent(message) {
    if (typeof message.seq === "number") {
      if (message.seq <= this.#lastSeq) return;
      this.#lastSeq = message.seq;
    }
    if (message.type === "shutdown") this.#shutdown = message;
    this.#emit("message", message);
  }

  async #pingLoop(signal) {
    while (signal === this.#signal && !this.#closing) {
      await sleep(this.#pingIntervalMs);
      if (signal !== this.#signal || !signal.open) return;
      try {
        await signal.request({ type: "ping" }, this.#pingTimeoutMs);
      } catch (err) {
        if (err.code === "timeout" && signal === this.#signal) signal.close(4000, "no pong"); // -> resume
        return;
      }
    }
  }

  async #onClose(signal, { code }) {
    if (signal !== this.#signal || this.#closing) return;
    if (this.#shutdown) {
      // The gateway is restarting: its sessions do not survive, so there is nothing to resume.
      const retryAfterS = this.#shutdown.retry_after_s ?? 5;
      this.#welcome = null;
      this.#emit("disconnected", { reason: "shutdown", error: null, retryAfterS });
      return;
    }
    if (code === CLOSE_REPLACED) {
      this.#emit("disconnected", { reason: "replaced", error: null, retryAfterS: null });
      return;
    }
    await this.#resume();
  }

  async #resume() {
    this.#reconnecting = true;
    const resumeToken = this.#welcome?.resume_token;
    const deadline = performance.now() + Math.max(5000, (this.#welcome?.resume_grace_s ?? 30) * 1000);
    let delay = 300;
    let outcome = { reason: "gave_up", error: null, retryAfterS: null };
    for (let attempt = 1; resumeToken && performance.now() < deadline && !this.#closing; attempt += 1) {
      this.#emit("reconnecting", { attempt });
      try {
        const welcome = await this.#hello(resumeToken);
        this.#reconnecting = false;
        this.#emit("reconnected", { welcome });
        return;
      } catch (err) {
        if (SESSION_ENDED.includes(err.code)) {
          outcome = { reason: "session_ended", error: err, retryAfterS: null };
          break;
        }
        if (err.code === "resume_failed") {
          outcome = { reason: "resume_failed", error: err, retryAfterS: null };
          break;
        }
      }
      await sleep(Math.min(delay, Math.max(0, deadline - performance.now())));
      delay = Math.min(delay * 2, 3000);
    }
    this.#reconnecting = false;
    if (this.#closing) return;
    this.#emit("disconnected", outcome);
  }

  /** The next request id on this session. */
  nextId() {
    return this.#signal ? this.#signal.nextId() : `a${Date.now().toString(36)}`;
  }

  /** Send a request and wait for its response (an `error` rejects with a CallinError). */
  request(message, timeoutMs = 15000) {
    if (!this.#signal) return Promise.reject(new CallinError("disconnected", "not connected to the gateway", { retryable: true }));
    return this.#signal.request(message, timeoutMs);
  }

  /** Send without waiting (e.g. trickled candidates); false when the socket is not open. */
  send(message) {
    return this.#signal ? this.#signal.send(message) : false;
  }

  /** Say goodbye (the session ends for good: no resume), then close. */
  async bye(timeoutMs = 2000) {
    if (this.open) {
      try {
        await this.request({ type: "bye" }, timeoutMs);
      } catch {
        /* leaving anyway */
      }
    }
    this.close();
  }

  /** Close the socket and stop resuming (the gateway keeps the session for resume_grace_s). */
  close(code = 1000, reason = "") {
    this.#closing = true;
    this.#signal?.close(code, reason);
  }
}
