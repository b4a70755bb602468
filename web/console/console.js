/**
 * The Callin agent console: sign in, availability, ringing with the caller's card, and the call itself.
 * Plain ES module, no framework. Shares the protocol helpers with the caller's client module.
 */

import { AUDIO_CONSTRAINTS, CallinError, candidateMessage, iceServersFrom, preferCodec, summarizeStats } from "../caller/callin-client.js";
import { CallinAgentSession, SESSION_ENDED, agentSocketUrl, offerCallMedia } from "../caller/callin-agent.js";
import { icon } from "../caller/icons.js";

// The session token lives only in the HttpOnly session cookie: no script (ours or injected) can read it.
const AUTO_ANSWER_KEY = "callin.agent.autoAnswer";
const SOUND_KEY = "callin.agent.sound";
const DEVICE_KEYS = { mic: "callin.agent.mic", camera: "callin.agent.camera", speaker: "callin.agent.speaker" };
const DRAFT_PREFIX = "callin.wrapup."; // sessionStorage: an unsaved wrap-up note per call, until it is saved

const $ = (id) => document.getElementById(id);
const escapeHtml = (s) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function initials(name) {
  const parts = String(name || "").replace(/\(.*?\)/g, "").trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return "?";
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function ago(unixSeconds) {
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 5) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function humanize(key) {
  const text = String(key).replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").trim();
  const acronyms = /\b(id|kyc|crm|vip|iban|pin|sms|url|ip)\b/gi;
  return (text.charAt(0).toUpperCase() + text.slice(1)).replace(acronyms, (m) => m.toUpperCase());
}

const CALL_TYPE = {
  voice: { icon: "phone", label: "Voice call" },
  video: { icon: "video", label: "Video call" },
  screen: { icon: "monitor", label: "Screen share" },
};
// What the caller's video sends now (card.media_source, then media.source events), when it is not what its call
// type started with.
const MEDIA_SOURCE = { camera: "camera on", screen: "sharing the screen", none: "no video" };
const NATURAL_SOURCE = { voice: "none", video: "camera", screen: "screen" };

// What the chip says when the caller's video no longer matches the call type it started with.
const SOURCE_CHIP = { camera: { icon: "video", label: "Camera on" }, screen: { icon: "monitor", label: "Sharing the screen" }, none: { icon: "phone", label: "Voice only" } };
// A video call that goes on without the caller's camera (media_source_reason, from the caller's media.source).
const NO_CAMERA = { camera_blocked: "Voice — caller's camera blocked", camera_unavailable: "Voice — caller has no camera" };

function callTypeChip(card) {
  const noCamera = card.media_source === "none" && NO_CAMERA[card.media_source_reason];
  if (noCamera) return `${icon("phone", { size: 13 })}${escapeHtml(noCamera)}`;
  const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
  const source = card.media_source;
  if (source && source !== NATURAL_SOURCE[card.call_type] && SOURCE_CHIP[source]) {
    const now = SOURCE_CHIP[source];
    return `${icon(now.icon, { size: 13 })}${now.label}<small class="chip-was"> · was a ${escapeHtml(type.label.toLowerCase())}</small>`;
  }
  return `${icon(type.icon, { size: 13 })}${type.label}`;
}

const STATUS_TEXT = { available: "Available", away: "Away", ringing: "Ringing", busy: "On a call", wrap_up: "Wrap-up", offline: "Offline" };
const SUPERVISOR_ROLES = new Set(["supervisor", "admin"]);

const END_TEXT = {
  caller_hangup: "The caller hung up",
  agent_hangup: "You hung up",
  caller_disconnected: "The caller's connection was lost",
  agent_disconnected: "Your connection was lost",
  media_failed: "The media connection failed",
  shutdown: "The gateway is shutting down",
  transferred: "You transferred the call",
  consult_ended: "The consult ended",
};

const WITHDRAWN_TEXT = {
  caller_hangup: "The caller hung up before you answered.",
  caller_disconnected: "The caller's connection was lost before you answered.",
  ring_timeout: "The call rang out and went back to the queue.",
  declined: "Call declined.",
};

// ------------------------------------------------------------------------------------------------ ringer
/** A soft two-tone ring made with WebAudio (no audio files). */
class Ringer {
  #ctx = null;
  #timer = null;
  enabled = localStorage.getItem(SOUND_KEY) !== "off";

  onchange = null; // called when the browser allows or blocks the ring sound

  unlock() {
    try {
      if (!this.#ctx) {
        this.#ctx = new AudioContext();
        this.#ctx.addEventListener("statechange", () => this.onchange?.());
      }
      if (this.#ctx.state === "suspended") this.#ctx.resume().then(() => this.onchange?.(), () => {});
    } catch {
      /* no audio */
    }
    this.onchange?.();
  }

  get blocked() {
    return !this.#ctx || this.#ctx.state !== "running";
  }

  start() {
    this.stop();
    if (!this.enabled) return;
    this.unlock();
    const ring = () => {
      if (!this.#ctx || this.#ctx.state !== "running") return;
      const t0 = this.#ctx.currentTime + 0.02;
      for (const [offset, freq] of [[0, 880], [0.18, 660], [0.5, 880], [0.68, 660]]) this.#tone(t0 + offset, freq);
    };
    ring();
    this.#timer = setInterval(ring, 2200);
  }

  #tone(at, freq) {
    const osc = this.#ctx.createOscillator();
    const gain = this.#ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, at);
    gain.gain.linearRampToValueAtTime(0.18, at + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.001, at + 0.16);
    osc.connect(gain).connect(this.#ctx.destination);
    osc.start(at);
    osc.stop(at + 0.18);
  }

  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
  }
}

// ------------------------------------------------------------------------------------------------ state
const state = {
  account: null, // {username, display_name, role} of the signed-in agent
  refreshTimer: null,
  signal: null, // the CallinAgentSession (callin-agent.js): hello, resume, seq, pings
  welcome: null,
  status: "offline",
  offer: null, // the call.offered message while ringing
  ringStarted: 0,
  call: null, // {id, card, pc, audioTx, videoTx, mic, camera, startedAt, stats, firstFrameAt, ...}
  lastCard: null,
  history: [],
  closing: false,
  autoAnswer: localStorage.getItem(AUTO_ANSWER_KEY) === "on",
  staleCallId: null,
  prepared: null, // the peer connection prepared while a call rings
  spare: null, // a peer connection made ahead while available (see refillSpare)
  wrapUp: null, // {callId, until} while the gateway keeps the agent in wrap-up
  endedCallId: null, // the call the ended view (and its wrap-up form) is about
  tab: "calls",
  wallboard: null, // the last wallboard message, with clockOffset
  supervise: null, // {callId, mode, pc, audioTx, videoTx, auxTx, mic, card}
  endedCard: null, // the card of the call the ended view is about
  missed: null, // {callId, name} while the missed view shows
  contacts: null, // {callId, calls} the caller's earlier contacts (GET .../contact-history)
  inbox: { callbacks: [], messages: [] },
  notification: null, // the desktop notification of the call ringing now
};
const ringer = new Ringer();

// A small handle for debugging in the browser's console (and for the browser tests).
window.callinConsole = {
  get state() {
    return { status: state.status, callId: state.call?.id ?? null, ringing: state.offer?.call_id ?? null, firstFrameAt: state.call?.firstFrameAt ?? null };
  },
  get peerConnection() {
    return state.call?.pc ?? null;
  },
  /** The peer connection set up for the call ringing now (connected before the accept, see preconnect). */
  get ringingPeerConnection() {
    return state.prepared?.pc ?? null;
  },
  async stats() {
    return state.call?.pc ? summarizeStats(state.call.pc) : null;
  },
  /** Inbound audio on the second audio section (a consulted colleague or a whispering supervisor). */
  async auxAudio() {
    return inboundAudio(state.call?.pc, state.call?.auxTx);
  },
  get wrapUp() {
    return state.wrapUp ? { callId: state.wrapUp.callId, extended: state.wrapUp.extended ?? 0, leftS: Math.max(0, (state.wrapUp.until - Date.now()) / 1000) } : null;
  },
  get devices() {
    return { micLevel: devices.level, previewWidth: $("dev-preview").videoWidth, soundBlocked: !$("sound-blocked").hidden };
  },
  get supervising() {
    return state.supervise ? { callId: state.supervise.callId, mode: state.supervise.mode } : null;
  },
  async superviseStats() {
    const sv = state.supervise;
    if (!sv?.pc) return null;
    return { caller: await inboundAudio(sv.pc, sv.audioTx), agent: await inboundAudio(sv.pc, sv.auxTx), video: (await summarizeStats(sv.pc)).videoIn };
  },
};

/** packetsReceived and audioLevel of one transceiver's inbound audio (null without one). */
async function inboundAudio(pc, transceiver) {
  if (!pc || !transceiver?.receiver) return null;
  const report = await transceiver.receiver.getStats().catch(() => null);
  let found = null;
  report?.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") found = { packetsReceived: r.packetsReceived ?? 0, audioLevel: r.audioLevel ?? null };
  });
  return found ?? { packetsReceived: 0, audioLevel: null };
}

// ------------------------------------------------------------------------------------------------ toasts
function toast(text, { bad = false, ms = 5000 } = {}) {
  const el = document.createElement("div");
  el.className = `toast${bad ? " bad" : ""}`;
  el.setAttribute("role", bad ? "alert" : "status");
  el.innerHTML = `${icon(bad ? "alert" : "bell", { size: 16 })}<span></span>`;
  el.querySelector("span").textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), ms);
}

function banner(text, { bad = false, action = null } = {}) {
  const el = $("conn-banner");
  if (!text) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.className = `conn-banner${bad ? " bad" : ""}`;
  el.textContent = text;
  if (action) {
    const b = document.createElement("button");
    b.className = "btn";
    b.textContent = action.label;
    b.addEventListener("click", action.run);
    el.append(b);
  }
}

// ------------------------------------------------------------------------------------------------ sign in
function showSignin(message = null) {
  $("app").hidden = true;
  $("signin").hidden = false;
  const err = $("signin-error");
  err.hidden = !message;
  err.textContent = message ?? "";
  document.title = "Sign in · Callin agent console";
  $("username").focus();
}

