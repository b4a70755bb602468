/**
 * The Callin agent console: sign in, availability, ringing with the caller's card, and the call itself.
 * Plain ES module, no framework. Shares the protocol helpers with the caller's client module.
 */

import { AUDIO_CONSTRAINTS, CallinError, Signaling, candidateMessage, iceServersFrom, preferCodec, summarizeStats } from "../caller/callin-client.js";
import { icon } from "../caller/icons.js";

const TOKEN_KEY = "callin.agent.token";
const AGENT_KEY = "callin.agent.account";
const AUTO_ANSWER_KEY = "callin.agent.autoAnswer";
const SOUND_KEY = "callin.agent.sound";

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

const STATUS_TEXT = { available: "Available", away: "Away", ringing: "Ringing", busy: "On a call", offline: "Offline" };

const END_TEXT = {
  caller_hangup: "The caller hung up",
  agent_hangup: "You hung up",
  caller_disconnected: "The caller's connection was lost",
  agent_disconnected: "Your connection was lost",
  media_failed: "The media connection failed",
  shutdown: "The gateway is shutting down",
};

const WITHDRAWN_TEXT = {
  caller_hangup: "The caller hung up before you answered.",
  caller_disconnected: "The caller's connection was lost before you answered.",
  ring_timeout: "The call rang out, so it went to another agent.",
  declined: "Call declined.",
};

// ------------------------------------------------------------------------------------------------ ringer
/** A soft two-tone ring made with WebAudio (no audio files). */
class Ringer {
  #ctx = null;
  #timer = null;
  enabled = localStorage.getItem(SOUND_KEY) !== "off";

