/**
 * callin-client.js: the caller's side of a Callin call, with no UI.
 *
 * For integrators who build their own interface (the Callin widget is built on it). One ES module, no
 * dependencies, no build step:
 *
 *   import { CallinClient, getDeviceLocation } from "https://gateway.example.com/static/caller/callin-client.js";
 *   const client = new CallinClient({ getToken: async () => (await fetch("/my/callin-token")).text() });
 *   client.addEventListener("queue", (e) => show(`You are number ${e.detail.position}`));
 *   client.addEventListener("answered", (e) => show(`Connected to ${e.detail.agentName}`));
 *   client.addEventListener("ended", (e) => show(`Call ended (${e.detail.reason})`));
 *   await client.connect();
 *   const locating = getDeviceLocation(); // the user's consent prompt: the call need not wait for it
 *   await client.startCall({ callType: "video", context: { screen: "checkout" } });
 *   const { location } = await locating;
 *   if (location) await client.sendLocation(location); // call.location: the agent's card shows it when it comes
 *   client.setMuted(true); await client.shareScreen(); await client.useCamera(); await client.hangup();
 *
 * Calls are prepared before the click: once connected, the client makes the next call's peer connection and its
 * offer (no device, nothing sent; see prepare()), so startCall sends call.start and that offer at once. Pass
 * acquireMedia()'s promise as `media` and, where the devices are allowed already (startsBeforeMedia), the call starts
 * while they start.
 *
 * The wire protocol is documented in docs/protocol.md. Events (CustomEvent, data in `detail`):
 *   statechange {state, previous}   idle | connecting | ready | starting | queued | connected | ended
 *   queue {position, queueLength, estimatedWaitS}   answered {agentName, callId}
 *   ended {reason, by, durationS, callId}   error {error: CallinError, fatal}
 *   reconnecting {attempt, graceS, until} (until: Date.now() when the gateway gives the call up)   reconnected {resumed, replayed, complete}   localstream {stream}   remotetrack {track, stream}
 *   participant {state: reconnecting|reconnected, role, name, cause: socket|media} (the agent's console lost its
 *     connection / is back, or its media is being set up again)
 *   mediarecovering {cause, attempt} / mediarecovered {cause, ms}: this client sets the call's media up again with a
 *     new peer connection in the same call (a network change; see recoverMedia and docs/protocol.md "Media recovery")
 *   shutdown {reason, retryAfterS} (the gateway is stopping; the call ends with reason "shutdown")
 *   mediastate {state} (the peer connection's connectionState)   videosource {source: camera|screen|null}
 *   (a switch of the video source is also sent to the gateway as media.source: the agent sees it)
 *   gatewaymedia {state} (media.state of this caller's leg as the gateway sees it, e.g. disconnected)
 *   videopaused {paused, reason} (the gateway paused/resumed the video it sends you: your link is too slow)
 *   devicewarning {code, reason, missing} (e.g. no camera: the call continues as a voice call; missing:
 *     "camera_blocked" (permission refused) or "camera_unavailable", also sent to the gateway as media.source)
 *   ringing {ringing, agentName} (the call rings at that agent now / the ring ended unanswered: waiting again)
 *   barge {active, name} (a supervisor started / stopped speaking in the call; you hear them on the "aux" slot)
 *   transcript {active, captions} (the call is transcribed from now on: tell the user; captions: caption events follow)
 *   caption {speaker: {role, name}, utterance, text, final} (what someone said, redacted; a partial is replaced by
 *     the next caption of the same speaker and utterance; plain text)
 * In-call and contact-center events:
 *   held {held}   transferring {mode}   closed {reason, message, callbackAvailable, messageAllowed, opensAt, queue}
 *   callbackoffer {estimatedWaitS}   callbackaccepted {position}   callbackready {callId, agentName, rejoinWithinS}
 *   rejoined {callId, agentName}   content {content} (pushed by the agent: report it with reportContent)
 *   interrupted {callId, rejoinedCallId, reason} (the call was cut off: the server that held it died; you wait again,
 *     first in line, in call rejoinedCallId; this client sets its media up again by itself)
 *   chat {message} (every line of the call's chat, your own included)
 * State "callback": the call keeps its place in the queue without media; rejoin() when callbackready arrives.
 * Remote tracks carry a `slot`: "main" (the agent) or "aux" (a barging supervisor's voice, a second audio section).
 */

export const VERSION = "1.0.0";
export const CALL_TYPES = Object.freeze(["voice", "video", "screen"]);

/** An error with a stable `code` (the gateway's codes, plus a few of the client's own). */
export class CallinError extends Error {
  constructor(code, reason, { retryable = false, detail = null } = {}) {
    super(reason || code);
    this.name = "CallinError";
    this.code = code;
    this.reason = reason || code;
    this.retryable = retryable;
    this.detail = detail; // resume_failed: {why, call: {call_id, reason, by} | null}
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A User Timing mark `callin:<name>` (DevTools' Performance panel; the click-to-first-frame measurement reads them):
 * only the latest of each name is kept.
 */
function mark(name) {
  try {
    performance.clearMarks(`callin:${name}`);
    performance.mark(`callin:${name}`);
  } catch {
    /* no User Timing here */
  }
}

/** The gateway's base URL (http[s]://host:port) from a URL inside it (e.g. a script's import.meta.url). */
export function gatewayOrigin(url) {
  return new URL(url).origin;
}

function webSocketUrl(gateway, path) {
  const url = new URL(path, gateway);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// ------------------------------------------------------------------------------------------------ signaling
/**
 * One WebSocket to the gateway: requests carry an `id` that the response echoes; everything else is an
 * event. Dispatches "message" (detail: the message) and "close" (detail: {code, reason}).
 */
export class Signaling extends EventTarget {
  #ws = null;
  #pending = new Map();
  #seq = 0;
  #prefix = Math.random().toString(36).slice(2, 7);

  constructor(url) {
    super();
    this.url = url;
  }

  get open() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  connect(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let opened = false;
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        reject(new CallinError("network_error", `cannot open ${this.url}: ${err.message}`, { retryable: true }));
        return;
      }
      this.#ws = ws;
      const timer = setTimeout(() => {
        if (!opened) {
          ws.close();
          reject(new CallinError("network_error", "the gateway did not answer in time", { retryable: true }));
        }
      }, timeoutMs);
      ws.onopen = () => {
        opened = true;
        clearTimeout(timer);
        resolve();
      };
      ws.onmessage = (event) => this.#onMessage(event);
      ws.onclose = (event) => {
        clearTimeout(timer);
        const error = new CallinError("disconnected", "the connection to the gateway was lost", { retryable: true });
        for (const { reject: fail, timer: t } of this.#pending.values()) {
          clearTimeout(t);
          fail(error);
        }
        this.#pending.clear();
        if (!opened) {
          reject(new CallinError("network_error", "could not reach the gateway", { retryable: true }));
          return;
        }
        this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason: event.reason } }));
      };
    });
  }

  #onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    const waiting = message.id != null ? this.#pending.get(message.id) : undefined;
    if (waiting) {
      this.#pending.delete(message.id);
      clearTimeout(waiting.timer);
      if (message.type === "error") {
        waiting.reject(new CallinError(message.code, message.reason, { retryable: message.retryable, detail: message.detail ?? null }));
      } else {
        waiting.resolve(message);
      }
      return;
    }
    this.dispatchEvent(new CustomEvent("message", { detail: message }));
  }

  nextId() {
    this.#seq += 1;
    return `${this.#prefix}${this.#seq}`;
  }

  /** Send without waiting; returns false when the socket is not open. */
  send(message) {
    if (!this.open) return false;
    this.#ws.send(JSON.stringify(message));
    return true;
  }

  /** Send a request and wait for its response; an `error` response rejects with a CallinError. */
  request(message, timeoutMs = 15000) {
    const id = message.id ?? this.nextId();
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new CallinError("disconnected", "not connected to the gateway", { retryable: true }));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new CallinError("timeout", `no answer to ${message.type} in time`, { retryable: true }));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...message, id }));
    });
  }

  close(code = 1000, reason = "") {
    if (this.#ws && this.#ws.readyState <= WebSocket.OPEN) this.#ws.close(code, reason);
  }
}

// ------------------------------------------------------------------------------------------------ media helpers
/** RTCConfiguration.iceServers from the welcome message's ice_servers. */
export function iceServersFrom(list) {
  return (list || []).map(({ urls, username, credential }) => {
    const server = { urls };
    if (username != null) server.username = username;
    if (credential != null) server.credential = credential;
    return server;
  });
}