async function signIn(event) {
  event.preventDefault();
  ringer.unlock(); // a user gesture: the ring can play later
  const username = $("username").value.trim();
  const password = $("password").value;
  const err = $("signin-error");
  if (!username || !password) {
    err.hidden = false;
    err.textContent = "Enter your username and password.";
    return;
  }
  const button = $("signin-button");
  button.disabled = true;
  button.textContent = "Signing in…";
  try {
    const response = await fetch("/api/v1/agent/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password, cookie_only: true }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new CallinError(body.code || "login_failed", body.code === "bad_credentials" ? "Wrong username or password." : body.reason || `Sign-in failed (${response.status}).`);
    }
    state.account = body.agent;
    keepSessionAlive(body.expires_in);
    $("password").value = "";
    await start();
  } catch (e) {
    err.hidden = false;
    err.textContent = e instanceof CallinError ? e.reason : "Can't reach the gateway. Check your connection.";
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
}

async function signOut() {
  state.closing = true;
  if (state.call) await hangup();
  await stopSupervising(true);
  await state.signal?.bye(2000);
  state.signal = null;
  try {
    await fetch("/api/v1/agent/logout", { method: "POST" }); // ends the session on the server too
  } catch {
    /* the session ends on its own */
  }
  clearInterval(state.refreshTimer);
  state.account = null;
  ringer.stop();
  dropSpare();
  showSignin();
}

// ------------------------------------------------------------------------------------------------ connection
/** A new agent session (callin-agent.js keeps it: hello, resume with last_seq, pings, back-off); this page shows
 * what happens to it. */
function openSession() {
  state.signal?.close();
  const session = new CallinAgentSession({ url: agentSocketUrl(location.href) });
  session.addEventListener("message", (e) => onMessage(e.detail));
  session.addEventListener("reconnecting", (e) => {
    if (session !== state.signal || state.closing) return;
    setStatus("offline");
    banner(`Connection lost. Reconnecting${e.detail.attempt > 1 ? ` (attempt ${e.detail.attempt})` : ""}…`);
  });
  session.addEventListener("reconnected", (e) => {
    if (session !== state.signal) return;
    state.welcome = e.detail.welcome;
    banner(null);
    setStatus(e.detail.welcome.agent?.status ?? "away");
    toast("Reconnected.");
    if (state.tab === "wallboard") subscribeWallboard();
  });
  session.addEventListener("disconnected", (e) => onSessionLost(session, e.detail));
  state.signal = session;
  return session;
}

async function start() {
  state.closing = false;
  $("signin").hidden = true;
  $("app").hidden = false;
  renderMe();
  let welcome;
  try {
    welcome = await openSession().connect();
  } catch (e) {
    if (SESSION_ENDED.includes(e.code)) {
      showSignin("Your session has expired. Please sign in again.");
      return;
    }
    banner("Can't reach the gateway.", { bad: true, action: { label: "Retry", run: () => start() } });
    setStatus("offline");
    return;
  }
  state.welcome = welcome;
  banner(null);
  setStatus(welcome.agent?.status ?? "away");
  if (welcome.call && welcome.call.state === "connected") {
    // A reload during a call: the gateway kept the call, this page's media is gone: set it up again.
    await rejoinCall(welcome.call);
  } else if (welcome.call && welcome.call.state === "offered") {
    onOffered({ call_id: welcome.call.call_id, card: welcome.call.card, ring_timeout_s: 15 });
  } else {
    show("idle");
  }
  ringer.unlock(); // without a click since the page loaded the browser may keep it suspended: then the console says so
  renderSoundBlocked();
  checkMicPermission();
  loadInbox();
}

/** The session could not go on over this socket (see callin-agent.js "disconnected"). */
async function onSessionLost(session, { reason, retryAfterS }) {
  if (session !== state.signal || state.closing) return;
  setStatus("offline");
  if (reason === "shutdown") {
    // The gateway is restarting: nothing to resume; sign in to the new process after its retry-after hint.
    if (state.call) endCallView({ reason: "shutdown", by: "system" });
    banner("The gateway is restarting. Reconnecting shortly…", { bad: true });
    await sleep(Math.max(1000, (retryAfterS ?? 5) * 1000));
    if (!state.closing && session === state.signal) start();
    return;
  }
  if (reason === "session_ended") {
    showSignin("Your session has expired. Please sign in again.");
    return;
  }
  if (reason === "replaced") {
    banner("This session continues on another connection.", { bad: true, action: { label: "Use this console", run: () => start() } });
    return;
  }
  if (state.call) endCallView({ reason: "agent_disconnected", by: "system" });
  banner("Disconnected from the gateway.", { bad: true, action: { label: "Reconnect", run: () => start() } });
}

// ------------------------------------------------------------------------------------------------ messages
function onMessage(message) {
  switch (message.type) {
    case "participant.reconnecting":
      if (message.role === "caller" && state.call?.id === message.call_id) {
        banner("The caller's connection dropped. They may be back in a few seconds…");
      }
      break;
    case "participant.reconnected":
      if (message.role === "caller" && state.call?.id === message.call_id) {
        banner(null);
        toast("The caller is back.");
      }
      break;
    case "agent.status":
      setStatus(message.status);
      onWrapUpStatus(message);
      if (message.reason === "missed_call" || message.reason === "ring_timeout") onMissedStatus(message);
      if (message.reason === "signed_in_elsewhere") {
        state.closing = true;
        state.signal?.close();
        banner("You signed in on another console, so this one was disconnected.", { bad: true, action: { label: "Use this console", run: () => start() } });
      }
      break;
    case "call.offered":
      onOffered(message);
      break;
    case "call.offer_withdrawn":
      if (state.offer?.call_id === message.call_id) {
        const offer = state.offer;
        stopRinging();
        if (message.reason === "ring_timeout") showMissed(offer);
        else {
          backToRest();
          toast(WITHDRAWN_TEXT[message.reason] ?? "The call is no longer ringing.");
        }
      }
      break;
    case "call.ended":
      if (state.supervise?.callId === message.call_id) {
        stopSupervising(false);
        toast("The call you were supervising ended.");
      }
      if (state.call?.id === message.call_id) endCallView(message);
      else if (state.staleCallId === message.call_id) {
        state.staleCallId = null;
        show("idle");
        renderCard(null);
      }
      break;
    case "media.state":
      if (state.call?.id === message.call_id && message.leg === "caller" && message.state === "failed") {
        toast("The caller's connection is failing.", { bad: true });
      }
      if (state.call?.id === message.call_id && message.leg === "caller" && message.state === "disconnected") {
        toast("No media from the caller: waiting for their connection to come back.", { bad: true });
      }
      if (state.call?.id === message.call_id && message.leg === "agent"
          && ["disconnected", "failed", "closed"].includes(message.state)) {
        // The gateway hears nothing from this console (or its side of our peer connection ended): a new one.
        recoverMedia(state.call, `gateway_${message.state}`);
      }
      break;
    case "media.source":
      if (state.offer?.call_id === message.call_id) Object.assign(state.offer.card, { media_source: message.source, media_source_reason: message.reason ?? null });
      if (state.call?.id === message.call_id) {
        Object.assign(state.call.card, { media_source: message.source, media_source_reason: message.reason ?? null });
        $("call-type").innerHTML = callTypeChip(state.call.card);
        updateCallControls(); // the snapshot needs the caller's video
      }
      break;
    case "media.video":
      if (message.leg === "self" || (message.leg === "agent" && state.call?.id === message.call_id)) {
        toast(message.state === "paused" ? "Your connection is too slow for video: audio only for now."
          : "Video is back.", { bad: message.state === "paused" });
      }
      break;
    case "call.held":
      if (state.call?.id === message.call_id) {
        state.call.held = message.held;
        updateCallControls();
      }
      break;
    case "consult.state":
      onConsultState(message);
      break;
    case "call.transferred":
      if (state.call?.id === message.call_id) endCallView({ call_id: message.call_id, reason: "transferred", by: "agent", to: message.to });
      break;
    case "content.status":
      onContentStatus(message);
      break;
    case "chat.message":
      onChatMessage(message);
      break;
    case "wallboard":
      renderWallboard(message);
      break;
    case "error":
      toast(message.reason || message.code, { bad: true });
      break;
    default:
      break;
  }
}

function setStatus(status) {
  state.status = status;
  const pill = $("status-pill");
  pill.dataset.status = status;
  $("status-text").textContent = STATUS_TEXT[status] ?? status;
  const locked = ["ringing", "busy", "offline"].includes(status);
  for (const b of $("status-switch").querySelectorAll("button")) {
    b.setAttribute("aria-checked", String(b.dataset.status === status));
    b.disabled = locked;
  }
  renderIdle();
  renderInbox();
  if (status === "available") setTimeout(refillSpare, 0);
  else if (status === "offline") dropSpare(); // a new session may bring other ICE servers
  if (status !== "ringing") document.title = `${STATUS_TEXT[status] ?? status} · Callin agent console`;
}

async function requestStatus(status) {
  ringer.unlock();
  if (!state.signal?.open) return;
  try {
    const reply = await state.signal.request({ type: "agent.status", status });
    setStatus(reply.status);
  } catch (e) {
    toast(e.reason, { bad: true });
  }
}

function renderIdle() {
  const available = state.status === "available";
  const visual = $("idle-visual");
  visual.className = `idle-visual${available ? " available" : ""}`;
  visual.innerHTML = icon(available ? "headphones" : "clock", { size: 48 });
  $("idle-title").textContent = available ? "Waiting for the next call" : state.status === "offline" ? "Not connected" : "You're away";
  $("idle-text").textContent = available
    ? "Calls ring here with the caller's verified identity, location and what they were doing in the app."
    : state.status === "offline"
      ? "Reconnecting to the gateway…"
      : "Set yourself to available to start taking calls.";
  $("idle-available").hidden = available || state.status === "offline";
}

function renderMe() {
  const name = state.account?.display_name || state.account?.username || "";
  $("me-name").textContent = name;
  $("me-avatar").textContent = initials(name);
  $("nav-tabs").hidden = !isSupervisor();
  if (!isSupervisor() && state.tab !== "calls") setTab("calls");
}

// ------------------------------------------------------------------------------------------------ views
const VIEWS = ["idle", "ringing", "call", "ended", "stale", "missed"];
function show(view) {
  if ((view === "ringing" || view === "call") && state.tab !== "calls") setTab("calls");
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  const busy = view === "ringing" || view === "call";
  $("history-section").hidden = busy;
  $("inbox-section").hidden = busy || !(state.inbox.callbacks.length || state.inbox.messages.length);
  if (view !== "missed") state.missed = null;
  document.body.dataset.view = view;
}

/** After a ring that did not become a call: back to the wrap-up being written (unsaved input), else idle. */
function backToRest() {
  if (state.endedCallId && state.endedCard && readDraft(state.endedCallId)) {
    renderCard(state.endedCard);
    show("ended");
    renderWrapUpTimer();
  } else {
    state.endedCallId = null;
    state.endedCard = null;
    show("idle");
    renderCard(null);
  }
  loadInbox();
}

function renderCard(card) {
  const host = $("card");
  if (!card) {
    host.innerHTML = `<div class="card"><div class="card-empty">${icon("user", { size: 28 })}<p>The caller's details appear here when a call rings.</p></div></div>`;
    return;
  }
  const id = card.identity ?? {};
  const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
  const signer = id.issuer || "integrator";
  const verified = id.verified
    ? `<span class="verified" title="These fields come from a token signed by ${escapeHtml(signer)}; the caller's device cannot change them.">${icon("shield", { size: 14 })}Verified by ${escapeHtml(signer)} signature</span>`
    : `<span class="unverified">${icon("alert", { size: 14 })}Not verified</span>`;
  const vrow = (label, value) =>
    value ? `<dt>${escapeHtml(label)}</dt><dd class="v" title="verified"><span>${escapeHtml(value)}</span>${icon("check", { size: 13, label: "verified" })}</dd>` : "";
  const claims = Object.entries(id.claims ?? {})
    .map(([k, v]) => vrow(humanize(k), String(v)))
    .join("");

  const loc = card.location;
  const locHtml = loc
    ? `<div class="loc" data-testid="location">
         <span class="loc-pin">${icon("map-pin", { size: 20 })}</span>
         <div>
           <div class="loc-coords">${Number(loc.lat).toFixed(5)}, ${Number(loc.lon).toFixed(5)}</div>
           <div class="loc-meta">±${Math.round(loc.accuracy_m)} m accuracy · measured <span class="loc-age" data-ts="${Number(loc.timestamp)}">${ago(loc.timestamp)}</span></div>
           <a href="https://www.openstreetmap.org/?mlat=${encodeURIComponent(loc.lat)}&mlon=${encodeURIComponent(loc.lon)}#map=16/${encodeURIComponent(loc.lat)}/${encodeURIComponent(loc.lon)}" target="_blank" rel="noopener noreferrer">Open in OpenStreetMap ${icon("external-link", { size: 13 })}</a>
         </div>
       </div>`
    : `<div class="loc-none" data-testid="location"><span class="loc-pin">${icon("map-pin", { size: 20 })}</span>Location not shared</div>`;

  const ctx = card.context ?? {};
  const steps = (ctx.steps ?? []).map((s) => `<li>${escapeHtml(s)}</li>`).join("");
  const crm = Object.entries(ctx.crm ?? {})
    .map(([k, v]) => `<dt>${escapeHtml(humanize(k))}</dt><dd>${escapeHtml(v === null ? "–" : String(v))}</dd>`)
    .join("");
  const waited = card.created_at ? Math.max(0, Date.now() / 1000 - card.created_at) : null;

  host.innerHTML = `
    <article class="card" aria-label="Caller card">
      <header class="card-head">
        <span class="card-avatar">${escapeHtml(initials(id.name || id.subject))}</span>
        <div><h2 data-testid="caller-name">${escapeHtml(id.name || id.subject || "Unknown caller")}</h2>${verified}</div>
      </header>
      <section>
        <h3>${icon("shield", { size: 14 })}Identity<span class="tag">from the signed token</span></h3>
        <dl class="kv">${vrow("Customer ID", id.subject)}${vrow("Email", id.email)}${vrow("Phone", id.phone)}${claims}</dl>
      </section>
      <section>
        <h3>${icon("map-pin", { size: 14 })}Location<span class="tag">${loc ? "device-reported" : ""}</span></h3>
        ${locHtml}
      </section>
      <section>
        <h3>${icon("smartphone", { size: 14 })}In the app</h3>
        ${ctx.screen ? `<span class="screen-name">${icon("smartphone", { size: 14 })}${escapeHtml(ctx.screen)}</span>` : '<span class="muted">No screen reported</span>'}
        ${steps ? `<ol class="steps" aria-label="Recent steps">${steps}</ol>` : ""}
      </section>
      ${crm ? `<section><h3>${icon("database", { size: 14 })}CRM</h3><dl class="kv">${crm}</dl></section>` : ""}
      <section>
        <h3>${icon(type.icon, { size: 14 })}Call</h3>
        <dl class="kv"><dt>Type</dt><dd>${type.label}</dd><dt>Queue</dt><dd>${escapeHtml(card.queue ?? "default")}${card.priority ? ` · priority ${escapeHtml(card.priority)}` : ""}</dd>${waited != null ? `<dt>Waited</dt><dd>${duration(waited)}</dd>` : ""}</dl>
      </section>
      <section id="card-contacts" data-call-id="${escapeHtml(card.call_id ?? "")}" aria-label="Earlier contacts">
        <h3>${icon("clock", { size: 14 })}Earlier contacts<span class="tag">this customer ID</span></h3>
        <p class="muted small" id="contacts-body">Looking up earlier calls…</p>
      </section>
    </article>`;
  renderContacts();
}

const OUTCOME_TEXT = {
  answered: "Answered", abandoned: "Hung up while waiting", missed: "Missed", declined: "Declined", failed: "Failed",
  after_hours: "After hours", message_left: "Left a message", callback_expired: "Callback not rejoined",
  replaced: "Called again", interrupted: "Interrupted",
};

/** The caller's earlier calls (date, outcome, who, wrap-up notes), fetched for the call ringing or in progress. */
async function loadContacts(callId) {
  try {
    const body = await api(`/api/v1/calls/${encodeURIComponent(callId)}/contact-history`);
    state.contacts = { callId, calls: body.calls };
  } catch (e) {
    state.contacts = { callId, calls: null, error: e.reason };
  }
  renderContacts();
}

function renderContacts() {
  const section = $("card-contacts");
  if (!section) return;
  const body = $("contacts-body");
  const found = state.contacts?.callId === section.dataset.callId ? state.contacts : null;
  if (!found) return;
  if (!found.calls) {
    body.textContent = `Earlier calls could not be loaded: ${found.error ?? "try again later"}.`;
    return;
  }
  if (!found.calls.length) {
    body.textContent = "No earlier calls from this customer.";
    return;
  }
  const list = document.createElement("ol");
  list.className = "contacts";
  list.dataset.testid = "contacts";
  for (const c of found.calls) {
    const li = document.createElement("li");
    const when = new Date(c.created_at * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    const who = c.agent ? ` · ${c.agent}` : "";
    const talk = c.talk_s >= 1 ? ` · talked ${duration(c.talk_s)}` : "";
    li.innerHTML = `<div><b></b></div><div class="c-meta"></div>`;
    li.querySelector("b").textContent = `${OUTCOME_TEXT[c.outcome] ?? c.outcome ?? "In progress"}${c.disposition ? ` · ${humanize(c.disposition)}` : ""}`;
    li.querySelector(".c-meta").textContent = `${when} · ${(CALL_TYPE[c.call_type] ?? CALL_TYPE.voice).label}${who}${talk}`;
    const text = c.notes || (c.message ? `Message: ${c.message}` : "");
    if (text) {
      const notes = document.createElement("div");
      notes.className = "c-notes";
      notes.textContent = text;
      li.append(notes);
    }
    list.append(li);
  }
  body.replaceWith(list);
  list.id = "contacts-body";
}

function refreshAges() {
  for (const el of document.querySelectorAll(".loc-age")) el.textContent = ago(Number(el.dataset.ts));
}

// ------------------------------------------------------------------------------------------------ ringing
function onOffered(message) {
  state.offer = message;
  state.ringStarted = performance.now();
  window.dispatchEvent(new CustomEvent("callin:ring", { detail: { callId: message.call_id, at: performance.timeOrigin + performance.now() } }));
  state.lastCard = message.card;
  const card = message.card;
  const id = card.identity ?? {};
  const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
  $("ring-icon").innerHTML = icon(type.icon, { size: 40 });
  $("ring-title").textContent = card.consult ? `${card.consult.from_name ?? card.consult.from} wants to consult you` : card.transferred_from ? `Transferred ${type.label.toLowerCase()} from ${card.transferred_from}` : card.callback ? `Callback · ${type.label.toLowerCase()}` : `Incoming ${type.label.toLowerCase()}`;
  $("ring-name").innerHTML = `${escapeHtml(id.name || id.subject || "Unknown caller")}${id.verified ? `<span class="verified">${icon("shield", { size: 14 })}Verified</span>` : ""}`;
  const bits = [];
  if (card.context?.screen) bits.push(`from “${card.context.screen}”`);
  const tier = id.claims?.account_tier ?? card.context?.crm?.tier;
  if (tier) bits.push(`${tier} customer`);
  bits.push(card.location ? "location shared" : "location not shared");
  $("ring-sub").textContent = bits.join(" · ");
  const bar = $("ring-bar");
  bar.style.transition = "none";
  bar.style.transform = "scaleX(1)";
  requestAnimationFrame(() => {
    bar.style.transition = `transform ${message.ring_timeout_s}s linear`;
    bar.style.transform = "scaleX(0)";
  });
  renderCard(card);
  show("ringing");
  setStatus("ringing");
  document.title = `● Incoming call: ${id.name || "caller"}`;
  if (state.autoAnswer) {
    accept();
    return;
  }
  discardPrepared();
  if (!state.call) {
    state.prepared = preparePeer(message);
    if (!card.consult) preconnect(state.prepared);
  }
  ringer.start();
  if (ringer.enabled && ringer.blocked) toast("The browser blocks the ring sound: click anywhere in the console to allow it.", { bad: true, ms: 8000 });
  notifyRing(message);
  if (state.contacts?.callId !== message.call_id) loadContacts(message.call_id);
  $("accept-button").focus({ preventScroll: true });
}

function stopRinging() {
  ringer.stop();
  closeNotification();
  state.offer = null;
  discardPrepared();
}

// ------------------------------------------------------------------------------------------------ missed
/** A ring that went unanswered: say so plainly (it went back to the queue, not "to another agent"). */
function showMissed(offer) {
  const card = offer?.card ?? {};
  const id = card.identity ?? {};
  const name = id.name || id.subject || "a caller";
  const rang = Math.max(1, Math.round((performance.now() - state.ringStarted) / 1000));
  renderCard(null);
  state.missed = null;
  show("missed");
  state.missed = { callId: offer?.call_id, name, rang, away: false };
  $("missed-icon").innerHTML = icon("phone-incoming", { size: 44 });
  $("missed-title").textContent = `Missed call from ${name}`;
  renderMissed();
}

function onMissedStatus(message) {
  if (!state.missed) return;
  state.missed.away = message.reason === "missed_call";
  renderMissed();
}

function renderMissed() {
  const m = state.missed;
  if (!m) return;
  const first = `It rang here for ${m.rang} s without an answer and went back to the queue, where the next free agent gets it.`;
  $("missed-text").textContent = m.away
    ? `${first} You let several calls in a row ring out, so you were set to Away: no call rings here until you are available again.`
    : `${first} You are still available; if nobody else can take it, it may ring here again.`;
  $("missed-available").textContent = m.away ? "Go available" : "Stay available";
  $("missed-away").hidden = m.away;
  document.title = `Missed call · Callin agent console`;
}

async function decline() {
  const offer = state.offer;
  if (!offer) return;
  stopRinging();
  backToRest();
  try {
    await state.signal.request({ type: "call.decline", call_id: offer.call_id });
  } catch (e) {
    if (e.code !== "not_offered") toast(e.reason, { bad: true });
  }
}

// ------------------------------------------------------------------------------------------------ the call
/**
 * The agent's peer connection for a ringing call, prepared while it rings so that accepting only has to send
 * the offer. Audio sendrecv (the microphone arrives by replaceTrack once the call is accepted); video sendrecv
 * with no track until the agent turns the camera on (the gateway does not renegotiate).
 */
function preparePeer(offer) {
  return takeSpare(offer) ?? newCall(offer);
}

// A peer connection made ahead while the console is available, its offer created and its ICE candidates gathered:
// the next call that rings takes it, so that its offer goes at once. Made again after each call; dropped when the
// console goes offline or signs out, and when older than SPARE_MAX_AGE_MS (its ICE servers' credentials may expire).
const SPARE_MAX_AGE_MS = 5 * 60 * 1000;

function refillSpare() {
  if (state.spare || state.call || state.offer || state.status !== "available" || !state.welcome) return;
  state.spare = newCall({ call_id: null, card: {} });
  state.spare.madeAt = performance.now();
}

function dropSpare() {
  state.spare?.pc.close();
  state.spare = null;
}

function takeSpare(offer) {
  const spare = state.spare;
  state.spare = null;
  if (!spare) return null;
  if (spare.pc.signalingState === "closed" || performance.now() - spare.madeAt > SPARE_MAX_AGE_MS) {
    spare.pc.close();
    return null;
  }
  Object.assign(spare, { id: offer.call_id, card: offer.card, consultFrom: offer.card?.consult ?? null });
  spare.pendingCandidates = spare.pendingCandidates.map((m) => ({ ...m, call_id: offer.call_id }));
  return spare;
}

function newCall(offer) {
  const call = {
    id: offer.call_id,
    card: offer.card,
    pc: null,
    audioTx: null,
    videoTx: null,
    auxTx: null,
    mic: null,
    held: false,
    consult: null, // {colleague, state} while this agent consults a colleague (warm transfer)
    consultFrom: offer.card?.consult ?? null, // set when this agent was called in for a consult
    pushed: new Map(),
    chat: [],
    unread: 0,
    camera: null,
    muted: false,
    startedAt: null,
    acceptedAt: null,
    firstFrameAt: null,
    stats: null,
    stalls: 0,
    timers: [],
    offerSent: false,
    pendingCandidates: [],
    candidatesGathered: 0,
    ended: false,
    timings: {}, // ms since accept: accepted, offerSent, answered, connected, firstFrame (< 0: while it rang)
    earlySteps: {}, // the steps done while it rang (absolute times), until the accept
    answering: null, // the offer sent while it rang (preconnect): resolves once answered
    earlyTracks: [], // [track, slot] received while it rang, shown once accepted
    localOffer: null,
    offerReady: false, // the local offer is set (localOffer resolved)
    recovering: false, // a media recovery runs (a new peer connection for the same call)
    recoverAgain: false,
    disconnectTimer: null,
  };
  const pc = newPeer(call);
  call.localOffer = pc.createOffer().then((o) => pc.setLocalDescription(o)).then(() => {
    call.offerReady = true;
  });
  call.localOffer.catch(() => {});
  return call;
}

/**
 * A peer connection for the call (the first, or a new one that replaces it after a network change): audio
 * sendrecv (the microphone, when there is one), video sendrecv (the camera, when on), a second audio section
 * receive only (a consulted colleague or a whispering supervisor). Its events count only while it is the call's.
 */
function newPeer(call) {
  const pc = new RTCPeerConnection({ iceServers: iceServersFrom(state.welcome?.ice_servers), bundlePolicy: "max-bundle" });
  call.pc = pc;
  call.offerSent = false;
  call.pendingCandidates = [];
  call.candidatesGathered = 0;
  call.audioTx = pc.addTransceiver(call.mic ?? "audio", { direction: "sendrecv" });
  call.videoTx = pc.addTransceiver(call.camera ?? "video", { direction: "sendrecv" });
  // A second audio section, receive only: a consulted colleague or a whispering supervisor is heard on it.
  call.auxTx = pc.addTransceiver("audio", { direction: "recvonly" });
  const auxTx = call.auxTx;
  preferCodec(call.videoTx, "video/VP8");
  pc.addEventListener("track", (e) => {
    if (pc !== call.pc) return;
    const slot = e.transceiver === auxTx ? "aux" : "main";
    if (state.call === call) onRemoteTrack(call, e.track, slot);
    else call.earlyTracks.push([e.track, slot]); // connected while it rings: shown once accepted
  });
  pc.addEventListener("icecandidate", (e) => {
    if (pc !== call.pc) return;
    const message = candidateMessage(e.candidate, call.id);
    if (!message) return; // a candidate the gateway refuses (see candidateMessage)
    if (message.candidate) call.candidatesGathered += 1;
    else if (!call.candidatesGathered) return; // no end-of-candidates without candidates (see candidateMessage)
    if (!call.offerSent) call.pendingCandidates.push(message);
    else state.signal?.send({ ...message, id: state.signal.nextId() });
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc !== call.pc) return;
    if (pc.connectionState === "connected") {
      step(call, "connected");
      if (state.call === call && !call.firstFrameAt) $("ph-text").textContent = waitingText(call);
    }
    clearTimeout(call.disconnectTimer);
    // Failed: set the media up again at once; disconnected: if it does not come back by itself within a second.
    if (pc.connectionState === "failed" && state.call === call) recoverMedia(call, "ice_failed");
    if (pc.connectionState === "disconnected" && state.call === call) {
      call.disconnectTimer = setTimeout(() => {
        if (pc === call.pc && pc.connectionState === "disconnected") recoverMedia(call, "ice_disconnected");
      }, 1000);
    }
  });
  return pc;
}

/**
 * Media recovery (docs/protocol.md): a new peer connection and its offer in the same call, which replaces this
 * console's media leg at the gateway; the old one is closed once the new one is answered. Retried with back-off
 * while the call lasts.
 */
async function recoverMedia(call, cause) {
  if (call.ended || state.call !== call) return;
  if (call.recovering) {
    call.recoverAgain = true;
    return;
  }
  if (!call.offerSent) return; // its first offer is still on its way
  call.recovering = true;
  let delay = 500;
  try {
    while (!call.ended && state.call === call) {
      call.recoverAgain = false;
      if (!state.signal?.open) {
        await sleep(250); // the socket is being resumed: offer once it is back
        continue;
      }
      banner("Reconnecting your audio and video…");
      try {
        await offerMedia(call, { replacing: true });
      } catch (e) {
        if (["call_ended", "unknown_call", "not_accepted"].includes(e.code)) return;
        await sleep(delay);
        delay = Math.min(delay * 2, 4000);
        continue;
      }
      banner(null);
      if (!call.recoverAgain) return;
    }
  } finally {
    call.recovering = false;
  }
}

/** Send the offer of the call's peer connection (a new one if `replacing`) and apply the answer. */
async function offerMedia(call, { replacing = false } = {}) {
  const previous = replacing ? call.pc : null;
  const pc = replacing ? newPeer(call) : call.pc;
  try {
    if (replacing) await pc.setLocalDescription(await pc.createOffer());
    else await call.localOffer;
    const answer = await state.signal.request({ type: "sdp.offer", call_id: call.id, sdp: pc.localDescription.sdp });
    call.offerSent = true;
    for (const m of call.pendingCandidates) state.signal.send({ ...m, id: state.signal.nextId() });
    call.pendingCandidates = [];
    if (!call.ended && pc.signalingState !== "closed") await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (e) {
    if (previous && call.pc === pc) {
      // Refused: the gateway keeps the old leg, and so does this console until the next try.
      pc.close();
      call.pc = previous;
      [call.audioTx, call.videoTx, call.auxTx] = previous.getTransceivers();
      call.offerSent = true;
    }
    throw e;
  }
  previous?.close();
}

/** The browser says the network changed (back online, another connection type): recover the call's media. */
let networkChangeTimer = null;
function onNetworkChange(cause) {
  clearTimeout(networkChangeTimer);
  networkChangeTimer = setTimeout(() => {
    if (state.call && !state.call.ended) recoverMedia(state.call, cause);
  }, 300);
}

function step(call, name) {
  const at = performance.timeOrigin + performance.now();
  if (call.acceptedAt == null) call.earlySteps[name] ??= at;
  else if (call.timings[name] == null) call.timings[name] = Math.round(at - call.acceptedAt);
}

/**
 * Media while it rings: the prepared peer connection's offer goes now, and ICE and DTLS complete during the ring.
 * The gateway keeps the leg out of the call until Accept (nothing flows either way) and closes it if the ring ends
 * unanswered; accepting then only opens the gate. If this fails, accept() offers again.
 */
function preconnect(call) {
  const pc = call.pc;
  call.answering = offerCallMedia(state.signal, call.id, pc, {
    ready: call.localOffer.then(() => step(call, "offerSent")),
    onAnswer: () => {
      step(call, "answered");
      call.offerSent = true;
      for (const m of call.pendingCandidates) state.signal.send({ ...m, id: state.signal.nextId() });
      call.pendingCandidates = [];
    },
  });
  call.answering.catch(() => {}); // accept() handles it
}

function discardPrepared() {
  const prepared = state.prepared;
  state.prepared = null;
  if (prepared && prepared !== state.call) {
    prepared.ended = true;
    prepared.pc.close();
  }
}

async function accept() {
  const offer = state.offer;
  if (!offer || state.call) return;
  const callId = offer.call_id;
  const acceptedAt = performance.timeOrigin + performance.now();
  // The accept goes first (it opens the gate at the gateway), the view after: nothing delays the first frame.
  const accepting = state.signal.request({ type: "call.accept", call_id: callId });
  const prepared = state.prepared?.id === callId ? state.prepared : null;
  state.prepared = null; // taken: stopRinging must not close it
  stopRinging();
  const call = prepared ?? preparePeer(offer);
  call.acceptedAt = acceptedAt;
  for (const [name, at] of Object.entries(call.earlySteps)) call.timings[name] = Math.round(at - call.acceptedAt);
  state.call = call;
  // The gateway handles a socket's messages in order: the offer follows the accept without waiting for its
  // answer (if the accept fails, so does the offer, and the accept's error is the one shown).
  const pc = call.pc;
  const send = () => {
    step(call, "offerSent");
    return state.signal.request({ type: "sdp.offer", call_id: callId, sdp: pc.localDescription.sdp });
  };
  // An offer made ahead (a spare peer connection) goes at once, before the view is drawn.
  const offerNow = () => (call.offerReady ? send() : call.localOffer.then(send));
  // Set up while it rang (preconnect): the accept opens the gate. Else (or if that failed) the offer goes now.
  const early = call.answering;
  const answering = early ? early.then(() => null, () => (call.offerSent ? null : offerNow())) : offerNow();
  answering.catch(() => {}); // handled below, after the accept
  showCallView(call);
  for (const [track, slot] of call.earlyTracks.splice(0)) onRemoteTrack(call, track, slot);

  navigator.mediaDevices
    .getUserMedia({ audio: audioConstraints() })
    .then(async (stream) => {
      const track = stream.getAudioTracks()[0];
      if (call.ended) {
        track.stop();
        return;
      }
      call.mic = track;
      track.enabled = !call.muted;
      await call.audioTx.sender.replaceTrack(track);
    })
    .catch(() => toast("Microphone blocked: the caller can't hear you. Allow the microphone for this site.", { bad: true, ms: 10000 }));

  try {
    await accepting;
    step(call, "accepted");
  } catch (e) {
    cleanupCall(call);
    show("idle");
    renderCard(null);
    toast(e.code === "not_offered" ? "That call is no longer ringing." : `Couldn't take the call: ${e.reason}`, { bad: true });
    return;
  }
  try {
    const answer = await answering;
    if (call.pc !== pc) return; // replaced meanwhile by a media recovery
    if (answer === null) {
      // Connected while it rang: a connection that failed meanwhile (its events did not count before the accept)
      // is set up again now.
      if (["failed", "closed"].includes(pc.connectionState) && !call.ended) recoverMedia(call, "ice_failed");
      return;
    }
    step(call, "answered");
    call.offerSent = true;
    for (const m of call.pendingCandidates) state.signal.send({ ...m, id: state.signal.nextId() });
    call.pendingCandidates = [];
    if (!call.ended) await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (e) {
    if (!call.ended) toast(`The call's media could not be set up: ${e.reason ?? e.message}`, { bad: true });
  }
}

/**
 * The console was reloaded (or signed in again) during a connected call: the gateway kept the call, so set this
 * console's media up for it again. The new offer replaces the leg of the page that went away.
 */
async function rejoinCall(welcomeCall) {
  const call = preparePeer({ call_id: welcomeCall.call_id, card: welcomeCall.card });
  call.acceptedAt = performance.timeOrigin + performance.now();
  state.call = call;
  state.lastCard = welcomeCall.card;
  renderCard(welcomeCall.card);
  showCallView(call);
  $("side-tabs").hidden = false;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS });
    const track = stream.getAudioTracks()[0];
    if (call.ended) track.stop();
    else {
      call.mic = track;
      await call.audioTx.sender.replaceTrack(track);
    }
  } catch {
    toast("Microphone blocked: the caller can't hear you. Allow the microphone for this site.", { bad: true, ms: 10000 });
  }
  try {
    await offerMedia(call);
    toast("Back in your call.");
  } catch (e) {
    if (call.ended) return;
    cleanupCall(call);
    // The media could not be set up again: the call can still be ended from here.
    state.staleCallId = welcomeCall.call_id;
    renderCard(welcomeCall.card);
    show("stale");
    toast(`The call's media could not be set up again: ${e.reason ?? e.message}`, { bad: true });
  }
}