  unlock() {
    try {
      this.#ctx ??= new AudioContext();
      if (this.#ctx.state === "suspended") this.#ctx.resume();
    } catch {
      /* no audio */
    }
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
  token: sessionStorage.getItem(TOKEN_KEY),
  account: JSON.parse(sessionStorage.getItem(AGENT_KEY) || "null"),
  signal: null,
  welcome: null,
  status: "offline",
  offer: null, // the call.offered message while ringing
  ringStarted: 0,
  call: null, // {id, card, pc, audioTx, videoTx, mic, camera, startedAt, stats, firstFrameAt, ...}
  lastCard: null,
  history: [],
  closing: false,
  reconnecting: false,
  autoAnswer: localStorage.getItem(AUTO_ANSWER_KEY) === "on",
  staleCallId: null,
  prepared: null, // the peer connection prepared while a call rings
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
  async stats() {
    return state.call?.pc ? summarizeStats(state.call.pc) : null;
  },
};

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
      body: JSON.stringify({ username, password }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new CallinError(body.code || "login_failed", body.code === "bad_credentials" ? "Wrong username or password." : body.reason || `Sign-in failed (${response.status}).`);
    }
    state.token = body.token;
    state.account = body.agent;
    sessionStorage.setItem(TOKEN_KEY, body.token);
    sessionStorage.setItem(AGENT_KEY, JSON.stringify(body.agent));
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
  if (state.signal?.open) {
    try {
      await state.signal.request({ type: "bye" }, 2000);
    } catch {
      /* leaving anyway */
    }
  }
  state.signal?.close();
  state.signal = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(AGENT_KEY);
  state.token = null;
  ringer.stop();
  showSignin();
}

// ------------------------------------------------------------------------------------------------ connection
function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

async function openSocket(resumeToken = null) {
  const signal = new Signaling(wsUrl("/ws/agent"));
  await signal.connect();
  const hello = { type: "hello", token: state.token };
  if (resumeToken) hello.resume_token = resumeToken;
  let welcome;
  try {
    welcome = await signal.request(hello, 10000);
  } catch (e) {
    signal.close();
    throw e;
  }
  state.signal?.close();
  state.signal = signal;
  state.welcome = welcome;
  signal.addEventListener("message", (e) => onMessage(e.detail));
  signal.addEventListener("close", () => onSocketClose(signal));
  return welcome;
}

async function start() {
  state.closing = false;
  $("signin").hidden = true;
  $("app").hidden = false;
  renderMe();
  let welcome;
  try {
    welcome = await openSocket();
  } catch (e) {
    if (["invalid_token", "token_expired", "not_authenticated"].includes(e.code)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignin("Your session has expired. Please sign in again.");
      return;
    }
    banner("Can't reach the gateway.", { bad: true, action: { label: "Retry", run: () => start() } });
    setStatus("offline");
    return;
  }
  banner(null);
  setStatus(welcome.agent?.status ?? "away");
  if (welcome.call && welcome.call.state === "connected") {
    // A reload during a call: the gateway kept the call, but this page's media is gone.
    state.staleCallId = welcome.call.call_id;
    state.lastCard = welcome.call.card;
    renderCard(welcome.call.card);
    show("stale");
  } else if (welcome.call && welcome.call.state === "offered") {
    onOffered({ call_id: welcome.call.call_id, card: welcome.call.card, ring_timeout_s: 15 });
  } else {
    show("idle");
  }
  pingLoop(state.signal);
}

async function pingLoop(signal) {
  while (signal === state.signal && !state.closing) {
    await sleep(15000);
    if (signal !== state.signal || !signal.open) return;
    try {
      await signal.request({ type: "ping" }, 8000);
    } catch (e) {
      if (e.code === "timeout" && signal === state.signal) signal.close(4000, "no pong");
      return;
    }
  }
}

async function onSocketClose(signal) {
  if (signal !== state.signal || state.closing) return;
  state.reconnecting = true;
  setStatus("offline");
  const resumeToken = state.welcome?.resume_token;
  const deadline = performance.now() + Math.max(5000, (state.welcome?.resume_grace_s ?? 30) * 1000);
  let delay = 300;
  for (let attempt = 1; performance.now() < deadline && !state.closing; attempt += 1) {
    banner(`Connection lost. Reconnecting${attempt > 1 ? ` (attempt ${attempt})` : ""}…`);
    try {
      const welcome = await openSocket(resumeToken);
      state.reconnecting = false;
      banner(null);
      setStatus(welcome.agent?.status ?? "away");
      toast("Reconnected.");
      pingLoop(state.signal);
      return;
    } catch (e) {
      if (["invalid_token", "token_expired"].includes(e.code)) {
        showSignin("Your session has expired. Please sign in again.");
        return;
      }
      if (e.code === "resume_failed") break;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 3000);
  }
  state.reconnecting = false;
  if (state.call) endCallView({ reason: "agent_disconnected", by: "system" });
  banner("Disconnected from the gateway.", { bad: true, action: { label: "Reconnect", run: () => start() } });
}

// ------------------------------------------------------------------------------------------------ messages
function onMessage(message) {
  switch (message.type) {
    case "agent.status":
      setStatus(message.status);
      if (message.reason === "missed_call") toast("You missed a call, so you were set to Away.", { bad: true, ms: 8000 });
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
        stopRinging();
        show("idle");
        renderCard(null);
        toast(WITHDRAWN_TEXT[message.reason] ?? "The call is no longer ringing.");
      }
      break;
    case "call.ended":
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
}

// ------------------------------------------------------------------------------------------------ views
const VIEWS = ["idle", "ringing", "call", "ended", "stale"];
function show(view) {
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  $("history-section").hidden = view === "ringing" || view === "call";
  document.body.dataset.view = view;
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
    </article>`;
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
  $("ring-title").textContent = `Incoming ${type.label.toLowerCase()}`;
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
  if (!state.call) state.prepared = preparePeer(message);
  ringer.start();
  $("accept-button").focus({ preventScroll: true });
}

function stopRinging() {
  ringer.stop();
  state.offer = null;
  discardPrepared();
}

async function decline() {
  const offer = state.offer;
  if (!offer) return;
  stopRinging();
  show("idle");
  renderCard(null);
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
  const pc = new RTCPeerConnection({ iceServers: iceServersFrom(state.welcome?.ice_servers), bundlePolicy: "max-bundle" });
  const call = {
    id: offer.call_id,
    card: offer.card,
    pc,
    audioTx: pc.addTransceiver("audio", { direction: "sendrecv" }),
    videoTx: pc.addTransceiver("video", { direction: "sendrecv" }),
    mic: null,
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
    timings: {}, // ms since accept: accepted, offerSent, answered, connected, firstFrame
    localOffer: null,
  };
  preferCodec(call.videoTx, "video/VP8");
  pc.addEventListener("track", (e) => onRemoteTrack(call, e.track));
  pc.addEventListener("icecandidate", (e) => {
    const message = candidateMessage(e.candidate, call.id);
    if (message.candidate) call.candidatesGathered += 1;
    else if (!call.candidatesGathered) return; // no end-of-candidates without candidates (see candidateMessage)
    if (!call.offerSent) call.pendingCandidates.push(message);
    else state.signal?.send({ ...message, id: state.signal.nextId() });
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") {
      step(call, "connected");
      if (state.call === call) $("ph-text").textContent = waitingText(call);
    }
    if (pc.connectionState === "failed" && state.call === call) toast("The media connection failed.", { bad: true });
  });
  call.localOffer = pc.createOffer().then((o) => pc.setLocalDescription(o));
  call.localOffer.catch(() => {});
  return call;
}

function step(call, name) {
  if (call.acceptedAt != null && call.timings[name] == null) {
    call.timings[name] = Math.round(performance.timeOrigin + performance.now() - call.acceptedAt);
  }
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
  const prepared = state.prepared?.id === callId ? state.prepared : null;
  state.prepared = null; // taken: stopRinging must not close it
  stopRinging();
  const call = prepared ?? preparePeer(offer);
  call.acceptedAt = performance.timeOrigin + performance.now();
  state.call = call;
  showCallView(call);

  navigator.mediaDevices
    .getUserMedia({ audio: AUDIO_CONSTRAINTS })
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

  // The gateway handles a socket's messages in order: the offer follows the accept without waiting for its
  // answer (if the accept fails, so does the offer, and the accept's error is the one shown).
  const accepting = state.signal.request({ type: "call.accept", call_id: callId });
  const answering = call.localOffer.then(() => {
    step(call, "offerSent");
    return state.signal.request({ type: "sdp.offer", call_id: callId, sdp: call.pc.localDescription.sdp });
  });
  answering.catch(() => {}); // handled below, after the accept
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
    step(call, "answered");
    call.offerSent = true;
    for (const m of call.pendingCandidates) state.signal.send({ ...m, id: state.signal.nextId() });
    call.pendingCandidates = [];
    if (!call.ended) await call.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (e) {
    if (!call.ended) toast(`The call's media could not be set up: ${e.reason ?? e.message}`, { bad: true });
  }
}