/** Put `mimeType` (e.g. "video/VP8") first in a transceiver's codec list, when the browser allows it. */
export function preferCodec(transceiver, mimeType) {
  const kind = mimeType.split("/")[0];
  if (typeof transceiver.setCodecPreferences !== "function" || !globalThis.RTCRtpReceiver?.getCapabilities) return false;
  const codecs = RTCRtpReceiver.getCapabilities(kind)?.codecs ?? [];
  const wanted = codecs.filter((c) => c.mimeType.toLowerCase() === mimeType.toLowerCase());
  if (!wanted.length) return false;
  const rest = codecs.filter((c) => c.mimeType.toLowerCase() !== mimeType.toLowerCase());
  try {
    transceiver.setCodecPreferences([...wanted, ...rest]);
    return true;
  } catch {
    return false;
  }
}

/**
 * The protocol's ice.candidate for a trickled candidate (null candidate = end of candidates), or null for a
 * candidate not worth sending: the gateway refuses mDNS names (`*.local`, from a browser that hides its local
 * addresses) with candidate_refused, as it does not resolve names.
 * Tell the gateway "end of candidates" only after at least one candidate: a browser that gathered none
 * (e.g. local addresses withheld) still connects through the gateway's peer-reflexive discovery of its
 * checks, which an early end-of-candidates would cut short.
 */
export function candidateMessage(candidate, callId) {
  const message = { type: "ice.candidate", candidate: null, sdp_mid: null, sdp_mline_index: null };
  if (callId) message.call_id = callId;
  if (candidate && candidate.candidate) {
    const address = candidate.address ?? candidate.candidate.split(" ")[4] ?? "";
    if (address.toLowerCase().replace(/\.$/, "").endsWith(".local")) return null;
    message.candidate = candidate.candidate;
    message.sdp_mid = candidate.sdpMid ?? null;
    message.sdp_mline_index = candidate.sdpMLineIndex ?? null;
  }
  return message;
}

/**
 * A small summary of RTCPeerConnection.getStats(): what arrives and leaves, round-trip time, and (given the
 * previous summary) loss, bitrates and frame rate over the interval, with a quality verdict.
 */
export async function summarizeStats(pc, previous = null) {
  const report = await pc.getStats();
  const s = {
    at: performance.now(),
    rttMs: null,
    audioIn: null,
    videoIn: null,
    audioOut: null,
    videoOut: null,
  };
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && (r.kind === "audio" || r.kind === "video")) {
      const entry = {
        packetsReceived: r.packetsReceived ?? 0,
        packetsLost: r.packetsLost ?? 0,
        bytesReceived: r.bytesReceived ?? 0,
        jitterMs: r.jitter != null ? r.jitter * 1000 : null,
      };
      if (r.kind === "video") {
        Object.assign(entry, {
          framesDecoded: r.framesDecoded ?? 0,
          frameWidth: r.frameWidth ?? 0,
          frameHeight: r.frameHeight ?? 0,
          framesPerSecond: r.framesPerSecond ?? null,
          keyFramesDecoded: r.keyFramesDecoded ?? 0,
        });
        s.videoIn = entry;
      } else {
        entry.audioLevel = r.audioLevel ?? null;
        s.audioIn = entry;
      }
    } else if (r.type === "outbound-rtp" && (r.kind === "audio" || r.kind === "video")) {
      const entry = { packetsSent: r.packetsSent ?? 0, bytesSent: r.bytesSent ?? 0 };
      if (r.kind === "video") {
        Object.assign(entry, {
          framesEncoded: r.framesEncoded ?? 0,
          frameWidth: r.frameWidth ?? 0,
          frameHeight: r.frameHeight ?? 0,
          framesPerSecond: r.framesPerSecond ?? null,
          qualityLimitationReason: r.qualityLimitationReason ?? null,
        });
        s.videoOut = entry;
      } else {
        s.audioOut = entry;
      }
    } else if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded" && r.currentRoundTripTime != null) {
      s.rttMs = r.currentRoundTripTime * 1000;
    } else if (r.type === "remote-inbound-rtp" && r.roundTripTime != null && s.rttMs == null) {
      s.rttMs = r.roundTripTime * 1000;
    }
  });

  const seconds = previous ? (s.at - previous.at) / 1000 : 0;
  const delta = (key, sub) => (s[key] && previous?.[key] ? s[key][sub] - previous[key][sub] : 0);
  let received = delta("videoIn", "packetsReceived") + delta("audioIn", "packetsReceived");
  let lost = Math.max(0, delta("videoIn", "packetsLost") + delta("audioIn", "packetsLost"));
  s.lossPct = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
  s.inKbps = seconds > 0 ? ((delta("videoIn", "bytesReceived") + delta("audioIn", "bytesReceived")) * 8) / 1000 / seconds : null;
  s.outKbps = seconds > 0 ? ((delta("videoOut", "bytesSent") + delta("audioOut", "bytesSent")) * 8) / 1000 / seconds : null;
  s.videoFps = seconds > 0 && s.videoIn && previous?.videoIn ? delta("videoIn", "framesDecoded") / seconds : s.videoIn?.framesPerSecond ?? null;
  s.videoFlowing = s.videoIn ? delta("videoIn", "framesDecoded") > 0 || (!previous && s.videoIn.framesDecoded > 0) : false;
  s.audioFlowing = s.audioIn ? delta("audioIn", "packetsReceived") > 0 : false;
  if (s.lossPct > 8 || (s.rttMs ?? 0) > 450) s.quality = "poor";
  else if (s.lossPct > 2 || (s.rttMs ?? 0) > 200) s.quality = "fair";
  else s.quality = "good";
  if (previous && received === 0 && (s.audioIn || s.videoIn)) s.quality = "poor";
  return s;
}

/** Maps a getUserMedia/getDisplayMedia failure to a CallinError with a stable code. */
export function mediaError(err, what = "microphone") {
  const name = err?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    if (what === "screen") return new CallinError("screen_share_cancelled", "screen sharing was cancelled or blocked");
    return new CallinError("permission_denied", `access to the ${what} was denied`);
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return new CallinError("no_device", `no ${what} was found`);
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return new CallinError("device_busy", `the ${what} is in use by another application`);
  }
  if (name === "TypeError" || !navigator.mediaDevices) {
    return new CallinError("unsupported", "this browser cannot make calls here (a secure https page is needed)");
  }
  return new CallinError("media_error", err?.message || `the ${what} could not be started`);
}

export const AUDIO_CONSTRAINTS = Object.freeze({ echoCancellation: true, noiseSuppression: true, autoGainControl: true });
export const CAMERA_CONSTRAINTS = Object.freeze({
  facingMode: "user",
  width: { ideal: 640 },
  height: { ideal: 480 },
  frameRate: { ideal: 30, max: 30 },
});
export const SCREEN_CONSTRAINTS = Object.freeze({ frameRate: { ideal: 15, max: 30 } });

/**
 * The device's position with the user's consent, as the protocol's `location` ({lat, lon, accuracy_m,
 * timestamp}), or null. Never throws: `status` says what happened (shared, denied, unavailable, timeout,
 * unsupported). A call works without a location.
 */
export function getDeviceLocation({ timeoutMs = 8000, maximumAgeMs = 120000, highAccuracy = false } = {}) {
  return new Promise((resolve) => {
    if (!globalThis.navigator?.geolocation) {
      resolve({ location: null, status: "unsupported" });
      return;
    }
    let done = false;
    const finish = (value) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve(value);
      }
    };
    // getCurrentPosition's own timeout does not count the time a permission prompt is open; ours does.
    const timer = setTimeout(() => finish({ location: null, status: "timeout" }), timeoutMs + 200);
    navigator.geolocation.getCurrentPosition(
      (pos) =>
        finish({
          status: "shared",
          location: {
            lat: pos.coords.latitude,
            lon: pos.coords.longitude,
            accuracy_m: Math.min(Math.max(pos.coords.accuracy ?? 0, 0), 1_000_000),
            timestamp: (pos.timestamp || Date.now()) / 1000,
          },
        }),
      (err) => finish({ location: null, status: err.code === 1 ? "denied" : err.code === 3 ? "timeout" : "unavailable" }),
      { enableHighAccuracy: highAccuracy, timeout: timeoutMs, maximumAge: maximumAgeMs },
    );
  });
}

// ------------------------------------------------------------------------------------------------ the client
const CLOSE_UNAUTHORIZED = 4401;
const DISCONNECTED_DEBOUNCE_MS = 1000; // connectionState "disconnected" this long: set the media up again
const NETWORK_CHANGE_DEBOUNCE_MS = 300; // the browser's online / connection change events come in bursts
const RESTART_RESUME_MS = 90000; // how long a caller kept across a gateway restart keeps trying to resume
const FINAL_ERRORS = new Set(["invalid_token", "token_expired", "resume_failed", "not_authenticated"]);
// A peer connection prepared ahead of the click (see prepare) is made afresh after this long: its candidates and its
// TURN credentials may be stale by then (a network change is noticed by the browser's events sooner).
const PREPARED_MAX_AGE_MS = 120000;