function waitingText(call) {
  return call.card.call_type === "voice" || call.card.media_source_reason ? "Voice call" : "Waiting for the caller's video…";
}

function showCallView(call) {
  const id = call.card.identity ?? {};
  $("call-name").textContent = id.name || id.subject || "Caller";
  $("call-type").innerHTML = callTypeChip(call.card);
  $("ph-avatar").textContent = initials(id.name || id.subject);
  $("ph-text").textContent = "Connecting…";
  $("video-stage").classList.remove("has-video");
  $("remote-video").srcObject = null;
  $("self-view").hidden = true;
  $("quality").dataset.quality = "unknown";
  $("quality-text").textContent = "Measuring…";
  $("net-detail").textContent = "";
  call.startedAt = Date.now();
  $("call-timer").textContent = "0:00";
  $("hold-veil").hidden = true;
  $("aux-chip").hidden = true;
  resetInCallPanes();
  renderConsultBar(call);
  updateCallControls();
  show("call");
  setStatus("busy");
  document.title = `On a call with ${id.name || "caller"} · Callin`;
  call.timers.push(setInterval(() => ($("call-timer").textContent = duration((Date.now() - call.startedAt) / 1000)), 1000));
  call.timers.push(setInterval(() => pollStats(call), 1000));
  $("hangup-button").focus({ preventScroll: true });
}