function waitingText(call) {
  return call.card.call_type === "voice" ? "Voice call" : "Waiting for the caller's video…";
}

function showCallView(call) {
  const id = call.card.identity ?? {};
  const type = CALL_TYPE[call.card.call_type] ?? CALL_TYPE.voice;
  $("call-name").textContent = id.name || id.subject || "Caller";
  $("call-type").innerHTML = `${icon(type.icon, { size: 13 })}${type.label}`;
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
  updateCallControls();
  show("call");
  setStatus("busy");
  document.title = `On a call with ${id.name || "caller"} · Callin`;
  call.timers.push(setInterval(() => ($("call-timer").textContent = duration((Date.now() - call.startedAt) / 1000)), 1000));
  call.timers.push(setInterval(() => pollStats(call), 1000));
  $("hangup-button").focus({ preventScroll: true });
}

function onRemoteTrack(call, track) {
  if (track.kind === "audio") {
    let audio = document.getElementById("remote-audio");
    if (!audio) {
      audio = document.createElement("audio");
      audio.id = "remote-audio";
      audio.autoplay = true;
      document.body.append(audio);
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
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } } });
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
  for (const t of call.timers) clearInterval(t);
  call.pc?.close();
  call.mic?.stop();
  call.camera?.stop();
  const audio = document.getElementById("remote-audio");
  if (audio) audio.srcObject = null;
  $("remote-video").srcObject = null;
  $("self-video").srcObject = null;
  if (state.call === call) state.call = null;
}

function endCallView(message) {
  const call = state.call;
  if (!call) return;
  cleanupCall(call);
  const seconds = message.duration_s ?? (Date.now() - call.startedAt) / 1000;
  const id = call.card.identity ?? {};
  const type = CALL_TYPE[call.card.call_type] ?? CALL_TYPE.voice;
  state.history.unshift({ name: id.name || id.subject, type: call.card.call_type, seconds, reason: message.reason, at: new Date() });
  renderHistory();
  $("ended-icon").innerHTML = icon("check-circle", { size: 44 });
  $("ended-title").textContent = `Call with ${id.name || "the caller"} ended`;
  $("ended-text").textContent = `${END_TEXT[message.reason] ?? "The call ended"}.`;
  $("ended-facts").innerHTML = `
    <div><dt>Duration</dt><dd>${duration(seconds)}</dd></div>
    <div><dt>Type</dt><dd>${type.label}</dd></div>
    <div><dt>Ended by</dt><dd>${escapeHtml({ caller: "Caller", agent: "You", system: "System" }[message.by] ?? message.by ?? "–")}</dd></div>`;
  show("ended");
  $("ended-dismiss").focus({ preventScroll: true });
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
      return `<li><span class="h-ico">${icon(type.icon, { size: 15 })}</span>
        <span class="h-main"><div class="h-name">${escapeHtml(h.name)}</div><div class="h-meta">${h.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} · ${escapeHtml(END_TEXT[h.reason] ?? h.reason)}</div></span>
        <span class="h-dur">${duration(h.seconds)}</span></li>`;
    })
    .join("");
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
  $("ended-dismiss").addEventListener("click", () => {
    show("idle");
    renderCard(null);
  });
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
  });
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
  if (state.token) start();
  else showSignin();
}

init();