export class CallinClient extends EventTarget {
  #signal = null;
  #getToken;
  #token = null;
  #welcome = null;
  #pc = null;
  #audioTx = null;
  #videoTx = null;
  #camera = null; // the live camera track, if any
  #screen = null; // the live screen track, if any
  #mic = null;
  #pendingCandidates = [];
  #candidatesGathered = 0;
  #offerSent = false;
  #pingTimer = null;
  #closing = false;
  #reconnecting = false;
  #connectPromise = null;
  #answeredAt = null;
  #auxTx = null;
  #early = []; // events about a call that arrived before the call.start response named it
  #lastSeq = 0; // the seq of the last event processed: sent as hello.last_seq on resume, so nothing is lost
  #shutdown = null; // the gateway said it is stopping: no resume, unless it said this call is kept (resume: true)
  #recovering = false; // a media recovery runs (a new peer connection for the same call)
  #recoverAgain = null; // a newer cause while one runs: one more offer after it
  #recoveries = 0;
  #disconnectTimer = null; // connectionState "disconnected": recover if it does not come back by itself
  #mediaWatch = null; // while a peer connection is the call's: notices one closed or failed without an event
  #networkWatch = null; // the browser's online / connection change listeners
  #prepareAhead = true; // make the next call's peer connection before the click (constructor option prepare)
  #prepared = null; // that peer connection: {pc, audioTx, videoTx, auxTx, offered, ...} (see prepare)
  #prepareTimer = null; // renews the prepared peer connection when it gets old
  #prepareWatch = null; // the browser's network change listeners while one is prepared
  #permissions = null; // {microphone, camera}: live PermissionStatus objects, null where the browser cannot say
  #mediaEpoch = 0; // bumped when a call's media is torn down: devices that come up later are stopped, not used
  #locationWaiters = []; // sendLocation() while call.start is on its way: sent once the call has its id

  /**
   * @param {object} options
   * @param {string} [options.gateway] the gateway's base URL (default: where this module was loaded from)
   * @param {() => Promise<string>|string} [options.getToken] returns a caller token signed by your backend
   * @param {string} [options.token] a token, instead of getToken
   * @param {boolean} [options.prepare] make the next call's peer connection ahead of the click (default true; see
   *   prepare())
   */
  constructor({ gateway, getToken, token, prepare = true } = {}) {
    super();
    this.#prepareAhead = prepare !== false;
    this.gateway = (gateway || gatewayOrigin(import.meta.url)).replace(/\/+$/, "");
    if (!getToken && !token) throw new CallinError("config_error", "CallinClient needs getToken or token");
    this.#getToken = getToken || (async () => token);
    this.state = "idle";
    this.callId = null;
    this.callType = null;
    this.agentName = null;
    this.queue = null;
    this.identity = null;
    this.muted = false;
    this.videoSource = null;
    this.localStream = new MediaStream();
    this.remoteStream = new MediaStream();
    this.lastEnd = null;
    this.held = false;
    this.transferring = false;
    this.closedNotice = null;
    this.callback = null; // {position} after callback.accepted; {ready: {...}} after callback.ready
    this.agentReconnecting = false; // the agent's console lost its connection (participant.reconnecting)
    this.ringingAgent = null; // the agent the waiting call rings at now (call.ringing), or null
    this.barging = []; // names of the supervisors speaking in the call now (call.barge)
    this.recording = null; // the call's recording: {callId, state, policy, consent} (recording.state)
    this.transcribed = false; // the call is transcribed (transcript.notice)
  }

  /** How long the gateway keeps a call whose socket dropped (welcome.resume_grace_s), in seconds. */
  get resumeGraceS() {
    return this.#welcome?.resume_grace_s ?? 30;
  }

  /** The seq of the last event processed on this session (0: none yet). */
  get lastSeq() {
    return this.#lastSeq;
  }

  get reconnecting() {
    return this.#reconnecting;
  }

  get peerConnection() {
    return this.#pc;
  }

  get cameraOn() {
    return this.videoSource === "camera";
  }

  get answeredAt() {
    return this.#answeredAt;
  }