function audioElement(id) {
  let audio = document.getElementById(id);
  if (!audio) {
    audio = document.createElement("audio");
    audio.id = id;
    audio.autoplay = true;
    document.body.append(audio);
    routeToSpeaker(audio);
  }
  return audio;
}

function onRemoteTrack(call, track, slot = "main") {
  if (slot === "aux") {
    const audio = audioElement("remote-audio-2");
    audio.srcObject = new MediaStream([track]);
    audio.play().catch(() => {});
    return;
  }
  if (track.kind === "audio") {
    let audio = document.getElementById("remote-audio");
    if (!audio) {
      audio = document.createElement("audio");
      audio.id = "remote-audio";
      audio.autoplay = true;
      document.body.append(audio);
      routeToSpeaker(audio);
    }
    audio.srcObject = new MediaStream([track]);
    audio.play().catch(() => toast("Click anywhere to hear the caller (the browser blocked autoplay).", { bad: true }));
    return;
  }
  const video = $("remote-video");
  video.srcObject = new MediaStream([track]);
  video.play().catch(() => {});
  watchFirstFrame(call, video);
}

/** The first decoded frame: as early as any of the video element, requestVideoFrameCallback or getStats says. */
function watchFirstFrame(call, video) {
  const mark = () => {
    if (call.firstFrameAt || call.ended) return;
    call.firstFrameAt = performance.timeOrigin + performance.now();
    call.timings.firstFrame = Math.round(call.firstFrameAt - call.acceptedAt);
    performance.mark("callin:first-frame");
    $("video-stage").classList.add("has-video");
    window.dispatchEvent(new CustomEvent("callin:firstframe", { detail: { callId: call.id, at: call.firstFrameAt, sinceAcceptMs: call.firstFrameAt - call.acceptedAt, timings: { ...call.timings } } }));
  };
  video.addEventListener("loadeddata", mark, { once: true });
  video.addEventListener("resize", () => video.videoWidth > 0 && mark(), { once: true });
  video.requestVideoFrameCallback?.(mark);
  const poll = async () => {
    while (!call.firstFrameAt && !call.ended) {
      const report = await call.pc.getStats().catch(() => null);
      let decoded = 0;
      report?.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") decoded = r.framesDecoded ?? 0;
      });
      if (decoded > 0) mark();
      else await sleep(10);
    }
  };
  poll();
}

async function pollStats(call) {
  if (call.ended || !call.pc) return;
  const s = await summarizeStats(call.pc, call.stats).catch(() => null);
  if (!s || call.ended) return;
  const previous = call.stats;
  call.stats = s;
  if (!previous) return;
  const stage = $("video-stage");
  const flowing = s.videoFlowing && s.videoIn?.frameWidth > 0;
  call.stalls = flowing ? 0 : call.stalls + 1;
  if (flowing) stage.classList.add("has-video");
  else if (call.stalls >= 2) {
    stage.classList.remove("has-video");
    $("ph-text").textContent = call.firstFrameAt ? "The caller's video is paused" : waitingText(call);
  }
  const aux = await inboundAudio(call.pc, call.auxTx);
  const auxFlowing = aux && call.auxPackets != null && aux.packetsReceived > call.auxPackets;
  call.auxPackets = aux?.packetsReceived ?? null;
  $("aux-chip").hidden = !auxFlowing;
  if (auxFlowing) $("aux-text").textContent = call.consult ? `You hear ${call.consult.colleague}` : "A supervisor is speaking to you · the caller can't hear";
  const q = $("quality");
  q.dataset.quality = s.quality;
  $("quality-text").textContent = { good: "Good connection", fair: "Fair connection", poor: "Poor connection" }[s.quality];
  const parts = [];
  if (s.rttMs != null) parts.push(`RTT ${Math.round(s.rttMs)} ms`);
  parts.push(`loss ${s.lossPct.toFixed(1)}%`);
  if (s.inKbps != null) parts.push(`${Math.round(s.inKbps)} kbit/s in`);
  if (flowing) parts.push(`${s.videoIn.frameWidth}×${s.videoIn.frameHeight} · ${Math.round(s.videoFps ?? 0)} fps`);
  $("net-detail").textContent = parts.join(" · ");
  q.title = parts.join("\n");
}

function setMuted(muted) {
  const call = state.call;
  if (!call) return;
  call.muted = muted;
  if (call.mic) call.mic.enabled = !muted;
  updateCallControls();
}

async function toggleCamera() {
  const call = state.call;
  if (!call) return;
  if (call.camera) {
    const track = call.camera;
    call.camera = null;
    await call.videoTx?.sender.replaceTrack(null);
    track.stop();
    $("self-view").hidden = true;
  } else {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
      const track = stream.getVideoTracks()[0];
      if (call.ended) {
        track.stop();
        return;
      }
      call.camera = track;
      await call.videoTx.sender.replaceTrack(track);
      $("self-video").srcObject = new MediaStream([track]);
      $("self-view").hidden = false;
    } catch {
      toast("The camera is blocked or in use.", { bad: true });
    }
  }
  updateCallControls();
}

function updateCallControls() {
  const call = state.call;
  const muted = Boolean(call?.muted);
  const cam = Boolean(call?.camera);
  const mute = $("mute-button");
  mute.setAttribute("aria-pressed", String(muted));
  mute.setAttribute("aria-label", muted ? "Unmute microphone (M)" : "Mute microphone (M)");
  mute.innerHTML = `${icon(muted ? "mic-off" : "mic", { size: 22 })}<kbd>M</kbd>`;
  const camera = $("camera-button");
  camera.setAttribute("aria-pressed", String(cam));
  camera.setAttribute("aria-label", cam ? "Turn camera off (C)" : "Turn camera on (C)");
  camera.innerHTML = `${icon(cam ? "video" : "video-off", { size: 22 })}<kbd>C</kbd>`;
  $("hangup-button").innerHTML = `${icon("phone", { size: 24 })}<kbd>H</kbd>`;
  const held = Boolean(call?.held);
  const consulting = Boolean(call?.consult);
  const colleague = Boolean(call?.consultFrom);
  const hold = $("hold-button");
  hold.setAttribute("aria-pressed", String(held && !consulting));
  hold.setAttribute("aria-label", held ? "Resume the call" : "Put the caller on hold");
  hold.title = held ? "Resume" : "Hold";
  hold.innerHTML = icon(held && !consulting ? "play" : "pause", { size: 22 });
  hold.disabled = consulting || colleague;
  const transfer = $("transfer-button");
  transfer.innerHTML = icon("phone-forwarded", { size: 22 });
  transfer.disabled = consulting || colleague;
  const snapshot = $("snapshot-button");
  snapshot.innerHTML = icon("camera", { size: 22 });
  const noVideo = call?.card?.media_source === "none";
  snapshot.disabled = colleague || noVideo;
  const blocked = { camera_blocked: "the caller's camera is blocked", camera_unavailable: "the caller has no camera" }[call?.card?.media_source_reason];
  const why = noVideo ? `No snapshot: ${blocked ?? "the caller isn't sending video (voice only)"}.` : colleague ? "No snapshot while you are consulted." : "";
  snapshot.title = why || "Snapshot";
  $("snapshot-why").textContent = why;
  $("hold-veil").hidden = !(held && !consulting);
  if (consulting) {
    $("hold-veil").hidden = false;
    $("hold-title").textContent = "Caller on hold during the consult";
    $("hold-text").textContent = "The caller hears nothing while you talk with your colleague.";
  } else {
    $("hold-title").textContent = "Caller on hold";
    $("hold-text").textContent = "They hear nothing and see a hold notice. Resume when you're ready.";
  }
}

async function hangup() {
  const call = state.call;
  if (call) {
    try {
      await state.signal?.request({ type: "call.hangup", call_id: call.id }, 5000);
    } catch (e) {
      if (!["call_ended", "unknown_call"].includes(e.code)) toast(e.reason, { bad: true });
    }
    if (state.call === call) endCallView({ call_id: call.id, reason: "agent_hangup", by: "agent", duration_s: (Date.now() - call.startedAt) / 1000 });
  } else if (state.staleCallId) {
    const callId = state.staleCallId;
    try {
      await state.signal?.request({ type: "call.hangup", call_id: callId }, 5000);
    } catch (e) {
      if (!["call_ended", "unknown_call"].includes(e.code)) toast(e.reason, { bad: true });
    }
    state.staleCallId = null;
    show("idle");
    renderCard(null);
  }
}

function cleanupCall(call) {
  call.ended = true;
  clearTimeout(call.disconnectTimer);
  for (const t of call.timers) clearInterval(t);
  call.pc?.close();
  call.mic?.stop();
  call.camera?.stop();
  for (const id of ["remote-audio", "remote-audio-2"]) {
    const audio = document.getElementById(id);
    if (audio) audio.srcObject = null;
  }
  $("remote-video").srcObject = null;
  $("self-video").srcObject = null;
  if (state.call === call) state.call = null;
}

function endCallView(message) {
  const call = state.call;
  if (!call) return;
  cleanupCall(call);
  // Dialogs about the call go with it.
  for (const id of ["snapshot-dialog", "transfer-dialog"]) if ($(id).open) $(id).close();
  $("side-tabs").hidden = true;
  selectPane("card");
  $("consult-bar").hidden = true;
  const seconds = message.duration_s ?? (Date.now() - call.startedAt) / 1000;
  const id = call.card.identity ?? {};
  const type = CALL_TYPE[call.card.call_type] ?? CALL_TYPE.voice;
  state.history.unshift({ callId: call.id, card: call.card, name: id.name || id.subject, type: call.card.call_type, seconds, reason: message.reason, at: new Date() });
  renderHistory();
  $("ended-icon").innerHTML = icon(message.reason === "transferred" ? "phone-forwarded" : "check-circle", { size: 44 });
  $("ended-title").textContent = message.reason === "transferred" ? `Call with ${id.name || "the caller"} transferred` : `Call with ${id.name || "the caller"} ended`;
  $("ended-text").textContent = message.reason === "transferred" ? `You handed the call to ${message.to}.` : `${END_TEXT[message.reason] ?? "The call ended"}.`;
  $("ended-facts").innerHTML = `
    <div><dt>Duration</dt><dd>${duration(seconds)}</dd></div>
    <div><dt>Type</dt><dd>${type.label}</dd></div>
    <div><dt>Ended by</dt><dd>${escapeHtml({ caller: "Caller", agent: "You", system: "System" }[message.by] ?? message.by ?? "–")}</dd></div>`;
  show("ended");
  // Wrap-up belongs to the agent who had the call at its end (not after a transfer or a consult).
  const wrap = !["transferred", "consult_ended"].includes(message.reason);
  state.endedCallId = wrap ? call.id : null;
  state.endedCard = call.card;
  showWrapUp(wrap);
  (wrap ? $("wrapup-disposition") : $("ended-next")).focus({ preventScroll: true });
  if (state.status === "busy") setStatus("available");
}

function renderHistory() {
  const list = $("history");
  const calls = state.history.length;
  const talk = state.history.reduce((sum, h) => sum + h.seconds, 0);
  $("stat-calls").textContent = String(calls);
  $("stat-talk").textContent = duration(talk);
  $("stat-avg").textContent = calls ? duration(talk / calls) : "–";
  if (!calls) return;
  list.innerHTML = state.history
    .slice(0, 8)
    .map((h) => {
      const type = CALL_TYPE[h.type] ?? CALL_TYPE.voice;
      const pending = h.callId && h.callId !== state.endedCallId && readDraft(h.callId);
      return `<li><span class="h-ico">${icon(type.icon, { size: 15 })}</span>
        <span class="h-main"><div class="h-name">${escapeHtml(h.name)}</div><div class="h-meta">${h.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} · ${escapeHtml(END_TEXT[h.reason] ?? h.reason)}</div></span>
        ${pending ? `<button class="btn xs" data-finish-wrapup="${escapeHtml(h.callId)}">Finish wrap-up</button>` : `<span class="h-dur">${duration(h.seconds)}</span>`}</li>`;
    })
    .join("");
}

// ------------------------------------------------------------------------------------------------ REST helper
async function api(path, { method = "GET", body = undefined, headers = {} } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, headers }); // the session cookie signs the request in
  } catch {
    throw new CallinError("network_error", "Can't reach the gateway.");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new CallinError(data.code || `http_${response.status}`, data.reason || `The gateway answered ${response.status}.`);
  return data;
}

const FILE_ERRORS = {
  attachment_too_large: "That file is too large (5 MB at most).",
  attachment_type: "Only PNG, JPEG, GIF, WebP, PDF and plain text files can be sent.",
  empty_attachment: "That file is empty.",
};

/** Upload a file to the call (the caller can fetch it with its token, staff with their session). */
async function uploadFile(callId, blob, name) {
  try {
    return await api(`/api/v1/calls/${encodeURIComponent(callId)}/attachments?name=${encodeURIComponent(name)}`, {
      method: "POST",
      body: blob,
      headers: { "Content-Type": "application/octet-stream" },
    });
  } catch (e) {
    throw new CallinError(e.code, FILE_ERRORS[e.code] ?? e.reason);
  }
}

function formError(id, text) {
  const el = $(id);
  el.hidden = !text;
  el.textContent = text ?? "";
}

// ------------------------------------------------------------------------------------------------ in-call panes
function resetInCallPanes() {
  $("side-tabs").hidden = false;
  selectPane("card");
  $("chat-log").innerHTML = '<li class="empty">Messages and files you exchange with the caller appear here.</li>';
  $("chat-badge").hidden = true;
  $("pushed-list").innerHTML = '<li class="empty">Nothing shared yet.</li>';
  formError("chat-error", null);
  formError("share-error", null);
}

function selectPane(name) {
  for (const b of $("side-tabs").querySelectorAll("[role=tab]")) b.setAttribute("aria-selected", String(b.dataset.pane === name));
  $("card").hidden = name !== "card";
  $("pane-chat").hidden = name !== "chat";
  $("pane-share").hidden = name !== "share";
  if (name === "chat") {
    $("chat-badge").hidden = true;
    if (state.call) state.call.unread = 0;
    const log = $("chat-log");
    log.scrollTop = log.scrollHeight;
  }
}

// ------------------------------------------------------------------------------------------------ hold and transfer
async function toggleHold() {
  const call = state.call;
  if (!call || call.consult) return;
  const held = !call.held;
  try {
    await state.signal.request({ type: held ? "call.hold" : "call.resume", call_id: call.id });
    call.held = held;
    updateCallControls();
  } catch (e) {
    toast(e.reason, { bad: true });
  }
}

let transferMode = "blind";

function setTransferMode(mode) {
  transferMode = mode;
  for (const b of $("transfer-modes").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
  const queueRow = $("transfer-queue-row");
  queueRow.hidden = mode === "warm";
  $("transfer-queue").hidden = mode === "warm";
  $("transfer-queue-list").hidden = mode === "warm";
  if (mode === "warm") document.querySelector('#transfer-form input[value="agent"]').checked = true;
  $("transfer-help").textContent = mode === "warm"
    ? "You talk to your colleague first while the caller waits on hold; then hand the call over or take it back."
    : "The call leaves you now and rings at the colleague or queue you choose.";
  $("transfer-go").textContent = mode === "warm" ? "Call colleague" : "Transfer";
}

async function openTransfer() {
  const call = state.call;
  if (!call || call.consult || call.consultFrom || $("transfer-dialog").open) return;
  formError("transfer-error", null);
  setTransferMode("blind");
  $("transfer-agent").value = "";
  $("transfer-queue").value = "";
  $("transfer-dialog").showModal();
  $("transfer-agent").focus();
  // A live directory of colleagues and queues (any signed-in user may read it), refreshed while the dialog is open.
  await loadDirectory();
  clearInterval(state.directoryTimer);
  state.directoryTimer = setInterval(() => ($("transfer-dialog").open ? loadDirectory() : clearInterval(state.directoryTimer)), 3000);
}

const DIRECTORY_STATUS = { available: "Available", away: "Away", ringing: "Ringing", busy: "On a call", wrap_up: "Wrap-up", offline: "Not signed in" };

async function loadDirectory() {
  let directory;
  try {
    directory = await api("/api/v1/directory");
  } catch (e) {
    formError("transfer-error", `The list of colleagues could not be loaded (${e.reason}); type a username instead.`);
    return;
  }
  const chosenAgent = $("transfer-agent").value.trim();
  const chosenQueue = $("transfer-queue").value.trim();
  $("transfer-agents").innerHTML = directory.agents.map((a) => `<option value="${escapeHtml(a.username)}">${escapeHtml(a.display_name)} · ${escapeHtml(DIRECTORY_STATUS[a.status] ?? a.status)}</option>`).join("");
  $("transfer-queues").innerHTML = directory.queues.map((q) => `<option value="${escapeHtml(q.name)}"></option>`).join("");
  $("transfer-directory").innerHTML = directory.agents
    .map((a) => `<li><button type="button" data-agent="${escapeHtml(a.username)}" aria-pressed="${a.username === chosenAgent}"${a.status === "offline" ? " disabled" : ""}>
      <span class="a-avatar">${escapeHtml(initials(a.display_name))}</span><span class="d-name">${escapeHtml(a.display_name)}<small>${escapeHtml(a.username)}${a.queues.length ? ` · ${escapeHtml(a.queues.join(", "))}` : ""}</small></span>
      <span class="status-tag" data-status="${escapeHtml(a.status)}">${escapeHtml(DIRECTORY_STATUS[a.status] ?? a.status)}</span></button></li>`)
    .join("");
  $("transfer-queue-list").innerHTML = directory.queues
    .map((q) => `<li><button type="button" data-queue="${escapeHtml(q.name)}" aria-pressed="${q.name === chosenQueue}">
      <span class="d-name">${escapeHtml(q.name)}<small>${q.open ? "open" : "closed"} · ${q.waiting} waiting</small></span>
      <span class="status-tag" data-status="${q.agents_available ? "available" : "away"}">${q.agents_available} available</span></button></li>`)
    .join("");
  $("transfer-queue-list").hidden = transferMode === "warm";
}

function pickTransferTarget(event) {
  const b = event.target.closest("button");
  if (!b || b.disabled) return;
  const toQueue = b.dataset.queue != null;
  $(toQueue ? "transfer-queue" : "transfer-agent").value = b.dataset.queue ?? b.dataset.agent;
  document.querySelector(`#transfer-form input[value="${toQueue ? "queue" : "agent"}"]`).checked = true;
  for (const x of document.querySelectorAll("#transfer-directory button, #transfer-queue-list button")) x.setAttribute("aria-pressed", String(x === b));
  formError("transfer-error", null);
}

async function submitTransfer(event) {
  event.preventDefault();
  const call = state.call;
  if (!call) return;
  const toQueue = document.querySelector('#transfer-form input[name="target"]:checked').value === "queue" && transferMode === "blind";
  const target = (toQueue ? $("transfer-queue") : $("transfer-agent")).value.trim();
  if (!target) {
    formError("transfer-error", toQueue ? "Enter the queue's name." : "Enter your colleague's username.");
    return;
  }
  const body = { type: "call.transfer", call_id: call.id, mode: transferMode };
  body[toQueue ? "to_queue" : "to_agent"] = target;
  $("transfer-go").disabled = true;
  try {
    await state.signal.request(body);
    $("transfer-dialog").close();
    if (transferMode === "warm") {
      call.consult = { colleague: target, state: "ringing" };
      renderConsultBar(call);
      updateCallControls();
    }
  } catch (e) {
    const why = { unknown_agent: `${target} is not signed in.`, target_unavailable: e.reason ? `${capitalize(e.reason)}: try again when they're available.` : null, unknown_queue: `There is no queue “${target}”.`, transfer_to_self: "You can't transfer a call to yourself." }[e.code];
    formError("transfer-error", why ?? e.reason);
  } finally {
    $("transfer-go").disabled = false;
  }
}

const capitalize = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

function renderConsultBar(call) {
  const bar = $("consult-bar");
  if (call?.consultFrom) {
    bar.hidden = false;
    bar.dataset.state = "colleague";
    $("consult-title").textContent = `${call.consultFrom.from_name ?? call.consultFrom.from} is consulting you`;
    $("consult-text").textContent = "The caller is on hold and can't hear you. They may hand the call over to you.";
    $("consult-complete").hidden = true;
    $("consult-cancel").hidden = true;
    return;
  }
  if (!call?.consult) {
    bar.hidden = true;
    return;
  }
  bar.hidden = false;
  bar.dataset.state = call.consult.state;
  $("consult-complete").hidden = false;
  $("consult-cancel").hidden = false;
  const joined = call.consult.state === "joined";
  $("consult-title").textContent = joined ? `Talking with ${call.consult.colleague}` : `Calling ${call.consult.colleague}…`;
  $("consult-text").textContent = joined ? "The caller is on hold. Hand the call over, or cancel to go back to the caller." : "The caller is on hold while it rings.";
  $("consult-complete").disabled = !joined;
}

function onConsultState(message) {
  const call = state.call;
  if (!call || call.id !== message.call_id) return;
  if (call.consultFrom) {
    // This console was called in for the consult.
    if (message.state === "completed") {
      call.consultFrom = null;
      renderConsultBar(call);
      updateCallControls();
      toast(`${message.colleague} handed the caller to you.`);
    } else {
      endCallView({ call_id: call.id, reason: "consult_ended", by: "agent" });
      toast(message.state === "cancelled" ? `${message.colleague || "Your colleague"} went back to the caller.` : "The consult ended.");
    }
    return;
  }
  if (message.state === "joined") {
    call.consult = { colleague: message.colleague, state: "joined" };
  } else {
    const text = { declined: `${message.colleague} declined the consult.`, ring_timeout: `${message.colleague} didn't answer.`, cancelled: "You're back with the caller." }[message.state];
    call.consult = null;
    call.held = false;
    if (text) toast(text, { bad: message.state !== "cancelled" });
  }
  renderConsultBar(call);
  updateCallControls();
}

async function consultStep(type) {
  const call = state.call;
  if (!call?.consult) return;
  try {
    await state.signal.request({ type, call_id: call.id });
    if (type === "transfer.cancel") {
      call.consult = null;
      call.held = false;
      renderConsultBar(call);
      updateCallControls();
    }
  } catch (e) {
    toast(e.reason, { bad: true });
  }
}

// ------------------------------------------------------------------------------------------------ chat

/** What the gateway read in a caller's picture: the codes in it (copyable) and where the photo was taken. All of it
 * comes from the caller: text only, never HTML. */
function scanDetails(scan) {
  const box = document.createElement("div");
  box.className = "chat-scan";
  box.dataset.testid = "chat-scan";
  for (const code of scan.codes ?? []) {
    const row = document.createElement("div");
    const kind = document.createElement("small");
    kind.textContent = code.format;
    const value = document.createElement("code");
    value.textContent = code.text;
    value.title = "Click to copy";
    value.tabIndex = 0;
    value.addEventListener("click", () => navigator.clipboard?.writeText(code.text).then(() => toast("Copied")).catch(() => {}));
    row.append(kind, " ", value);
    box.append(row);
  }
  if (scan.location) {
    const row = document.createElement("div");
    const where = document.createElement("a");
    const { lat, lon } = scan.location;
    where.href = `https://www.openstreetmap.org/?mlat=${encodeURIComponent(lat)}&mlon=${encodeURIComponent(lon)}#map=17/${encodeURIComponent(lat)}/${encodeURIComponent(lon)}`;
    where.target = "_blank";
    where.rel = "noopener noreferrer";
    where.textContent = `Photo taken at ${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`;
    row.append(where);
    box.append(row);
  }
  if (!box.childElementCount) {
    box.textContent = "No code found in this picture";
    box.classList.add("none");
  }
  return box;
}

function onChatMessage(message) {
  const call = state.call;
  if (!call || call.id !== message.call_id) return;
  const m = message.message;
  const log = $("chat-log");
  log.querySelector(".empty")?.remove();
  const mine = m.from?.username && m.from.username === state.account?.username;
  const li = document.createElement("li");
  li.className = `chat-msg ${mine ? "mine" : m.from?.role === "caller" ? "caller" : "staff"}`;
  const at = new Date((m.at ?? Date.now() / 1000) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  li.innerHTML = `<div class="chat-meta"><b></b><time>${at}</time></div><div class="chat-bubble"></div>`;
  li.querySelector("b").textContent = mine ? "You" : m.from?.name ?? "Caller";
  const bubble = li.querySelector(".chat-bubble");
  const a = m.attachment;
  if (a) {
    const link = document.createElement("a");
    link.href = a.url;
    link.download = a.name;
    link.className = a.mime?.startsWith("image/") ? "chat-image" : "chat-file";
    link.dataset.testid = "chat-attachment";
    if (a.mime?.startsWith("image/")) {
      link.innerHTML = `<img alt=""><span class="dl">${icon("download", { size: 14 })}${escapeHtml(a.name)} · ${Math.max(1, Math.round(a.size / 1024))} KB</span>`;
      link.querySelector("img").src = a.url;
      link.querySelector("img").alt = a.name;
    } else {
      link.innerHTML = `${icon("file-text", { size: 18 })}<span>${escapeHtml(a.name)}<small>${Math.max(1, Math.round(a.size / 1024))} KB · download</small></span>`;
    }
    bubble.append(link);
    if (a.scan) bubble.append(scanDetails(a.scan));
  }
  if (m.text) {
    const p = document.createElement("p");
    p.textContent = m.text;
    bubble.append(p);
  }
  log.append(li);
  log.scrollTop = log.scrollHeight;
  if (!mine && $("pane-chat").hidden) {
    call.unread += 1;
    const badge = $("chat-badge");
    badge.hidden = false;
    badge.textContent = String(call.unread);
    if (m.from?.role === "caller") toast(`${m.from.name ?? "The caller"}: ${m.text ?? a?.name ?? "sent a file"}`);
  }
}

async function sendChat({ text = "", file = null } = {}) {
  const call = state.call;
  if (!call) return;
  formError("chat-error", null);
  const line = text.trim();
  if (!line && !file) return;
  const form = $("chat-form");
  form.classList.add("busy");
  try {
    let attachment = null;
    if (file) attachment = await uploadFile(call.id, file, file.name || "file");
    const body = { type: "chat.send", call_id: call.id };
    if (line) body.text = line;
    if (attachment) body.attachment_id = attachment.id;
    await state.signal.request(body);
    if (line) $("chat-input").value = "";
  } catch (e) {
    formError("chat-error", e.reason);
  } finally {
    form.classList.remove("busy");
  }
}

// ------------------------------------------------------------------------------------------------ pushed content
let shareKind = "link";

function setShareKind(kind) {
  shareKind = kind;
  for (const b of $("share-kinds").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.kind === kind));
  for (const f of $("share-form").querySelectorAll("[data-for]")) f.hidden = f.dataset.for !== kind;
  formError("share-error", null);
}

async function pushContent(content) {
  const call = state.call;
  if (!call) return null;
  const sent = await state.signal.request({ type: "content.push", call_id: call.id, ...content });
  call.pushed.set(sent.content.content_id, sent.content);
  renderPushed(call);
  return sent.content;
}

async function submitShare(event) {
  event.preventDefault();
  const call = state.call;
  if (!call) return;
  formError("share-error", null);
  const title = $("share-title").value.trim();
  const content = { kind: shareKind };
  if (title) content.title = title;
  const button = $("share-send");
  button.disabled = true;
  try {
    if (shareKind === "link") {
      const url = $("share-url").value.trim();
      if (!/^https?:\/\/\S+$/.test(url)) throw new CallinError("invalid", "Enter a web address starting with https://");
      content.url = url;
    } else if (shareKind === "text") {
      const text = $("share-text").value.trim();
      if (!text) throw new CallinError("invalid", "Write the text to show.");
      content.text = text;
    } else {
      const file = $("share-file").files?.[0];
      if (!file) throw new CallinError("invalid", "Choose an image.");
      const attachment = await uploadFile(call.id, file, file.name || "image");
      if (!attachment.mime?.startsWith("image/")) throw new CallinError("invalid", "That file is not an image.");
      content.attachment_id = attachment.id;
    }
    await pushContent(content);
    $("share-title").value = "";
    $("share-url").value = "";
    $("share-text").value = "";
    $("share-file").value = "";
  } catch (e) {
    formError("share-error", e.reason);
  } finally {
    button.disabled = false;
  }
}

const CONTENT_STATUS = { sent: "Sent", seen: "Seen", opened: "Opened", dismissed: "Dismissed" };

function renderPushed(call) {
  const list = $("pushed-list");
  if (!call.pushed.size) {
    list.innerHTML = '<li class="empty">Nothing shared yet.</li>';
    return;
  }
  list.innerHTML = [...call.pushed.values()]
    .reverse()
    .map((c) => {
      const kindIcon = { link: "link", image: "image", text: "file-text" }[c.kind] ?? "file-text";
      const detail = c.kind === "link" ? c.url : c.kind === "text" ? c.text : c.attachment?.name ?? c.url ?? "";
      const thumb = c.kind === "image" && c.attachment ? `<img class="pushed-thumb" src="${escapeHtml(c.attachment.url)}" alt="">` : `<span class="pushed-ico">${icon(kindIcon, { size: 16 })}</span>`;
      return `<li class="pushed-item" data-content-id="${escapeHtml(c.content_id)}">${thumb}
        <span class="pushed-main"><b>${escapeHtml(c.title || { link: "Link", text: "Text card", image: "Image" }[c.kind])}</b><small>${escapeHtml(detail)}</small></span>
        <span class="pushed-status" data-status="${escapeHtml(c.status)}" data-testid="content-status">${icon(c.status === "opened" ? "eye" : c.status === "dismissed" ? "x" : "check", { size: 13 })}${CONTENT_STATUS[c.status] ?? c.status}</span></li>`;
    })
    .join("");
}

function onContentStatus(message) {
  const call = state.call;
  if (!call || call.id !== message.call_id) return;
  const item = call.pushed.get(message.content_id);
  if (!item) return;
  item.status = message.status;
  renderPushed(call);
  if (message.status === "opened") toast(`The caller opened “${item.title || item.url || "what you shared"}”.`);
}

// ------------------------------------------------------------------------------------------------ snapshot
const PEN_COLOURS = [["#ef4444", "Red"], ["#facc15", "Yellow"], ["#22c55e", "Green"], ["#3b82f6", "Blue"], ["#ffffff", "White"]];
const snap = { image: null, strokes: [], colour: PEN_COLOURS[0][0], drawing: null, attachment: null };

async function openSnapshot() {
  const call = state.call;
  if (!call || $("snapshot-button").disabled) return;
  formError("snap-error", null);
  snap.image = null;
  snap.strokes = [];
  snap.attachment = null;
  $("snap-send").disabled = true;
  const canvas = $("snap-canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("snapshot-dialog").showModal();
  await loadSnapshot(call);
}

const SNAPSHOT_FAILED = {
  no_video: "The caller isn't sending video right now, so there is nothing to take a picture of.",
  snapshot_failed: "No picture could be taken from the caller's video.",
};

/** Take a still of the caller's video: one quiet retry (a keyframe may be on its way), then "Try again". */
async function loadSnapshot(call) {
  $("snap-loading").hidden = false;
  $("snap-retry").hidden = true;
  $("snap-loading-text").textContent = "Taking a snapshot…";
  let failure = null;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    if (attempt) {
      $("snap-loading-text").textContent = "Trying once more…";
      await sleep(800);
    }
    if (state.call !== call || !$("snapshot-dialog").open) return;
    try {
      const still = await api(`/api/v1/calls/${encodeURIComponent(call.id)}/snapshot`, { method: "POST" });
      const response = await fetch(still.url);
      if (!response.ok) throw new CallinError("snapshot_failed", "The snapshot could not be loaded.");
      const bitmap = await createImageBitmap(await response.blob());
      if (state.call !== call || !$("snapshot-dialog").open) return;
      snap.attachment = still;
      snap.image = bitmap;
      const canvas = $("snap-canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      canvas.style.width = `min(100%, ${((62 * bitmap.width) / bitmap.height).toFixed(2)}vh)`; // keeps the picture's shape
      $("snap-loading").hidden = true;
      $("snap-send").disabled = false;
      redrawSnapshot();
      return;
    } catch (e) {
      failure = e;
    }
  }
  $("snap-loading-text").textContent = SNAPSHOT_FAILED[failure?.code] ?? failure?.reason ?? "The snapshot failed.";
  $("snap-retry").hidden = false;
  $("snap-retry").focus();
}

function redrawSnapshot() {
  const canvas = $("snap-canvas");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (snap.image) g.drawImage(snap.image, 0, 0);
  g.lineCap = "round";
  g.lineJoin = "round";
  for (const stroke of snap.strokes) {
    g.strokeStyle = stroke.colour;
    g.lineWidth = Math.max(3, canvas.width / 110);
    g.shadowColor = "rgba(0,0,0,.45)";
    g.shadowBlur = 2;
    g.beginPath();
    stroke.points.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
    if (stroke.points.length === 1) g.lineTo(stroke.points[0][0] + 0.1, stroke.points[0][1]);
    g.stroke();
  }
  g.shadowBlur = 0;
}

function canvasPoint(event) {
  const canvas = $("snap-canvas");
  const rect = canvas.getBoundingClientRect();
  return [((event.clientX - rect.left) * canvas.width) / rect.width, ((event.clientY - rect.top) * canvas.height) / rect.height];
}

function initSnapshotCanvas() {
  const canvas = $("snap-canvas");
  canvas.addEventListener("pointerdown", (e) => {
    if (!snap.image) return;
    canvas.setPointerCapture(e.pointerId);
    snap.drawing = { colour: snap.colour, points: [canvasPoint(e)] };
    snap.strokes.push(snap.drawing);
    redrawSnapshot();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!snap.drawing) return;
    snap.drawing.points.push(canvasPoint(e));
    redrawSnapshot();
  });
  const stop = () => (snap.drawing = null);
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  const swatches = $("snap-colors");
  swatches.innerHTML = PEN_COLOURS.map(([c, name], i) => `<button type="button" role="radio" aria-checked="${i === 0}" aria-label="${name}" title="${name}" data-colour="${c}" style="--swatch:${c}"></button>`).join("");
  swatches.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    snap.colour = b.dataset.colour;
    for (const x of swatches.querySelectorAll("button")) x.setAttribute("aria-checked", String(x === b));
  });
  $("snap-undo").addEventListener("click", () => {
    snap.strokes.pop();
    redrawSnapshot();
  });
  $("snap-clear").addEventListener("click", () => {
    snap.strokes = [];
    redrawSnapshot();
  });
  $("snap-close").addEventListener("click", () => $("snapshot-dialog").close());
  $("snap-send").addEventListener("click", sendSnapshot);
}