  #emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.#emit("statechange", { state, previous });
    if (state === "ready" || state === "ended") this.prepare(); // the next call's peer connection, ahead of its click
  }

  #fail(error, fatal = true) {
    this.#emit("error", { error, fatal });
  }

  async #fetchToken() {
    let token;
    try {
      token = await this.#getToken();
    } catch (err) {
      throw new CallinError("token_unavailable", `could not get a caller token: ${err?.message ?? err}`, { retryable: true });
    }
    if (token && typeof token === "object") token = token.token;
    if (typeof token !== "string" || !token) throw new CallinError("token_unavailable", "getToken returned no token");
    this.#token = token;
    return token;
  }

  /** Get a token, open the caller WebSocket and say hello. Safe to call again (returns the same promise). */
  connect() {
    if (this.#signal?.open && this.#welcome) return Promise.resolve(this.#welcome);
    if (!this.#connectPromise) {
      this.#closing = false;
      this.#connectPromise = this.#connect().finally(() => {
        this.#connectPromise = null;
      });
    }
    return this.#connectPromise;
  }

  async #connect() {
    const quiet = this.state === "starting"; // connecting as part of startCall: keep its state
    if (!quiet) this.#setState("connecting");
    try {
      const token = this.#token ?? (await this.#fetchToken());
      let welcome;
      try {
        welcome = await this.#hello(token, null);
      } catch (err) {
        if (err.code !== "token_expired") throw err;
        welcome = await this.#hello(await this.#fetchToken(), null); // a cached token ran out: one fresh try
      }
      if (!quiet) this.#setState("ready");
      return welcome;
    } catch (err) {
      if (!quiet) this.#setState("idle");
      throw err;
    }
  }

  async #hello(token, resumeToken) {
    const signal = new Signaling(webSocketUrl(this.gateway, "/ws/caller"));
    await signal.connect();
    const hello = { type: "hello", token };
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
    if (!resumeToken) this.#lastSeq = 0; // a new session numbers its events from 1
    this.#shutdown = null;
    this.#adopt(signal);
    this.#welcome = welcome;
    this.identity = welcome.caller ?? null;
    return welcome;
  }

  #adopt(signal) {
    const old = this.#signal;
    this.#signal = signal;
    if (old && old !== signal) old.close();
    signal.addEventListener("message", (e) => this.#onEvent(e.detail));
    signal.addEventListener("close", (e) => this.#onSocketClose(signal, e.detail));
    clearInterval(this.#pingTimer);
    this.#pingTimer = setInterval(() => this.#ping(signal), 15000);
  }

  async #ping(signal) {
    if (signal !== this.#signal || !signal.open) return;
    try {
      await signal.request({ type: "ping" }, 8000);
    } catch (err) {
      if (err.code === "timeout" && signal === this.#signal) signal.close(4000, "no pong"); // -> reconnect
    }
  }

  #onSocketClose(signal, { code }) {
    if (signal !== this.#signal) return;
    clearInterval(this.#pingTimer);
    if (this.#closing) return;
    if (this.#shutdown?.resume && ["queued", "callback"].includes(this.state)) {
      // The gateway stopped but kept this caller's place in line: resume once it (or another node) is back.
      const { retryAfterS } = this.#shutdown;
      this.#shutdown = null;
      this.#reconnect({ afterMs: (retryAfterS ?? 1) * 1000, withinMs: RESTART_RESUME_MS });
      return;
    }
    if (this.#shutdown) {
      // The gateway stopped: its sessions are gone, so there is nothing to resume. The call ended (shutdown).
      this.#welcome = null;
      this.#endLocally("shutdown");
      if (this.state === "ready") this.#setState("idle");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      this.#fail(new CallinError("invalid_token", "the gateway refused this session"));
      this.#endLocally("unauthorized");
      return;
    }
    if (["queued", "connected", "starting", "callback"].includes(this.state)) {
      this.#reconnect();
    } else {
      this.#welcome = null;
      if (this.state === "ready") this.#setState("idle");
    }
  }

  /** Get the session (and call) back after the socket dropped, within the gateway's grace period. */
  async #reconnect({ afterMs = 0, withinMs = 0 } = {}) {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    const graceMs = Math.max(5000, (this.#welcome?.resume_grace_s ?? 30) * 1000, withinMs);
    let deadline = performance.now() + graceMs;
    const until = Date.now() + graceMs;
    if (afterMs > 0) await sleep(afterMs);
    const resumeToken = this.#welcome?.resume_token;
    const sessionId = this.#welcome?.session_id;
    let delay = 300;
    let attempt = 0;
    let failure = new CallinError("network_lost", "the connection to the gateway was lost", { retryable: true });
    while (!this.#closing && performance.now() < deadline && resumeToken) {
      attempt += 1;
      this.#emit("reconnecting", { attempt, graceS: Math.round(graceMs / 1000), until });
      try {
        let token = this.#token;
        try {
          await this.#hello(token, resumeToken);
        } catch (err) {
          if (err.code !== "token_expired") throw err;
          token = await this.#fetchToken();
          await this.#hello(token, resumeToken);
        }
        this.#reconnecting = false;
        const call = this.#welcome.call;
        this.#emit("reconnected", { resumed: true, replayed: this.#welcome.replayed ?? 0, complete: this.#welcome.replay_complete !== false });
        if (sessionId && this.#welcome.session_id !== sessionId && call && call.call_id === this.callId && this.#pc) {
          // The session was restored after the gateway restarted (a new session id): the media of the process
          // that stopped is gone, so set it up again with the one that has the call now.
          this.#pc.close();
          this.#pc = null;
          await this.#negotiate();
          return;
        }
        this.#flushCandidates();
        if (!call || call.call_id !== this.callId) {
          // Missed events (e.g. call.ended) arrive right after the welcome; if none ends the call, it is gone.
          setTimeout(() => {
            if (["queued", "connected", "starting"].includes(this.state) && !this.#welcome?.call) {
              this.#endLocally("caller_disconnected");
            }
          }, 1000);
        }
        return;
      } catch (err) {
        if (err.code && FINAL_ERRORS.has(err.code)) {
          failure = err;
          break;
        }
        if (err.code === "resume_pending") {
          // This node restarted and takes the call over from the one that stopped in a few seconds: wait for it.
          const retryMs = (err.detail?.retry_after_s ?? 3) * 1000;
          deadline = Math.max(deadline, performance.now() + retryMs + 10000);
          await sleep(Math.min(retryMs, 5000));
          continue;
        }
      }
      await sleep(Math.min(delay, Math.max(0, deadline - performance.now())));
      delay = Math.min(delay * 2, 3000);
    }
    this.#reconnecting = false;
    if (this.#closing) return;
    const ended = failure.code === "resume_failed" ? failure.detail?.call : null;
    if (ended && ended.call_id === this.callId) {
      // The gateway says how the call ended while this client was away (e.g. the agent hung up).
      this.#finishCall({ reason: ended.reason, by: ended.by, durationS: null });
      return;
    }
    this.#fail(failure.code === "resume_failed" ? new CallinError("network_lost", "the call was lost while offline", { detail: failure.detail }) : failure);
    this.#endLocally("connection_lost");
  }

  /** Every event from the gateway: numbered (seq), so a resume asks for exactly what was missed. */
  #onEvent(message) {
    if (typeof message.seq === "number") {
      if (message.seq <= this.#lastSeq) return; // already processed (a replay can overlap what arrived)
      this.#lastSeq = message.seq;
    }
    this.#onMessage(message);
  }

  #onMessage(message) {
    if (message.call_id && !this.callId && this.state === "starting") {
      // The gateway may tell about the new call (queue.closed, callback.offer) before call.queued arrives.
      this.#early.push(message);
      return;
    }
    switch (message.type) {
      case "queue.position":
        if (message.call_id !== this.callId) return;
        this.#setQueue(message);
        break;
      case "call.answered": {
        if (message.call_id !== this.callId) return;
        const transferred = this.state === "connected";
        this.agentName = message.agent_name;
        this.ringingAgent = null;
        this.#answeredAt = Date.now();
        this.transferring = false;
        this.closedNotice = null;
        if (this.held) {
          this.held = false;
          this.#emit("held", { held: false });
        }
        this.#setState("connected");
        this.#emit("answered", { agentName: message.agent_name, callId: message.call_id, transferred });
        break;
      }
      case "call.interrupted":
        if (message.call_id !== this.callId || !message.rejoined_call_id) return;
        this.#rejoinFront(message);
        break;
      case "call.ringing":
        if (message.call_id !== this.callId || this.state !== "queued") return;
        this.ringingAgent = message.ringing ? (message.agent_name ?? null) : null;
        this.#emit("ringing", { ringing: Boolean(message.ringing), agentName: this.ringingAgent });
        break;
      case "call.barge": {
        if (message.call_id !== this.callId) return;
        const name = message.name ?? "A supervisor";
        const at = this.barging.indexOf(name);
        if (message.active && at < 0) this.barging.push(name);
        else if (!message.active && at >= 0) this.barging.splice(at, 1);
        this.#emit("barge", { active: Boolean(message.active), name: message.name ?? null, barging: [...this.barging] });
        break;
      }
      case "recording.state":
        // May come before call.queued's answer (a queue that records tells the caller as soon as the call waits).
        if (this.callId && message.call_id !== this.callId) return;
        this.recording = { callId: message.call_id, state: message.state, policy: message.policy, consent: message.consent };
        this.#emit("recording", { state: message.state, policy: message.policy, consent: message.consent, by: message.by ?? null });
        break;
      case "transcript.notice":
        if (message.call_id !== this.callId) return;
        this.transcribed = Boolean(message.active);
        this.#emit("transcript", { active: this.transcribed, captions: Boolean(message.captions) });
        break;
      case "caption":
        if (message.call_id !== this.callId) return;
        this.#emit("caption", { speaker: message.speaker, utterance: message.utterance, text: String(message.text ?? ""),
                                final: Boolean(message.final) });
        break;
      case "call.held":
        if (message.call_id !== this.callId) return;
        this.held = Boolean(message.held);
        this.#emit("held", { held: this.held });
        break;
      case "call.transferring":
        if (message.call_id !== this.callId) return;
        this.transferring = true;
        this.held = false;
        this.#emit("transferring", { mode: message.mode });
        break;
      case "queue.closed":
        if (message.call_id !== this.callId) return;
        this.closedNotice = {
          reason: message.reason,
          message: message.message,
          queue: message.queue,
          callbackAvailable: Boolean(message.callback_available),
          messageAllowed: Boolean(message.message_allowed),
          opensAt: message.opens_at ?? null,
        };
        this.#emit("closed", { ...this.closedNotice });
        break;
      case "callback.offer":
        if (message.call_id !== this.callId) return;
        this.#emit("callbackoffer", { estimatedWaitS: message.estimated_wait_s ?? null, queue: message.queue });
        break;
      case "callback.ready":
        if (message.call_id !== this.callId) return;
        this.callback = { ...(this.callback ?? {}), ready: { callId: message.call_id, agentName: message.agent_name, rejoinWithinS: message.rejoin_within_s, at: Date.now() } };
        this.#emit("callbackready", { ...this.callback.ready });
        break;
      case "content.pushed":
        if (message.call_id !== this.callId) return;
        this.#emit("content", { content: message.content });
        break;
      case "chat.message":
        if (message.call_id !== this.callId) return;
        this.#emit("chat", { message: message.message });
        break;
      case "call.ended":
        if (message.call_id !== this.callId) return;
        this.#finishCall({ reason: message.reason, by: message.by, durationS: message.duration_s });
        break;
      case "media.state":
        if (message.call_id !== this.callId) return;
        if (message.leg === "caller") {
          this.#emit("gatewaymedia", { state: message.state });
          // The gateway hears nothing from this client, or its side of our peer connection ended: set it up again.
          if (["disconnected", "failed", "closed"].includes(message.state)) this.recoverMedia(`gateway_${message.state}`);
        }
        break;
      case "media.video":
        if (message.leg === "caller") this.#emit("videopaused", { paused: message.state === "paused", reason: message.reason });
        break;
      case "participant.reconnecting":
      case "participant.reconnected":
        if (message.call_id !== this.callId || message.role !== "agent") return;
        this.agentReconnecting = message.type === "participant.reconnecting";
        this.#emit("participant", { state: this.agentReconnecting ? "reconnecting" : "reconnected", role: message.role, name: message.name ?? null, cause: message.cause ?? "socket" });
        break;
      case "shutdown":
        this.#shutdown = { reason: message.reason, retryAfterS: message.retry_after_s, resume: message.resume === true };
        this.#emit("shutdown", { ...this.#shutdown });
        break;
      case "error":
        this.#fail(new CallinError(message.code, message.reason, { retryable: message.retryable }), false);
        break;
      default:
        break;
    }
  }

  /**
   * The call was cut off (the gateway node that held its media died) and the gateway put this caller back at the
   * front of the line in a new call: wait there, with new media (the old peer connection went with that node).
   */
  #rejoinFront(message) {
    this.callId = message.rejoined_call_id;
    this.agentName = null;
    this.ringingAgent = null;
    this.barging = [];
    this.held = false;
    this.transferring = false;
    this.#answeredAt = null;
    this.#setState("queued");
    this.#emit("interrupted", { callId: message.call_id, rejoinedCallId: message.rejoined_call_id, reason: message.reason });
    if (!this.#pc) return; // no media yet (or released): nothing to set up again
    this.#pc.close();
    this.#pc = null;
    this.#negotiate().catch((err) => this.#fail(err instanceof CallinError ? err : new CallinError("media_error", err?.message ?? String(err)), false));
  }

  #setQueue(message) {
    this.queue = {
      position: message.position,
      queueLength: message.queue_length,
      estimatedWaitS: message.estimated_wait_s ?? null,
    };
    this.#emit("queue", { ...this.queue });
  }

  /**
   * Acquire the media for `callType` (call it from a click handler: screen sharing needs the user's gesture).
   * A video call without a usable camera continues as voice (a "devicewarning" event says so).
   */
  async acquireMedia(callType) {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new CallinError("unsupported", "this browser cannot make calls here (a secure https page is needed)");
    }
    let video = null;
    let audio = null;
    let missing = null;
    if (callType === "screen") {
      if (!navigator.mediaDevices.getDisplayMedia) throw new CallinError("unsupported", "this browser cannot share its screen");
      try {
        const display = await navigator.mediaDevices.getDisplayMedia({ video: SCREEN_CONSTRAINTS, audio: false });
        video = display.getVideoTracks()[0];
      } catch (err) {
        throw mediaError(err, "screen");
      }
      try {
        audio = (await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS })).getAudioTracks()[0];
      } catch (err) {
        video.stop();
        throw mediaError(err, "microphone");
      }
    } else if (callType === "video") {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS, video: CAMERA_CONSTRAINTS });
        audio = stream.getAudioTracks()[0];
        video = stream.getVideoTracks()[0];
      } catch (err) {
        const first = mediaError(err, "camera and microphone");
        try {
          audio = (await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS })).getAudioTracks()[0];
        } catch (err2) {
          throw mediaError(err2, "microphone");
        }
        missing = first.code === "permission_denied" ? "camera_blocked" : "camera_unavailable";
        this.#emit("devicewarning", { code: first.code, reason: "the camera is not available: continuing as a voice call", missing });
      }
    } else {
      try {
        audio = (await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS })).getAudioTracks()[0];
      } catch (err) {
        throw mediaError(err, "microphone");
      }
    }
    mark("media");
    return { audio, video, source: video ? (callType === "screen" ? "screen" : "camera") : null, missing };
  }

  /**
   * Start a call: acquire media (unless `media` is given), queue the call, set up the peer connection.
   * Resolves once the call is queued; "answered" follows when an agent picks up.
   * @param {object} options
   * @param {"voice"|"video"|"screen"} options.callType
   * @param {object|null} [options.location] from getDeviceLocation(); null when not shared
   * @param {object} [options.context] {screen, steps: [...], crm: {...}} what the caller was doing in the app
   * @param {object|Promise} [options.media] {audio, video, source} from acquireMedia(), when acquired beforehand; or
   *   acquireMedia()'s promise: when the browser will not ask (startsBeforeMedia), the call starts at once and the
   *   devices join it when they are up (one that then fails ends the call); otherwise the call waits for them
   */
  async startCall({ callType = "voice", location = null, context = {}, media = null } = {}) {
    if (!CALL_TYPES.includes(callType)) throw new CallinError("invalid_message", `unknown call type ${callType}`);
    if (["starting", "queued", "connected"].includes(this.state)) {
      throw new CallinError("call_in_progress", "a call is already in progress");
    }
    this.#setState("starting");
    this.callType = callType;
    this.agentName = null;
    this.queue = null;
    this.lastEnd = null;
    this.#answeredAt = null;
    this.held = false;
    this.transferring = false;
    this.closedNotice = null;
    this.callback = null;
    this.agentReconnecting = false;
    this.ringingAgent = null;
    this.barging = [];
    this.recording = null;
    try {
      // Devices first, unless the browser will not ask for them: then they start while the call does (a refused
      // prompt must never ring an agent, so a call that may prompt waits for the answer).
      const ahead = typeof media?.then === "function" && this.startsBeforeMedia(callType);
      const acquiring = Promise.resolve(media ?? this.acquireMedia(callType));
      let failed = null; // the devices failed before call.start went: no call is made
      acquiring.catch((err) => (failed = err)); // else awaited below
      const [acquired] = await Promise.all([ahead ? null : acquiring, this.connect()]);
      const epoch = this.#mediaEpoch;
      if (acquired) this.#useTracks(acquired);
      if (this.state !== "starting" || this.#closing) throw new CallinError("cancelled", "the call was cancelled");
      const prepared = await this.#takePrepared();
      if (this.state !== "starting" || this.#closing || failed) {
        prepared?.pc.close();
        throw failed ?? new CallinError("cancelled", "the call was cancelled");
      }
      const body = { type: "call.start", call_type: callType, context: cleanContext(context) };
      if (location) body.location = location;
      this.#early = [];
      const queuing = this.#signal.request(body);
      mark("call-start");
      // The offer follows call.start on the same socket, with no round trip between them (the gateway handles a
      // socket's messages in order, and a caller's sdp.offer without call_id is for its current call); a prepared
      // one goes at once. If call.start is refused, its error is the one reported.
      const negotiating = this.#negotiate(prepared);
      negotiating.catch(() => {});
      // Started ahead of the devices: they join the call's transceivers when they are up.
      const joining = ahead ? acquiring.then((got) => this.#joinTracks(got, epoch)) : Promise.resolve(acquired);
      joining.catch(() => {}); // awaited below, once the call has its id (a failure hangs it up)
      const queued = await queuing;
      mark("queued");
      if (this.state !== "starting" || this.#closing) {
        // Hung up while call.start was on its way: the call it made ends too.
        if (this.#signal?.open) this.#signal.send({ type: "call.hangup", id: this.#signal.nextId(), call_id: queued.call_id });
        this.#flushLocation(new CallinError("cancelled", "the call was cancelled"));
        return null;
      }
      this.callId = queued.call_id;
      this.#setQueue(queued);
      if (this.state === "starting") this.#setState("queued");
      this.#flushLocation(null);
      const early = this.#early.filter((m) => m.call_id === queued.call_id);
      this.#early = [];
      for (const m of early) this.#onMessage(m);
      const got = await joining;
      if (got.missing && !got.video) {
        // A video call without its camera: the agent is told so (and why), not "video call".
        this.#signal.send({ type: "media.source", id: this.#signal.nextId(), call_id: this.callId, source: "none", reason: got.missing });
      }
      await negotiating;
      return queued;
    } catch (err) {
      // Hung up (or cancelled) while the call was being set up: not an error.
      if (this.state === "ended" || (this.state === "ready" && !this.callId)) {
        this.#flushLocation(new CallinError("cancelled", "the call was cancelled"));
        return null;
      }
      const error = err instanceof CallinError ? err : new CallinError("media_error", err?.message ?? String(err));
      this.#flushLocation(error);
      if (this.callId && this.#signal?.open) this.#signal.send({ type: "call.hangup", id: this.#signal.nextId(), call_id: this.callId });
      this.#teardownMedia();
      this.callId = null;
      if (this.state !== "idle") this.#setState(this.#signal?.open ? "ready" : "idle");
      throw error;
    }
  }

  /**
   * Whether startCall({media: acquireMedia(...)}) starts the call while the devices start: only when the browser
   * will not ask for them (microphone, and camera for a video call, allowed on this site already); never for screen
   * sharing (the browser always asks which screen). Known once prepare() has run.
   */
  startsBeforeMedia(callType) {
    if (callType === "screen" || !this.#permissions) return false;
    const { microphone, camera } = this.#permissions;
    return microphone?.state === "granted" && (callType !== "video" || camera?.state === "granted");
  }

  /** Devices that came up after the call started: used if the call still wants them, else stopped. */
  async #joinTracks(acquired, epoch) {
    if (epoch !== this.#mediaEpoch || !["starting", "queued", "connected"].includes(this.state)) {
      for (const t of [acquired.audio, acquired.video]) t?.stop();
      throw new CallinError("cancelled", "the call was cancelled");
    }
    this.#useTracks(acquired);
    await this.#attachTracks();
    return acquired;
  }

  /** Put the call's devices on its transceivers (a peer connection prepared ahead was made without them). */
  async #attachTracks() {
    const video = (this.videoSource === "screen" ? this.#screen : this.#camera) ?? null;
    const jobs = [];
    if (this.#audioTx && this.#audioTx.sender.track !== (this.#mic ?? null)) jobs.push(this.#audioTx.sender.replaceTrack(this.#mic ?? null));
    if (this.#videoTx && this.#videoTx.sender.track !== video) jobs.push(this.#videoTx.sender.replaceTrack(video));
    await Promise.all(jobs);
  }

  // -------------------------------------------------------------------------------------------- prepared ahead
  /**
   * Make the next call's peer connection ahead of the click: its transceivers, its offer and its ICE candidates,
   * with no device (no camera light, no permission prompt) and nothing sent to the gateway. The click then sends
   * call.start and this offer at once. Done by itself whenever the client becomes ready (connected, or a call
   * ended), unless the constructor's `prepare` is false; made afresh when the browser's network changes and after
   * two minutes. Resolves true once an offer is ready; never rejects.
   */
  prepare() {
    if (!this.#mayPrepare()) return Promise.resolve(false);
    const current = this.#prepared;
    if (current && (current.pending || this.#usable(current))) return current.offered;
    this.#dropPrepared();
    const slot = { pending: true, dropped: false, pc: null, offered: null };
    this.#prepared = slot;
    slot.offered = this.#makePrepared(slot);
    return slot.offered;
  }

  #mayPrepare() {
    return this.#prepareAhead && !this.#closing && ["ready", "ended"].includes(this.state) && Boolean(this.#signal?.open)
      && Boolean(this.#welcome) && typeof RTCPeerConnection !== "undefined";
  }

  async #makePrepared(slot) {
    try {
      await this.#queryPermissions();
      if (slot.dropped) return false;
      slot.permissions = this.#permissionKey();
      this.#newPeer(null, null, slot);
      await slot.pc.setLocalDescription(await slot.pc.createOffer());
      if (slot.dropped) return false;
      slot.pending = false;
      mark("prepared");
      if (this.#prepared === slot) this.#watchPrepared(slot);
      return true;
    } catch {
      slot.pc?.close();
      if (this.#prepared === slot) this.#prepared = null;
      return false;
    } finally {
      slot.pending = false;
    }
  }

  /** Whether a prepared peer connection can still carry a call: unused, fresh, made for today's ICE settings. */
  #usable(peer) {
    return !peer.pending && !peer.dropped && peer.pc?.signalingState === "have-local-offer"
      && !["failed", "closed"].includes(peer.pc.connectionState) && performance.now() - peer.made < PREPARED_MAX_AGE_MS
      && peer.iceKey === JSON.stringify(this.#iceConfig()) && peer.permissions === this.#permissionKey();
  }

  /** The prepared peer connection for a call starting now, if usable (else closed: the call makes its own). */
  async #takePrepared() {
    const peer = this.#prepared;
    this.#prepared = null;
    this.#stopPrepareWatch();
    if (!peer) return null;
    const offered = await peer.offered;
    if (offered && this.#usable(peer)) return peer;
    peer.dropped = true;
    peer.pc?.close();
    return null;
  }

  #dropPrepared() {
    const peer = this.#prepared;
    this.#prepared = null;
    this.#stopPrepareWatch();
    if (peer) {
      peer.dropped = true;
      peer.pc?.close();
    }
  }

  /** Renew the prepared peer connection when it gets old or the browser's network changes. */
  #watchPrepared(slot) {
    this.#stopPrepareWatch();
    const renew = () => {
      if (this.#prepared !== slot) return;
      this.#dropPrepared();
      this.prepare();
    };
    this.#prepareTimer = setTimeout(renew, PREPARED_MAX_AGE_MS);
    if (typeof window !== "undefined") {
      window.addEventListener("online", renew);
      navigator.connection?.addEventListener?.("change", renew);
      this.#prepareWatch = () => {
        window.removeEventListener("online", renew);
        navigator.connection?.removeEventListener?.("change", renew);
      };
    }
  }

  #stopPrepareWatch() {
    clearTimeout(this.#prepareTimer);
    this.#prepareTimer = null;
    this.#prepareWatch?.();
    this.#prepareWatch = null;
  }

  /** The site's camera and microphone permissions, as live PermissionStatus objects (asked once). */
  async #queryPermissions() {
    if (this.#permissions) return;
    const query = async (name) => {
      try {
        return await navigator.permissions.query({ name });
      } catch {
        return null; // a browser that cannot say (e.g. no "camera" permission name)
      }
    };
    const [microphone, camera] = globalThis.navigator?.permissions?.query ? await Promise.all([query("microphone"), query("camera")]) : [null, null];
    this.#permissions = { microphone, camera };
  }

  /** A browser shows its local addresses to a peer connection only once the devices are allowed: a peer connection
   * prepared under other permissions than now is not used. */
  #permissionKey() {
    const p = this.#permissions;
    return `${p?.microphone?.state ?? "?"}/${p?.camera?.state ?? "?"}`;
  }

  #iceConfig() {
    return {
      iceServers: iceServersFrom(this.#welcome?.ice_servers),
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.#welcome?.ice_transport_policy === "relay" ? "relay" : "all",
    };
  }

  #useTracks({ audio, video, source }) {
    this.#mic = audio ?? null;
    if (source === "screen") this.#screen = video;
    else if (video) this.#camera = video;
    for (const t of this.localStream.getTracks()) this.localStream.removeTrack(t);
    if (audio) {
      audio.enabled = !this.muted;
      this.localStream.addTrack(audio);
    }
    if (video) {
      this.#watchVideoEnd(video, source);
      if (source === "screen") video.contentHint = "detail";
      this.localStream.addTrack(video);
    }
    this.videoSource = video ? source : null;
    this.#emit("localstream", { stream: this.localStream });
    this.#emit("videosource", { source: this.videoSource });
  }

  /**
   * A new peer connection with the call's transceivers (`audio`, `video`: the tracks to send, or none yet). Its
   * events count once it is the call's (this.#pc): the candidates it gathered before (prepared ahead) are in its
   * offer. `into`: the object to fill (a prepared slot), else a new one.
   */
  #newPeer(audio = null, video = null, into = {}) {
    const config = this.#iceConfig();
    const pc = new RTCPeerConnection(config);
    const streams = [this.localStream];
    // Audio and video both sendrecv: the agent's voice comes back, and the agent may turn a camera on. A
    // voice call gets a video transceiver too, so the caller can share the camera or screen later by
    // replaceTrack (the gateway does not renegotiate).
    const audioTx = pc.addTransceiver(audio ?? "audio", { direction: "sendrecv", streams });
    const videoTx = pc.addTransceiver(video ?? "video", { direction: "sendrecv", streams });
    preferCodec(videoTx, "video/VP8");
    // A second audio section, receive only: a supervisor who barges in is heard on it (never mixed).
    const auxTx = pc.addTransceiver("audio", { direction: "recvonly" });
    const peer = Object.assign(into, { pc, audioTx, videoTx, auxTx, iceKey: JSON.stringify(config), made: performance.now() });
    pc.addEventListener("icecandidate", (e) => {
      if (pc === this.#pc) this.#sendCandidate(e.candidate);
    });
    pc.addEventListener("track", (e) => {
      if (pc !== this.#pc) return;
      if (e.transceiver === auxTx) {
        this.#emit("remotetrack", { track: e.track, stream: new MediaStream([e.track]), slot: "aux" });
        return;
      }
      this.remoteStream.addTrack(e.track);
      this.#emit("remotetrack", { track: e.track, stream: this.remoteStream, slot: "main" });
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc === this.#pc && ["connected", "completed"].includes(pc.iceConnectionState)) mark("ice-connected");
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.#pc) return;
      if (pc.connectionState === "connected") mark("connected");
      this.#emit("mediastate", { state: pc.connectionState });
      this.#onConnectionState(pc);
    });
    return peer;
  }

  /**
   * The call's peer connection and its offer: the one prepared ahead if given (its offer is ready: it goes at once,
   * and the devices join its transceivers meanwhile), else a new one. One already there (a media recovery) stays
   * until the new one is answered, then is closed: if the gateway refuses the offer, it still has the old leg.
   */
  async #negotiate(prepared = null) {
    const peer = prepared ?? this.#newPeer(this.#mic, this.videoSource === "screen" ? this.#screen : this.#camera);
    const { pc } = peer;
    const previous = this.#pc;
    this.#pc = pc;
    this.#offerSent = false;
    this.#pendingCandidates = [];
    // Candidates gathered before the offer are in it (prepared ahead). Only trickled ones count for end-of-candidates:
    // an older gateway did not read an offer's own candidates (aiortc drops them when two sections share a
    // transport), and an end-of-candidates after none would fail its leg at once.
    this.#candidatesGathered = 0;
    [this.#audioTx, this.#videoTx, this.#auxTx] = [peer.audioTx, peer.videoTx, peer.auxTx];
    try {
      if (!prepared) await pc.setLocalDescription(await pc.createOffer());
      const attaching = prepared ? this.#attachTracks() : null;
      const offering = this.#signal.request({ type: "sdp.offer", call_id: this.callId ?? undefined, sdp: pc.localDescription.sdp });
      mark("offer-sent");
      const answer = await offering;
      mark("answer");
      this.#offerSent = true;
      this.#flushCandidates();
      await attaching;
      if (pc.signalingState === "closed") return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      if (previous && this.#pc === pc) {
        // The gateway keeps the old leg: so does this client, until the next try.
        pc.close();
        this.#pc = previous;
        const [a, v, x] = previous.getTransceivers();
        [this.#audioTx, this.#videoTx, this.#auxTx] = [a, v, x];
        this.#offerSent = true;
      }
      throw err;
    }
    if (previous) {
      for (const receiver of previous.getReceivers()) {
        if (receiver.track) this.remoteStream.removeTrack(receiver.track);
      }
      previous.close();
    }
    this.#watchMedia();
  }

  /** connectionState: "failed" recovers at once; "disconnected" after a short wait (it often comes back). */
  #onConnectionState(pc) {
    clearTimeout(this.#disconnectTimer);
    if (pc.connectionState === "failed") this.recoverMedia("ice_failed");
    else if (pc.connectionState === "disconnected") {
      this.#disconnectTimer = setTimeout(() => {
        if (pc === this.#pc && pc.connectionState === "disconnected") this.recoverMedia("ice_disconnected");
      }, DISCONNECTED_DEBOUNCE_MS);
    }
  }

  /** While in a call: a peer connection closed or failed without an event, and the browser's network events. */
  #watchMedia() {
    if (!this.#mediaWatch) {
      this.#mediaWatch = setInterval(() => {
        const pc = this.#pc;
        if (pc && ["closed", "failed"].includes(pc.connectionState)) this.recoverMedia(pc.connectionState);
      }, 1000);
    }
    if (!this.#networkWatch && typeof window !== "undefined") {
      let timer = null;
      const changed = (cause) => {
        clearTimeout(timer);
        timer = setTimeout(() => this.recoverMedia(cause), NETWORK_CHANGE_DEBOUNCE_MS);
      };
      const online = () => changed("online");
      const connection = () => changed("network_changed");
      window.addEventListener("online", online);
      navigator.connection?.addEventListener?.("change", connection);
      this.#networkWatch = () => {
        clearTimeout(timer);
        window.removeEventListener("online", online);
        navigator.connection?.removeEventListener?.("change", connection);
      };
    }
  }

  #unwatchMedia() {
    clearInterval(this.#mediaWatch);
    this.#mediaWatch = null;
    clearTimeout(this.#disconnectTimer);
    this.#networkWatch?.();
    this.#networkWatch = null;
  }

  /**
   * Set the call's media up again with a new peer connection, in the same call (docs/protocol.md, "Media
   * recovery"): the client does it by itself when its peer connection fails, stays disconnected, closes, when the
   * gateway hears nothing from it, and on the browser's network events; call it when your app knows better.
   */
  async recoverMedia(cause = "requested") {
    if (!this.callId || !["queued", "connected"].includes(this.state) || !this.#pc || this.#closing) return false;
    if (this.#recovering) {
      this.#recoverAgain = cause;
      return false;
    }
    this.#recovering = true;
    const callId = this.callId;
    let stale = this.#pc;
    let delay = 500;
    try {
      while (this.callId === callId && ["queued", "connected"].includes(this.state) && !this.#closing) {
        this.#recoverAgain = null;
        if (this.#reconnecting || !this.#signal?.open) {
          await sleep(250); // the socket is being resumed: offer once it is back
          continue;
        }
        if (this.#pc !== stale) return true; // set up again meanwhile (a resume after a gateway restart)
        this.#recoveries += 1;
        const started = performance.now();
        this.#emit("mediarecovering", { cause, attempt: this.#recoveries });
        try {
          await this.#negotiate();
        } catch (err) {
          if (["call_ended", "unknown_call"].includes(err.code)) return false;
          await sleep(delay);
          delay = Math.min(delay * 2, 4000);
          continue;
        }
        this.#emit("mediarecovered", { cause, ms: Math.round(performance.now() - started) });
        stale = this.#pc;
        if (!this.#recoverAgain) return true;
        cause = this.#recoverAgain;
      }
      return false;
    } finally {
      this.#recovering = false;
    }
  }

  #sendCandidate(candidate) {
    const message = candidateMessage(candidate, this.callId);
    if (!message) return;
    if (message.candidate) this.#candidatesGathered += 1;
    else if (!this.#candidatesGathered) return; // see candidateMessage
    if (!this.#offerSent || !this.#signal?.open) {
      this.#pendingCandidates.push(message);
      return;
    }
    this.#signal.send({ ...message, id: this.#signal.nextId() });
  }

  #flushCandidates() {
    if (!this.#offerSent || !this.#signal?.open) return;
    const queued = this.#pendingCandidates;
    this.#pendingCandidates = [];
    for (const message of queued) this.#signal.send({ ...message, id: this.#signal.nextId() });
  }

  #watchVideoEnd(track, source) {
    track.addEventListener("ended", () => {
      // The user stopped sharing from the browser's own bar (or the camera went away).
      if (source === "screen" && this.#screen === track) {
        this.#screen = null;
        if (this.videoSource === "screen") this.#replaceVideo(null, null);
      } else if (source === "camera" && this.#camera === track) {
        this.#camera = null;
        if (this.videoSource === "camera") this.#replaceVideo(null, null);
      }
    });
  }

  async #replaceVideo(track, source) {
    const previous = this.localStream.getVideoTracks();
    if (this.#videoTx) await this.#videoTx.sender.replaceTrack(track);
    for (const t of previous) this.localStream.removeTrack(t);
    if (track) this.localStream.addTrack(track);
    this.videoSource = track ? source : null;
    this.#emit("localstream", { stream: this.localStream });
    this.#emit("videosource", { source: this.videoSource });
    // Tell the agent what it now sees (protocol: media.source; the gateway does not look at the media).
    if (this.callId && this.#signal?.open) {
      this.#signal.send({ type: "media.source", id: this.#signal.nextId(), call_id: this.callId, source: this.videoSource ?? "none" });
    }
  }

  /** Mute or unmute the microphone (the track keeps running: unmuting is instant). */
  setMuted(muted) {
    this.muted = Boolean(muted);
    if (this.#mic) this.#mic.enabled = !this.muted;
    this.#emit("mute", { muted: this.muted });
  }

  /** Show the camera (replacing a screen share), without a new call or renegotiation. */
  async useCamera() {
    if (!this.#camera || this.#camera.readyState === "ended") {
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: CAMERA_CONSTRAINTS });
      } catch (err) {
        throw mediaError(err, "camera");
      }
      this.#camera = stream.getVideoTracks()[0];
      this.#watchVideoEnd(this.#camera, "camera");
    }
    await this.#replaceVideo(this.#camera, "camera");
    this.#stopScreen();
  }

  /** Turn the camera off (the light goes off; the agent sees that video stopped). */
  async cameraOff() {
    const camera = this.#camera;
    this.#camera = null;
    if (this.videoSource === "camera") await this.#replaceVideo(null, null);
    camera?.stop();
  }

  async setCamera(on) {
    return on ? this.useCamera() : this.cameraOff();
  }

  /** Share the screen instead of the camera (call from a click handler), without a new call. */
  async shareScreen() {
    if (!navigator.mediaDevices?.getDisplayMedia) throw new CallinError("unsupported", "this browser cannot share its screen");
    let track;
    try {
      track = (await navigator.mediaDevices.getDisplayMedia({ video: SCREEN_CONSTRAINTS, audio: false })).getVideoTracks()[0];
    } catch (err) {
      throw mediaError(err, "screen");
    }
    track.contentHint = "detail";
    this.#stopScreen();
    this.#screen = track;
    this.#watchVideoEnd(track, "screen");
    await this.#replaceVideo(track, "screen");
    const camera = this.#camera;
    this.#camera = null;
    camera?.stop();
  }

  /** Stop sharing the screen (video off). */
  async stopScreen() {
    if (this.videoSource === "screen") await this.#replaceVideo(null, null);
    this.#stopScreen();
  }

  #stopScreen() {
    const screen = this.#screen;
    this.#screen = null;
    if (screen && this.localStream.getVideoTracks()[0] !== screen) screen.stop();
  }

  // -------------------------------------------------------------------------------------------- queues and callbacks
  /**
   * Keep my place and stop waiting on the line: the media is released and "callback" is the state. When an agent
   * takes the call, "callbackready" arrives (or your backend gets the webhook call.callback_ready): rejoin().
   * @param {object} [options] {phone}: a number the team may call instead (kept with the record)
   */
  async requestCallback({ phone = null } = {}) {
    if (!this.callId || !["queued", "connected"].includes(this.state)) throw new CallinError("not_queued", "there is no waiting call");
    const body = { type: "callback.request", call_id: this.callId };
    if (phone) body.phone = phone;
    const accepted = await this.#signal.request(body);
    this.callback = { position: accepted.position ?? null };
    this.#teardownMedia();
    this.#setState("callback");
    this.#emit("callbackaccepted", { position: accepted.position ?? null, callId: this.callId });
    return accepted;
  }

  /**
   * Answer the question of a "recording" event with state "asking": true lets the call be recorded, false declines
   * (nothing of this call is recorded).
   */
  async recordingConsent(accept) {
    const callId = this.callId ?? this.recording?.callId;
    if (!callId || this.recording?.state !== "asking") throw new CallinError("consent_not_asked", "nobody asked about recording");
    return this.#signal.request({ type: "recording.consent", call_id: callId, accept: Boolean(accept) });
  }

  /** After a "closed" event: leave a message for the team instead of waiting. Ends the call (reason message_left). */
  async leaveMessage(text) {
    const body = String(text ?? "").trim();
    if (!body) throw new CallinError("empty_message", "write a message first");
    if (!this.callId) throw new CallinError("not_queued", "there is no waiting call");
    await this.#signal.request({ type: "message.leave", call_id: this.callId, text: body.slice(0, 2000) });
  }

  /**
   * Take a callback's call back (after "callbackready"; or with the callId your app was notified of, from a new
   * page): acquires media (call it from a click), sends call.rejoin, then connects the media with the agent.
   */
  async rejoin({ callId = this.callId, callType = this.callType || "voice", media = null } = {}) {
    if (!callId) throw new CallinError("callback_not_ready", "no call to rejoin");
    this.#setState("starting");
    this.callType = callType;
    try {
      const [acquired] = await Promise.all([media ?? this.acquireMedia(callType), this.connect()]);
      this.#useTracks(acquired);
      const rejoined = await this.#signal.request({ type: "call.rejoin", call_id: callId });
      this.callId = rejoined.call_id;
      this.agentName = rejoined.agent_name ?? this.agentName;
      this.callback = null;
      this.closedNotice = null;
      this.#answeredAt = Date.now();
      await this.#negotiate();
      this.#setState(rejoined.state === "connected" ? "connected" : "queued");
      this.#emit("rejoined", { callId: rejoined.call_id, agentName: this.agentName });
      if (rejoined.state === "connected") this.#emit("answered", { agentName: this.agentName, callId: rejoined.call_id, rejoined: true });
      return rejoined;
    } catch (err) {
      this.#teardownMedia();
      this.#setState(this.callback ? "callback" : this.#signal?.open ? "ready" : "idle");
      throw err instanceof CallinError ? err : new CallinError("media_error", err?.message ?? String(err));
    }
  }

  // -------------------------------------------------------------------------------------------- location
  /**
   * Send the device's location for the current call, after startCall (call.location): for a location that comes
   * later than the click (getDeviceLocation() waits for the user's consent and the device, seconds on a phone).
   * Called while startCall is still on its way, it is sent as soon as the call has its id. Once per call: the
   * gateway refuses a second one (location_already_set), as it does a call that started with a location.
   * Resolves with the gateway's ack; rejects with a CallinError (call_ended, location_already_set, no_call, ...).
   * @param {object} location {lat, lon, accuracy_m, timestamp}, as getDeviceLocation() gives it
   */
  sendLocation(location) {
    if (!location) return Promise.reject(new CallinError("invalid_message", "no location to send"));
    if (this.state === "starting" && !this.callId) {
      return new Promise((resolve, reject) => this.#locationWaiters.push({ location, resolve, reject }));
    }
    if (!this.callId || !["queued", "connected"].includes(this.state) || !this.#signal?.open) {
      return Promise.reject(new CallinError("no_call", "there is no call to send the location with"));
    }
    const { lat, lon, accuracy_m, timestamp } = location;
    const sending = this.#signal.request({ type: "call.location", call_id: this.callId, location: { lat, lon, accuracy_m, timestamp } });
    mark("location");
    return sending;
  }

  /** startCall is done: send the locations it was given meanwhile (or tell their senders why not). */
  #flushLocation(error) {
    const waiters = this.#locationWaiters;
    this.#locationWaiters = [];
    for (const w of waiters) {
      if (error) w.reject(error);
      else this.sendLocation(w.location).then(w.resolve, w.reject);
    }
  }

  // -------------------------------------------------------------------------------------------- chat, files, content
  /** Send a chat line and/or a file (a Blob/File, uploaded first) to everyone in the call. */
  async sendChat({ text = null, file = null, name = null } = {}) {
    if (!this.callId) throw new CallinError("not_connected", "there is no call");
    const line = text != null ? String(text).trim().slice(0, 2000) : "";
    let attachment = null;
    if (file) attachment = await this.uploadAttachment(file, name ?? file.name ?? "file");
    if (!line && !attachment) throw new CallinError("empty_message", "write a message or attach a file");
    const body = { type: "chat.send", call_id: this.callId };
    if (line) body.text = line;
    if (attachment) body.attachment_id = attachment.id;
    await this.#signal.request(body);
    return attachment;
  }

  /** Upload a file to the call (POST /api/v1/calls/{id}/attachments, authenticated with the caller token). */
  async uploadAttachment(blob, name = "file") {
    if (!this.callId) throw new CallinError("not_connected", "there is no call");
    const url = `${this.gateway}/api/v1/calls/${encodeURIComponent(this.callId)}/attachments?name=${encodeURIComponent(name)}`;
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.#token}`, "Content-Type": "application/octet-stream" },
        body: blob,
      });
    } catch {
      throw new CallinError("network_error", "the file could not be sent", { retryable: true });
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 413) throw new CallinError("attachment_too_large", "the file is too large");
      throw new CallinError(body.code || "upload_failed", body.reason || `the upload failed (${response.status})`);
    }
    return body;
  }

  /** A call's file as a Blob (attachment URLs need the caller token, so an <img> cannot load them by itself). */
  async fetchAttachment(url) {
    const response = await fetch(new URL(url, this.gateway).href, { headers: { Authorization: `Bearer ${this.#token}` } });
    if (!response.ok) throw new CallinError("unknown_attachment", `the file could not be loaded (${response.status})`);
    return response.blob();
  }

  /** Tell the agent what became of pushed content: "seen", "opened" or "dismissed". */
  reportContent(contentId, status) {
    if (!this.callId || !this.#signal?.open) return Promise.resolve(null);
    return this.#signal.request({ type: "content.status", call_id: this.callId, content_id: contentId, status }).catch(() => null);
  }

  /** Hang up (or cancel while queued). */
  async hangup() {
    if (this.state === "starting" && !this.callId) {
      this.#setState("ready");
      this.#teardownMedia();
      return;
    }
    if (!this.callId || !["queued", "connected", "starting", "callback"].includes(this.state)) return;
    const callId = this.callId;
    const duration = this.#answeredAt ? (Date.now() - this.#answeredAt) / 1000 : null;
    try {
      await this.#signal?.request({ type: "call.hangup", call_id: callId }, 5000);
    } catch (err) {
      if (err.code !== "call_ended" && err.code !== "unknown_call") this.#fail(err, false);
    }
    if (this.callId === callId) this.#finishCall({ reason: "caller_hangup", by: "caller", durationS: duration });
  }

  #finishCall(detail) {
    const callId = this.callId;
    this.#teardownMedia();
    this.callId = null;
    this.lastEnd = { ...detail, callId };
    this.#setState("ended");
    this.#emit("ended", this.lastEnd);
  }

  #endLocally(reason) {
    if (!this.callId && !["queued", "connected", "starting"].includes(this.state)) return;
    const duration = this.#answeredAt ? (Date.now() - this.#answeredAt) / 1000 : null;
    this.#finishCall({ reason, by: "system", durationS: duration });
  }

  #teardownMedia() {
    this.#mediaEpoch += 1;
    this.#unwatchMedia();
    if (this.#pc) {
      this.#pc.close();
      this.#pc = null;
    }
    this.#audioTx = this.#videoTx = this.#auxTx = null;
    for (const t of [this.#mic, this.#camera, this.#screen]) t?.stop();
    this.#mic = this.#camera = this.#screen = null;
    for (const t of this.localStream.getTracks()) this.localStream.removeTrack(t);
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
    this.remoteStream = new MediaStream();
    this.videoSource = null;
    this.#offerSent = false;
    this.#pendingCandidates = [];
  }

  /** A summary of the call's media (see summarizeStats); null without a call. */
  async getStats(previous = null) {
    return this.#pc ? summarizeStats(this.#pc, previous) : null;
  }

  /** Hang up if needed, say goodbye (no resume) and close the socket. */
  async close() {
    if (["queued", "connected"].includes(this.state)) await this.hangup();
    this.#closing = true;
    this.#dropPrepared();
    clearInterval(this.#pingTimer);
    const signal = this.#signal;
    this.#signal = null;
    this.#welcome = null;
    if (signal?.open) {
      try {
        await signal.request({ type: "bye" }, 2000);
      } catch {
        /* closing anyway */
      }
      signal.close();
    }
    this.#teardownMedia();
    this.#setState("idle");
  }
}

/** Drop what the gateway would refuse: unknown keys, over-long strings, nested CRM values. */
export function cleanContext(context) {
  const out = {};
  if (!context || typeof context !== "object") return out;
  if (typeof context.screen === "string" && context.screen) out.screen = context.screen.slice(0, 256);
  if (Array.isArray(context.steps)) out.steps = context.steps.slice(-50).map((s) => String(s).slice(0, 256));
  if (context.crm && typeof context.crm === "object") {
    out.crm = {};
    for (const [key, value] of Object.entries(context.crm).slice(0, 64)) {
      if (!key || key.length > 64) continue;
      if (value === null || ["number", "boolean"].includes(typeof value)) out.crm[key] = value;
      else out.crm[key] = String(value).slice(0, 1024);
    }
  }
  return out;
}