async function sendSnapshot() {
  const call = state.call;
  if (!call || !snap.image) return;
  const button = $("snap-send");
  button.disabled = true;
  formError("snap-error", null);
  try {
    const blob = await new Promise((resolve) => $("snap-canvas").toBlob(resolve, "image/png"));
    const attachment = await uploadFile(call.id, blob, "snapshot-annotated.png");
    const title = $("snap-title").value.trim() || "From your agent";
    await pushContent({ kind: "image", title, attachment_id: attachment.id });
    $("snapshot-dialog").close();
    selectPane("share");
    toast("The picture is on the caller's screen.");
  } catch (e) {
    formError("snap-error", e.reason ?? "The picture could not be sent.");
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ wrap-up
// After-call work: the ended view holds the wrap-up form. Its input is kept as a draft (sessionStorage, per call)
// until it is saved, so a reload or a call ringing meanwhile loses nothing; while the form holds unsaved input the
// console keeps the agent in wrap-up (wrap_up.extend), so that no call rings over it.
function readDraft(callId) {
  try {
    const draft = JSON.parse(sessionStorage.getItem(DRAFT_PREFIX + callId) ?? "null");
    return draft && (draft.disposition || draft.notes) ? draft : null;
  } catch {
    return null;
  }
}

function saveDraft() {
  const callId = state.endedCallId;
  if (!callId) return;
  const draft = { disposition: $("wrapup-disposition").value, notes: $("wrapup-notes").value };
  if (draft.disposition || draft.notes.trim()) sessionStorage.setItem(DRAFT_PREFIX + callId, JSON.stringify(draft));
  else sessionStorage.removeItem(DRAFT_PREFIX + callId);
  $("wrapup-draft").hidden = !readDraft(callId);
}

function formDirty() {
  return Boolean(state.endedCallId && readDraft(state.endedCallId));
}

function showWrapUp(visible) {
  $("wrapup").hidden = !visible;
  $("ended-next").hidden = visible;
  formError("wrapup-error", null);
  const draft = visible && state.endedCallId ? readDraft(state.endedCallId) : null;
  $("wrapup-disposition").value = draft?.disposition ?? "";
  $("wrapup-notes").value = draft?.notes ?? "";
  $("wrapup-draft").hidden = !draft;
  $("wrapup-submit").disabled = false;
  renderWrapUpTimer();
}

/** Open the wrap-up of an earlier call whose note was not saved (from the recent calls list). */
function finishWrapUp(callId) {
  const h = state.history.find((x) => x.callId === callId);
  if (!h || state.call || state.offer) return;
  state.endedCallId = callId;
  state.endedCard = h.card;
  renderCard(h.card);
  const id = h.card?.identity ?? {};
  $("ended-icon").innerHTML = icon("file-text", { size: 44 });
  $("ended-title").textContent = `Wrap-up of the call with ${id.name || "the caller"}`;
  $("ended-text").textContent = "Your note was kept. Save it when you're done.";
  $("ended-facts").innerHTML = "";
  show("ended");
  showWrapUp(true);
  renderHistory();
  $("wrapup-notes").focus({ preventScroll: true });
}

function onWrapUpStatus(message) {
  if (message.status === "wrap_up") {
    const extended = message.reason === "wrap_up_extended" ? (state.wrapUp?.extended ?? 0) + 1 : 0;
    state.wrapUp = { callId: message.call_id, until: Date.now() + (message.wrap_up_s ?? 0) * 1000, extended };
  } else if (state.wrapUp) {
    const reason = message.reason;
    state.wrapUp = null;
    if (reason === "wrap_up_timeout" && !$("view-ended").hidden && !$("wrapup").hidden) {
      toast(formDirty() ? "Wrap-up time is over: calls can ring again. Your note is kept; save it when you can." : "Wrap-up time is over: you can take calls again. You can still save the wrap-up.");
    }
  }
  renderWrapUpTimer();
}

async function extendWrapUp(w) {
  w.extending = true;
  try {
    const reply = await state.signal.request({ type: "wrap_up.extend", call_id: w.callId });
    if (state.wrapUp === w) onWrapUpStatus(reply);
  } catch (e) {
    w.limit = e.reason ?? "Save the note now.";
  } finally {
    w.extending = false;
  }
  renderWrapUpTimer();
}

function renderWrapUpTimer() {
  const el = $("wrapup-timer");
  const w = state.wrapUp;
  if (!w || (state.endedCallId && w.callId !== state.endedCallId)) {
    el.hidden = true;
    $("ended-dismiss").textContent = "Ready";
    return;
  }
  const left = Math.max(0, (w.until - Date.now()) / 1000);
  // Unsaved input a few seconds before the time runs out: ask for more, so that no call rings over the note.
  if (left <= 5 && !w.extending && !w.limit && formDirty() && state.signal?.open && !$("view-ended").hidden) extendWrapUp(w);
  el.hidden = false;
  el.dataset.state = w.limit ? "limit" : w.extended ? "held" : "running";
  el.textContent = w.limit
    ? `${duration(left)} left · ${w.limit}`
    : w.extended
      ? `${duration(left)} · held while you write · no calls meanwhile`
      : `${duration(left)} left · no calls meanwhile`;
  $("ended-dismiss").textContent = "Ready";
}

async function submitWrapUp(event) {
  event.preventDefault();
  const callId = state.endedCallId;
  if (!callId) return;
  const body = { type: "wrap_up.submit", call_id: callId };
  const disposition = $("wrapup-disposition").value;
  const notes = $("wrapup-notes").value.trim();
  if (disposition) body.disposition = disposition;
  if (notes) body.notes = notes;
  if (!disposition && !notes) {
    formError("wrapup-error", "Choose an outcome or write a note.");
    return;
  }
  $("wrapup-submit").disabled = true;
  formError("wrapup-error", null);
  try {
    // The call's record is written just after it ends: wait for it rather than fail.
    for (let attempt = 0; ; attempt += 1) {
      try {
        await state.signal.request(body);
        break;
      } catch (e) {
        if (e.code !== "call_not_ended" && e.code !== "unknown_call") throw e;
        if (attempt >= 5) throw e;
        await sleep(400);
      }
    }
    sessionStorage.removeItem(DRAFT_PREFIX + callId);
    if (state.endedCallId === callId) {
      state.endedCallId = null;
      state.endedCard = null;
    }
    if (state.wrapUp?.callId === callId) state.wrapUp = null;
    toast("Wrap-up saved.");
    renderHistory();
    if (!state.call && !state.offer) {
      show("idle");
      renderCard(null);
    }
  } catch (e) {
    formError("wrapup-error", e.reason ?? "The wrap-up could not be saved.");
    $("wrapup-submit").disabled = false;
  }
}

// ------------------------------------------------------------------------------------------------ wallboard
function isSupervisor() {
  return SUPERVISOR_ROLES.has(state.account?.role);
}

async function setTab(tab) {
  if (tab === "wallboard" && !isSupervisor()) tab = "calls";
  state.tab = tab;
  for (const b of $("nav-tabs").querySelectorAll("button")) {
    if (b.dataset.tab === tab) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  document.querySelector(".workspace").hidden = tab !== "calls";
  $("wallboard").hidden = tab !== "wallboard";
  $("shortcuts").hidden = tab !== "calls";
  document.body.dataset.tab = tab;
  if (tab === "wallboard") await subscribeWallboard();
}

async function subscribeWallboard() {
  if (!state.signal?.open) return;
  try {
    renderWallboard(await state.signal.request({ type: "wallboard.subscribe" }));
  } catch (e) {
    toast(e.reason, { bad: true });
  }
}

const AGENT_STATUS_ORDER = ["busy", "ringing", "wrap_up", "available", "away", "offline"];

function since(unix, offset) {
  return unix ? duration(Date.now() / 1000 + offset - unix) : "–";
}

function renderWallboard(board) {
  const offset = board.at - Date.now() / 1000; // the gateway's clock minus ours
  state.wallboard = { ...board, offset };
  const tiles = $("wb-tiles");
  const available = board.agents.filter((a) => a.status === "available").length;
  const staffed = board.agents.filter((a) => a.status !== "offline").length;
  const queues = board.queues.length ? board.queues : [{ name: "default", waiting: 0, oldest_since: null }];
  tiles.innerHTML =
    queues
      .map(
        (q) => `<div class="tile${q.waiting ? " busy" : ""}" data-queue="${escapeHtml(q.name)}"><span class="t-label">${icon("users", { size: 14 })}Queue · ${escapeHtml(q.name)}</span>
      <b class="t-value">${q.waiting}</b><span class="t-sub">waiting${q.oldest_since ? ` · longest <span class="tick" data-since="${q.oldest_since}">${since(q.oldest_since, offset)}</span>` : ""}</span></div>`,
      )
      .join("") +
    `<div class="tile"><span class="t-label">${icon("phone", { size: 14 })}Calls in progress</span><b class="t-value">${board.calls.length}</b><span class="t-sub">${board.calls.filter((c) => c.held).length} on hold · ${board.calls.filter((c) => c.consult).length} in consult</span></div>
     <div class="tile"><span class="t-label">${icon("headphones", { size: 14 })}Agents</span><b class="t-value">${available}<small> / ${staffed}</small></b><span class="t-sub">available / signed in</span></div>`;

  $("wb-calls-count").textContent = String(board.calls.length);
  $("wb-calls").innerHTML = board.calls.length
    ? `<table class="wb-table"><thead><tr><th>Caller</th><th>Agent</th><th>Queue</th><th>Duration</th><th>State</th><th></th></tr></thead><tbody>${board.calls
        .map((c) => {
          const flags = [];
          if (c.held) flags.push('<span class="flag hold">On hold</span>');
          if (c.consult) flags.push(`<span class="flag consult">Consult · ${escapeHtml(c.consult)}</span>`);
          for (const [who, mode] of Object.entries(c.supervisors ?? {})) flags.push(`<span class="flag sv">${escapeHtml(who)} · ${escapeHtml(mode)}</span>`);
          if (!flags.length) flags.push('<span class="flag talk">Talking</span>');
          const mine = state.supervise?.callId === c.call_id;
          const actions = ["monitor", "whisper", "barge"]
            .map((m) => `<button class="btn xs${mine && state.supervise.mode === m ? " on" : ""}" data-supervise="${m}" data-call="${escapeHtml(c.call_id)}">${capitalize(m)}</button>`)
            .join("");
          return `<tr data-call-id="${escapeHtml(c.call_id)}"${mine ? ' class="mine"' : ""}><td><b>${escapeHtml(c.caller)}</b><small>${escapeHtml(c.call_type)}</small></td><td>${escapeHtml(c.agent ?? "–")}</td><td>${escapeHtml(c.queue)}</td>
            <td class="num"><span class="tick" data-since="${c.since ?? ""}">${since(c.since, offset)}</span></td><td>${flags.join(" ")}</td><td class="sv-buttons">${actions}${mine ? '<button class="btn xs danger" data-supervise-stop>Stop</button>' : ""}</td></tr>`;
        })
        .join("")}</tbody></table>`
    : '<p class="wb-empty">No calls in progress.</p>';

  $("wb-waiting-count").textContent = String(board.waiting.length);
  $("wb-waiting").innerHTML = board.waiting.length
    ? `<table class="wb-table"><thead><tr><th>Caller</th><th>Queue</th><th>Priority</th><th>Waiting</th><th>State</th></tr></thead><tbody>${board.waiting
        .map((w) => {
          const st = w.callback ? '<span class="flag cb">Callback</span>' : w.ringing_at ? `<span class="flag ring">Ringing ${escapeHtml(w.ringing_at)}</span>` : '<span class="flag wait">Waiting</span>';
          return `<tr><td><b>${escapeHtml(w.caller)}</b><small>${escapeHtml(w.call_type)}</small></td><td>${escapeHtml(w.queue)}</td><td class="num">${w.priority ?? 0}</td><td class="num"><span class="tick" data-since="${w.since}">${since(w.since, offset)}</span></td><td>${st}</td></tr>`;
        })
        .join("")}</tbody></table>`
    : '<p class="wb-empty">Nobody is waiting.</p>';

  const agents = [...board.agents].sort((a, b) => AGENT_STATUS_ORDER.indexOf(a.status) - AGENT_STATUS_ORDER.indexOf(b.status) || a.username.localeCompare(b.username));
  $("wb-agents-count").textContent = String(agents.length);
  $("wb-agents").innerHTML = `<ul class="wb-agent-list">${agents
    .map(
      (a) => `<li><span class="a-avatar">${escapeHtml(initials(a.display_name || a.username))}</span><span class="a-main"><b>${escapeHtml(a.display_name || a.username)}</b><small>${escapeHtml(a.username)}</small></span>
      <span class="status-tag" data-status="${escapeHtml(a.status)}">${escapeHtml(STATUS_TEXT[a.status] ?? a.status)}</span><span class="a-since">${a.since && a.status === "available" ? `idle <span class="tick" data-since="${a.since}">${since(a.since, offset)}</span>` : ""}</span></li>`,
    )
    .join("")}</ul>`;
  renderSupervisePanel();
}

function tickWallboard() {
  const board = state.wallboard;
  if (!board || $("wallboard").hidden) return;
  for (const el of document.querySelectorAll("#wallboard .tick")) {
    const at = Number(el.dataset.since);
    if (at) el.textContent = since(at, board.offset);
  }
}

// ------------------------------------------------------------------------------------------------ supervise
async function supervise(callId, mode) {
  if (state.supervise && state.supervise.callId !== callId) await stopSupervising(true);
  const existing = state.supervise;
  try {
    const started = await state.signal.request({ type: "supervise.start", call_id: callId, mode });
    if (existing) {
      existing.mode = mode;
      if (existing.mic) existing.mic.enabled = mode !== "monitor" && !existing.muted;
      renderSupervisePanel();
      if (state.wallboard) renderWallboard(state.wallboard);
      return;
    }
    await startSupervisePeer(callId, mode, started.card);
  } catch (e) {
    toast(e.reason ?? "Supervision failed.", { bad: true });
  }
}

async function startSupervisePeer(callId, mode, card) {
  const pc = new RTCPeerConnection({ iceServers: iceServersFrom(state.welcome?.ice_servers), bundlePolicy: "max-bundle" });
  // Section 1: my microphone out, the caller in. Video: the caller's, receive only. Section 2: the agent in.
  const sv = {
    callId,
    mode,
    card,
    pc,
    audioTx: pc.addTransceiver("audio", { direction: "sendrecv" }),
    videoTx: pc.addTransceiver("video", { direction: "recvonly" }),
    auxTx: pc.addTransceiver("audio", { direction: "recvonly" }),
    mic: null,
    muted: false,
    pending: [],
    offerSent: false,
    gathered: 0,
  };
  preferCodec(sv.videoTx, "video/VP8");
  state.supervise = sv;
  pc.addEventListener("track", (e) => {
    if (e.transceiver === sv.videoTx) {
      const video = $("sv-video");
      video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
      $("sv-novideo").hidden = true;
      return;
    }
    const audio = audioElement(e.transceiver === sv.auxTx ? "sv-audio-agent" : "sv-audio-caller");
    audio.srcObject = new MediaStream([e.track]);
    audio.play().catch(() => {});
  });
  pc.addEventListener("icecandidate", (e) => {
    const message = candidateMessage(e.candidate, callId);
    if (!message) return; // a candidate the gateway refuses (see candidateMessage)
    if (message.candidate) sv.gathered += 1;
    else if (!sv.gathered) return;
    if (!sv.offerSent) sv.pending.push(message);
    else state.signal?.send({ ...message, id: state.signal.nextId() });
  });
  renderSupervisePanel();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS });
    sv.mic = stream.getAudioTracks()[0];
    sv.mic.enabled = mode !== "monitor";
    await sv.audioTx.sender.replaceTrack(sv.mic);
  } catch {
    toast("Microphone blocked: you can listen, but nobody can hear you.", { bad: true });
  }
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await state.signal.request({ type: "sdp.offer", call_id: callId, sdp: pc.localDescription.sdp });
  sv.offerSent = true;
  for (const m of sv.pending) state.signal.send({ ...m, id: state.signal.nextId() });
  sv.pending = [];
  if (state.supervise === sv) await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  if (state.wallboard) renderWallboard(state.wallboard);
}

async function stopSupervising(tell = true) {
  const sv = state.supervise;
  if (!sv) return;
  state.supervise = null;
  if (tell && state.signal?.open) {
    try {
      await state.signal.request({ type: "supervise.stop", call_id: sv.callId });
    } catch {
      /* the call may have ended */
    }
  }
  sv.pc.close();
  sv.mic?.stop();
  $("sv-video").srcObject = null;
  for (const id of ["sv-audio-agent", "sv-audio-caller"]) {
    const a = document.getElementById(id);
    if (a) a.srcObject = null;
  }
  renderSupervisePanel();
  if (state.wallboard) renderWallboard(state.wallboard);
}

const MODE_TEXT = {
  monitor: "You hear the caller and the agent and see the caller's video. Nobody hears you.",
  whisper: "The agent hears you; the caller doesn't. Coach them quietly.",
  barge: "You've joined the conversation: the caller and the agent both hear you.",
};

function renderSupervisePanel() {
  const sv = state.supervise;
  const panel = $("wb-supervise");
  panel.hidden = !sv;
  if (!sv) return;
  const live = state.wallboard?.calls.find((c) => c.call_id === sv.callId);
  const caller = live?.caller ?? sv.card?.identity?.name ?? "the caller";
  const username = live?.agent ?? sv.card?.agent;
  const agent = state.wallboard?.agents.find((a) => a.username === username)?.display_name ?? username ?? "the agent";
  panel.dataset.mode = sv.mode;
  $("sv-eyebrow").textContent = { monitor: "Monitoring", whisper: "Whispering", barge: "Barged in" }[sv.mode];
  $("sv-title").textContent = `${caller} with ${agent}`;
  $("sv-text").textContent = MODE_TEXT[sv.mode];
  for (const b of $("sv-modes").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.mode === sv.mode));
  const mute = $("sv-mute");
  mute.hidden = sv.mode === "monitor";
  mute.setAttribute("aria-pressed", String(sv.muted));
  mute.textContent = sv.muted ? "Unmute me" : "Mute me";
}

// ------------------------------------------------------------------------------------------------ devices
// Chosen at sign-in and tested there (a user gesture), so that Accept does not stop to ask for the microphone.
const devices = {
  mic: localStorage.getItem(DEVICE_KEYS.mic) ?? "",
  camera: localStorage.getItem(DEVICE_KEYS.camera) ?? "",
  speaker: localStorage.getItem(DEVICE_KEYS.speaker) ?? "",
  test: null, // {stream, ctx, timer, stop}
  level: 0, // the loudest microphone level seen in the last test (RMS, 0-1)
};

function audioConstraints() {
  return devices.mic ? { ...AUDIO_CONSTRAINTS, deviceId: { exact: devices.mic } } : AUDIO_CONSTRAINTS;
}

function videoConstraints() {
  const base = { width: { ideal: 640 }, height: { ideal: 480 } };
  return devices.camera ? { ...base, deviceId: { exact: devices.camera } } : base;
}

function routeToSpeaker(audio) {
  if (devices.speaker && audio.setSinkId) audio.setSinkId(devices.speaker).catch(() => {});
}

function fillDevices(id, list, chosen, noun) {
  const select = $(id);
  select.replaceChildren(new Option("System default", ""));
  list
    .filter((d) => d.deviceId && d.deviceId !== "default")
    .forEach((d, i) => select.append(new Option(d.label || `${noun} ${i + 1}`, d.deviceId)));
  select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "";
}

/** Whether the microphone is allowed yet (asked at Accept otherwise): said in the devices card. */
async function checkMicPermission() {
  const status = await navigator.permissions?.query({ name: "microphone" }).catch(() => null);
  if (!status || devices.test) return;
  const say = () => {
    if (devices.test) return;
    if (status.state === "granted") devStatus("Microphone allowed: Accept connects you at once.");
    else if (status.state === "denied") devStatus("The microphone is blocked for this site: callers would not hear you. Allow it (the icon at the left of the address bar).", true);
    else devStatus("Test your microphone now, so that Accept does not stop to ask for it.");
  };
  status.onchange = say;
  say();
}

async function listDevices() {
  const all = (await navigator.mediaDevices?.enumerateDevices?.().catch(() => null)) ?? [];
  fillDevices("dev-mic", all.filter((d) => d.kind === "audioinput"), devices.mic, "Microphone");
  fillDevices("dev-camera", all.filter((d) => d.kind === "videoinput"), devices.camera, "Camera");
  fillDevices("dev-speaker", all.filter((d) => d.kind === "audiooutput"), devices.speaker, "Speaker");
  $("dev-speaker").disabled = !("setSinkId" in HTMLMediaElement.prototype);
}

function chooseDevice(kind, value) {
  devices[kind] = value;
  localStorage.setItem(DEVICE_KEYS[kind], value);
  if (kind === "speaker") for (const id of ["remote-audio", "remote-audio-2"]) document.getElementById(id) && routeToSpeaker(document.getElementById(id));
  if (devices.test) (devices.test.kind === "mic" ? testMicrophone : testCamera)();
}

function devStatus(text, bad = false) {
  const el = $("dev-status");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

function stopDeviceTest() {
  const t = devices.test;
  devices.test = null;
  if (!t) return;
  clearInterval(t.timer);
  clearTimeout(t.stop);
  for (const track of t.stream.getTracks()) track.stop();
  t.ctx?.close().catch(() => {});
  $("dev-level-bar").style.width = "0";
  $("dev-preview").srcObject = null;
  $("dev-preview").hidden = true;
}

function blockedText(e, what) {
  return e?.name === "NotAllowedError"
    ? `The ${what} is blocked for this site: allow it (the icon at the left of the address bar), then test again.`
    : `No ${what} could be opened${e?.name === "NotFoundError" ? ": none is connected" : " (it may be in use by another app)"}.`;
}

async function testMicrophone() {
  stopDeviceTest();
  devStatus("Asking for the microphone…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints() });
  } catch (e) {
    devStatus(blockedText(e, "microphone"), true);
    return;
  }
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  devices.level = 0;
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    const rms = Math.sqrt(sum / samples.length);
    devices.level = Math.max(devices.level, rms);
    $("dev-level-bar").style.width = `${Math.min(100, Math.round(rms * 400))}%`;
  }, 100);
  devices.test = { kind: "mic", stream, ctx, timer, stop: setTimeout(stopDeviceTest, 10000) };
  devStatus(`Microphone allowed (${stream.getAudioTracks()[0]?.label || "default"}). Speak: the bar moves when it hears you.`);
  listDevices(); // the names of the devices are readable once one is allowed
}

async function testCamera() {
  stopDeviceTest();
  devStatus("Asking for the camera…");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
  } catch (e) {
    devStatus(blockedText(e, "camera"), true);
    return;
  }
  const preview = $("dev-preview");
  preview.srcObject = stream;
  preview.hidden = false;
  preview.play().catch(() => {});
  devices.test = { kind: "camera", stream, ctx: null, timer: null, stop: setTimeout(stopDeviceTest, 10000) };
  devStatus(`Camera allowed (${stream.getVideoTracks()[0]?.label || "default"}). The preview stops in 10 s.`);
  listDevices();
}

// ------------------------------------------------------------------------------------------------ ring sound, notifications
function renderSoundBlocked() {
  $("sound-blocked").hidden = !(ringer.enabled && ringer.blocked && !$("app").hidden);
}

function renderNotifyButton() {
  const b = $("notify-enable");
  const supported = "Notification" in window;
  const permission = supported ? Notification.permission : "denied";
  b.hidden = !supported;
  b.disabled = permission !== "default";
  b.lastChild.textContent = permission === "granted" ? "Notifications on" : permission === "denied" ? "Notifications blocked" : "Notify me of calls";
  b.title = permission === "denied" ? "Allow notifications for this site in the browser's settings" : "A desktop notification when a call rings while this tab is hidden";
}

async function enableNotifications() {
  if (!("Notification" in window)) return;
  const result = await Notification.requestPermission().catch(() => "denied");
  renderNotifyButton();
  devStatus(result === "granted" ? "You'll get a desktop notification when a call rings while this tab is hidden." : "Notifications are blocked for this site.", result !== "granted");
}

/** A call rings while the agent looks at another tab: a desktop notification (permission asked on a click). */
function notifyRing(message) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  const id = message.card?.identity ?? {};
  const type = CALL_TYPE[message.card?.call_type] ?? CALL_TYPE.voice;
  try {
    const n = new Notification(`Incoming ${type.label.toLowerCase()} · Callin`, {
      body: `${id.name || id.subject || "A caller"} is calling. Open the console to answer.`,
      tag: `callin-${message.call_id}`,
      requireInteraction: true,
    });
    n.addEventListener("click", () => {
      window.focus();
      n.close();
    });
    state.notification = n;
  } catch {
    /* notifications unavailable */
  }
}

function closeNotification() {
  state.notification?.close();
  state.notification = null;
}

// ------------------------------------------------------------------------------------------------ inbox
// Callback requests waiting and messages left in this agent's queues (GET /api/v1/agent/inbox), refreshed while idle.
async function loadInbox() {
  if (!state.account || !state.signal) return;
  try {
    state.inbox = await api("/api/v1/agent/inbox");
  } catch {
    return; // shown again at the next refresh
  }
  renderInbox();
}

function renderInbox() {
  const { callbacks, messages } = state.inbox;
  const total = callbacks.length + messages.length;
  $("inbox-count").textContent = String(total);
  const view = document.body.dataset.view;
  $("inbox-section").hidden = !total || view === "ringing" || view === "call";
  const list = $("inbox-list");
  list.replaceChildren();
  for (const c of callbacks) {
    const li = document.createElement("li");
    li.dataset.callbackId = c.call_id;
    li.innerHTML = `<span class="h-ico">${icon("phone-incoming", { size: 15 })}</span><span class="h-main"><div class="h-name"></div><div class="h-meta"></div></span><button class="btn xs" data-take="${escapeHtml(c.call_id)}">Call back now</button>`;
    li.querySelector(".h-name").textContent = c.caller;
    li.querySelector(".h-meta").textContent = `Callback · ${c.queue}${c.phone ? ` · ${c.phone}` : ""} · ${ago(c.requested_at)}${c.ringing_at ? ` · ringing at ${c.ringing_at}` : ""}`;
    const take = li.querySelector("button");
    take.disabled = Boolean(c.ringing_at) || state.status !== "available" || Boolean(state.call);
    take.title = take.disabled ? (c.ringing_at ? "It is ringing at an agent now" : "Be available to take it") : "It rings here now";
    list.append(li);
  }
  for (const m of messages) {
    const li = document.createElement("li");
    li.dataset.messageId = m.call_id;
    li.innerHTML = `<span class="h-ico">${icon("message-square", { size: 15 })}</span><span class="h-main"><div class="h-name"></div><div class="h-meta"></div><div class="h-text"></div></span><button class="btn xs" data-handled="${escapeHtml(m.call_id)}">Mark handled</button>`;
    li.querySelector(".h-name").textContent = m.caller;
    li.querySelector(".h-meta").textContent = `Message · ${m.queue} · ${ago(m.left_at)}`;
    li.querySelector(".h-text").textContent = m.message;
    list.append(li);
  }
}

async function onInboxClick(event) {
  const b = event.target.closest("button");
  if (!b) return;
  formError("inbox-error", null);
  b.disabled = true;
  try {
    if (b.dataset.take) {
      await api(`/api/v1/callbacks/${encodeURIComponent(b.dataset.take)}/take`, { method: "POST" });
      toast("The callback rings here now.");
    } else if (b.dataset.handled) {
      await api(`/api/v1/messages/${encodeURIComponent(b.dataset.handled)}/handled`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      });
      toast("Message marked as handled.");
    }
  } catch (e) {
    formError("inbox-error", e.reason);
  }
  await loadInbox();
}

// ------------------------------------------------------------------------------------------------ keyboard
function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const tag = event.target?.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.target?.isContentEditable) return;
  if ($("app").hidden) return;
  const key = event.key.toLowerCase();
  const ringing = Boolean(state.offer) && !$("view-ringing").hidden;
  const inCall = Boolean(state.call);
  let handled = true;
  if (key === "a" && ringing) accept();
  else if (key === "d" && ringing) decline();
  else if (key === "m" && inCall) setMuted(!state.call.muted);
  else if (key === "c" && inCall) toggleCamera();
  else if (key === "t" && inCall) openTransfer();
  else if (key === "h" && (inCall || state.staleCallId)) hangup();
  else if (key === "?") $("help-dialog").showModal();
  else handled = false;
  if (handled) event.preventDefault();
}

// ------------------------------------------------------------------------------------------------ wiring
function renderSoundButton() {
  const b = $("sound-button");
  b.innerHTML = icon(ringer.enabled ? "bell" : "bell-off", { size: 18 });
  b.setAttribute("aria-label", ringer.enabled ? "Ring sound on (click to mute)" : "Ring sound off (click to turn on)");
  b.setAttribute("aria-pressed", String(ringer.enabled));
}

function init() {
  $("signin-form").addEventListener("submit", signIn);
  $("go-available").addEventListener("click", () => requestStatus("available"));
  $("go-away").addEventListener("click", () => requestStatus("away"));
  $("idle-available").addEventListener("click", () => requestStatus("available"));
  $("accept-button").addEventListener("click", accept);
  $("decline-button").addEventListener("click", decline);
  $("mute-button").addEventListener("click", () => setMuted(!state.call?.muted));
  $("camera-button").addEventListener("click", toggleCamera);
  $("hangup-button").addEventListener("click", hangup);
  $("stale-hangup").addEventListener("click", hangup);
  // A network change (back online, Wi-Fi to cellular): the call's media gets a new peer connection.
  window.addEventListener("online", () => onNetworkChange("online"));
  navigator.connection?.addEventListener?.("change", () => onNetworkChange("network_changed"));
  const ready = () => {
    // "Ready" ends after-call work early; an unsaved note stays a draft (recent calls: "Finish wrap-up").
    if (state.status === "wrap_up") requestStatus("available");
    state.endedCallId = null;
    state.endedCard = null;
    show("idle");
    renderCard(null);
    renderHistory();
  };
  $("ended-dismiss").addEventListener("click", ready);
  $("ended-next").addEventListener("click", ready);
  $("wrapup").addEventListener("submit", submitWrapUp);
  $("wrapup").addEventListener("input", saveDraft);
  $("wrapup").addEventListener("change", saveDraft);
  $("history").addEventListener("click", (e) => {
    const b = e.target.closest("[data-finish-wrapup]");
    if (b) finishWrapUp(b.dataset.finishWrapup);
  });
  $("missed-available").addEventListener("click", () => {
    if (state.status !== "available") requestStatus("available");
    backToRest();
  });
  $("missed-away").addEventListener("click", () => {
    requestStatus("away");
    backToRest();
  });
  $("transfer-directory").addEventListener("click", pickTransferTarget);
  $("transfer-queue-list").addEventListener("click", pickTransferTarget);
  $("transfer-dialog").addEventListener("close", () => clearInterval(state.directoryTimer));
  $("snap-retry").addEventListener("click", () => state.call && loadSnapshot(state.call));
  $("inbox-list").addEventListener("click", onInboxClick);
  $("dev-test-mic").addEventListener("click", testMicrophone);
  $("dev-test-camera").addEventListener("click", testCamera);
  for (const kind of ["mic", "camera", "speaker"]) $(`dev-${kind}`).addEventListener("change", (e) => chooseDevice(kind, e.target.value));
  $("notify-enable").addEventListener("click", enableNotifications);
  $("sound-enable").addEventListener("click", () => ringer.unlock());
  ringer.onchange = renderSoundBlocked;
  $("hold-button").addEventListener("click", toggleHold);
  $("transfer-button").addEventListener("click", openTransfer);
  $("snapshot-button").addEventListener("click", openSnapshot);
  $("transfer-form").addEventListener("submit", submitTransfer);
  $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
  $("transfer-modes").addEventListener("click", (e) => e.target.closest("button") && setTransferMode(e.target.closest("button").dataset.mode));
  $("transfer-agent").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="agent"]').checked = true));
  $("transfer-queue").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="queue"]').checked = true));
  $("consult-complete").addEventListener("click", () => consultStep("transfer.complete"));
  $("consult-cancel").addEventListener("click", () => consultStep("transfer.cancel"));
  $("side-tabs").addEventListener("click", (e) => e.target.closest("[role=tab]") && selectPane(e.target.closest("[role=tab]").dataset.pane));
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat({ text: $("chat-input").value });
  });
  $("chat-attach").innerHTML = icon("paperclip", { size: 18 });
  $("chat-attach").addEventListener("click", () => $("chat-file").click());
  $("chat-file").addEventListener("change", () => {
    const file = $("chat-file").files?.[0];
    $("chat-file").value = "";
    if (file) sendChat({ file });
  });
  $("share-kinds").addEventListener("click", (e) => e.target.closest("button") && setShareKind(e.target.closest("button").dataset.kind));
  $("share-form").addEventListener("submit", submitShare);
  initSnapshotCanvas();
  $("nav-tabs").addEventListener("click", (e) => e.target.closest("button") && setTab(e.target.closest("button").dataset.tab));
  $("wb-calls").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.supervise) supervise(b.dataset.call, b.dataset.supervise);
    else if (b.hasAttribute("data-supervise-stop")) stopSupervising(true);
  });
  $("sv-modes").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b && state.supervise) supervise(state.supervise.callId, b.dataset.mode);
  });
  $("sv-stop").addEventListener("click", () => stopSupervising(true));
  $("sv-mute").addEventListener("click", () => {
    const sv = state.supervise;
    if (!sv) return;
    sv.muted = !sv.muted;
    if (sv.mic) sv.mic.enabled = sv.mode !== "monitor" && !sv.muted;
    renderSupervisePanel();
  });
  setInterval(() => {
    tickWallboard();
    renderWrapUpTimer();
  }, 1000);
  setInterval(() => {
    const view = document.body.dataset.view;
    if (!$("app").hidden && view !== "ringing" && view !== "call") loadInbox();
  }, 10000);
  $("signout-button").innerHTML = icon("log-out", { size: 18 });
  $("signout-button").addEventListener("click", signOut);
  $("help-button").innerHTML = icon("keyboard", { size: 18 });
  $("help-button").addEventListener("click", () => $("help-dialog").showModal());
  $("stale-icon").innerHTML = icon("alert", { size: 44 });
  for (const el of document.querySelectorAll("[data-icon]")) el.innerHTML = icon(el.dataset.icon, { size: 18 });
  const auto = $("auto-answer");
  auto.checked = state.autoAnswer;
  auto.addEventListener("change", () => {
    state.autoAnswer = auto.checked;
    localStorage.setItem(AUTO_ANSWER_KEY, auto.checked ? "on" : "off");
  });
  renderSoundButton();
  $("sound-button").addEventListener("click", () => {
    ringer.enabled = !ringer.enabled;
    localStorage.setItem(SOUND_KEY, ringer.enabled ? "on" : "off");
    ringer.unlock();
    renderSoundButton();
    renderSoundBlocked();
  });
  renderNotifyButton();
  listDevices();
  navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);
  document.addEventListener("keydown", onKey);
  document.addEventListener("pointerdown", () => ringer.unlock(), { once: true });
  setInterval(refreshAges, 5000);
  renderCard(null);
  renderHistory();
  window.addEventListener("beforeunload", () => {
    if (state.signal?.open && !state.call) {
      state.closing = true;
      state.signal.send({ type: "bye", id: "unload" });
    }
  });
  resumeSignedIn();
}

/** A reload keeps the sign-in: the cookie is still there; ask the gateway whose it is. */
async function resumeSignedIn() {
  try {
    const response = await fetch("/api/v1/agent/session");
    if (response.ok) {
      const session = await response.json();
      state.account = session.agent;
      keepSessionAlive(session.expires_in);
      start();
      return;
    }
  } catch {
    /* gateway unreachable: sign in again */
  }
  showSignin();
}

/** Sessions end a while after their last refresh: refresh while the console is open. */
function keepSessionAlive(expiresIn) {
  clearInterval(state.refreshTimer);
  const every = Math.max(20, Math.floor((expiresIn || 1800) / 3)) * 1000;
  state.refreshTimer = setInterval(async () => {
    try {
      const response = await fetch("/api/v1/agent/refresh", { method: "POST" });
      if (response.status === 401) {
        clearInterval(state.refreshTimer);
        state.signal?.close();
        showSignin("Your session has ended. Please sign in again.");
      }
    } catch {
      /* offline for a moment: the next refresh will tell */
    }
  }, every);
}

init();
