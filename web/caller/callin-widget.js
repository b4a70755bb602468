/**
 * callin-widget.js: the embeddable Callin caller widget. One script tag and a few lines:
 *
 *   <script type="module" src="https://gateway.example.com/static/caller/callin-widget.js"></script>
 *   <script type="module">
 *     Callin.mount({
 *       getToken: async () => (await (await fetch("/api/callin-token", { method: "POST" })).json()).token,
 *       context: () => ({ screen: "checkout", steps: history, crm: { account_id: "A-123" } }),
 *       brand: { name: "Acme", accent: "#0f766e" },
 *     });
 *   </script>
 *
 * or, without script: <callin-widget token-url="/api/callin-token" brand="Acme"></callin-widget>
 *
 * Options of Callin.mount (all optional but one of getToken / tokenUrl):
 *   gateway     the gateway's URL (default: where this script was loaded from)
 *   getToken    async () => caller token (a JWT your backend signs; see docs/protocol.md)
 *   tokenUrl    POSTed to (with credentials) for {"token": ...}, instead of getToken
 *   context     object or (async) function: {screen, steps: [...], crm: {...}}, read when the call starts
 *   target      element or selector for an inline "Call us" button (default: floating, bottom right)
 *   brand       {name, accent}   label: the button's text   callTypes: ["voice", "video", "screen"]
 *   askLocation true (default) offers to share the device's location; false never asks
 * The element dispatches callin:* events (callin:statechange, callin:queue, callin:answered, callin:ended,
 * callin:error) and exposes .client (a CallinClient), .open(), .minimize(), .start(callType).
 */

import { CallinClient, CallinError, getDeviceLocation, gatewayOrigin, VERSION } from "./callin-client.js";
import { WIDGET_CSS } from "./callin-widget.css.js";
import { icon } from "./icons.js";

const DEFAULT_GATEWAY = gatewayOrigin(import.meta.url);

const CALL_OPTIONS = {
  voice: { icon: "phone", title: "Voice call", detail: "Uses your microphone" },
  video: { icon: "video", title: "Video call", detail: "Uses your camera and microphone" },
  screen: { icon: "monitor", title: "Share your screen", detail: "Show us what you see · uses your microphone" },
};

const PERMISSION_TEXT = {
  voice: "your microphone",
  video: "your camera and microphone",
  screen: "your screen and microphone",
};

/** What each error means to a caller, and what they can do about it. */
function describeError(error) {
  const code = error?.code ?? "unknown";
  switch (code) {
    case "permission_denied":
      return {
        icon: "mic-off",
        title: "Microphone access is blocked",
        text: "We need your permission to hear you.",
        steps: ["Tap the lock or camera icon next to the web address", "Allow microphone (and camera for video)", "Come back and tap Try again"],
        retry: true,
      };
    case "screen_share_cancelled":
      return { icon: "monitor", title: "Screen sharing was cancelled", text: "Nothing was shared. You can try again, or call with voice or video instead.", retry: true, back: true };
    case "no_device":
      return { icon: "mic-off", title: "No microphone found", text: "Connect a microphone or headset, then try again.", retry: true };
    case "device_busy":
      return { icon: "mic-off", title: "Your microphone is busy", text: "Another app is using it. Close that app, then try again.", retry: true };
    case "unsupported":
      return { icon: "alert", title: "Calls aren't available here", text: "This browser can't make calls from this page. Try an up-to-date Chrome, Safari, Firefox or Edge." };
    case "token_expired":
    case "invalid_token":
    case "unauthorized":
      return { icon: "lock", title: "Your session has expired", text: "For your security, please refresh the page or sign in again, then call us.", reload: true };
    case "token_unavailable":
      return { icon: "lock", title: "We couldn't verify you", text: "Please make sure you're signed in, then try again.", retry: true };
    case "queue_full":
    case "no_agents":
    case "shutting_down":
    case "unavailable":
      return { icon: "users", title: "All our lines are busy", text: "So many people are calling right now that we can't take your call. Please try again in a few minutes.", retry: true };
    case "network_error":
    case "network_lost":
    case "disconnected":
    case "timeout":
    case "connection_lost":
    case "media_failed":
      return { icon: "wifi-off", title: "Connection lost", text: "We couldn't keep the call connected. Check your internet connection and try again.", retry: true };
    default:
      return { icon: "alert", title: "Something went wrong", text: error?.reason ? `${capitalize(error.reason)}.` : "Please try again.", retry: true };
  }
}

const ENDED_TEXT = {
  caller_hangup: () => "You ended the call",
  agent_hangup: (agent) => `${agent || "The agent"} ended the call`,
  caller_disconnected: () => "The call ended because the connection was lost",
  connection_lost: () => "The call ended because the connection was lost",
  agent_disconnected: () => "The agent's connection dropped",
  media_failed: () => "The call dropped because of a network problem",
  shutdown: () => "The service is restarting: please call again",
};

const capitalize = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const escapeHtml = (s) =>
  String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function initials(name) {
  const parts = String(name || "").replace(/\(.*?\)/g, "").trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return "";
  return (parts[0][0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** "about 3 minutes" from the gateway's estimate (null: no estimate, nobody staffed). */
export function waitText(estimatedWaitS) {
  if (estimatedWaitS == null) return null;
  const minutes = Math.max(1, Math.round(estimatedWaitS / 60));
  return `about ${minutes} minute${minutes === 1 ? "" : "s"}`;
}

const screenShareSupported = () => Boolean(globalThis.navigator?.mediaDevices?.getDisplayMedia) && !/Mobi|Android/i.test(navigator.userAgent);

export class CallinWidget extends HTMLElement {
  static get observedAttributes() {
    return ["gateway", "token-url", "brand", "accent", "label"];
  }

  #opts = {};
  #client = null;
  #root;
  #els = {};
  #view = "choose";
  #timer = null;
  #statsTimer = null;
  #stats = null;
  #stalls = 0;
  #locationStatus = null;
  #permissionTimer = null;
  #lastError = null;
  #lastCallType = null;
  #rendered = false;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: "open" });
  }

  /** Apply options (see the top of this file). */
  configure(options = {}) {
    this.#opts = { ...this.#opts, ...options };
    if (this.#rendered) this.#applyBrand();
    return this;
  }

  get client() {
    return this.#client;
  }

  get options() {
    const attr = (name) => this.getAttribute(name);
    const brand = { name: attr("brand") || "us", accent: attr("accent") || null, ...(this.#opts.brand || {}) };
    return {
      gateway: this.#opts.gateway || attr("gateway") || DEFAULT_GATEWAY,
      getToken: this.#opts.getToken || null,
      tokenUrl: this.#opts.tokenUrl || attr("token-url") || null,
      context: this.#opts.context ?? this.context ?? {},
      label: this.#opts.label || attr("label") || "Call us",
      brand,
      callTypes: (this.#opts.callTypes || ["voice", "video", "screen"]).filter((t) => t !== "screen" || screenShareSupported()),
      askLocation: this.#opts.askLocation ?? true,
      floating: this.#opts.floating ?? !this.#opts.inline,
    };
  }

  attributeChangedCallback() {
    if (this.#rendered) this.#applyBrand();
  }

  connectedCallback() {
    if (!this.#rendered) this.#render();
  }

  disconnectedCallback() {
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
  }

  // ---------------------------------------------------------------------------------------------- markup
  #render() {
    this.#rendered = true;
    const o = this.options;
    this.#root.innerHTML = `
      <style>${WIDGET_CSS}</style>
      <button class="launcher ${o.floating ? "floating" : ""}" part="launcher" aria-haspopup="dialog" aria-expanded="false" aria-controls="panel">
        <span class="badge">${icon("phone", { size: 16 })}</span><span class="launch-label"></span>
      </button>
      <section class="panel" id="panel" part="panel" role="dialog" aria-modal="false" aria-labelledby="title" hidden data-view="choose">
        <header class="bar">
          <span class="brand-mark">${icon("headphones", { size: 20 })}</span>
          <div class="titles">
            <h2 id="title"></h2>
            <p id="subtitle"><span class="dot"></span><span class="subtitle-text">Customer support</span></p>
          </div>
          <button class="icon-btn" data-action="minimize" aria-label="Minimize">${icon("chevron-down")}</button>
          <button class="icon-btn" data-action="close" aria-label="Close">${icon("x")}</button>
        </header>
        <div class="body">
          <div class="view" data-view="loading">
            <div class="notice"><div class="spinner" aria-hidden="true"></div><p>Getting things ready…</p></div>
          </div>

          <div class="view pad" data-view="choose" hidden>
            <h3 class="hello">How would you like to talk?</h3>
            <p class="lead">A specialist will pick up. They'll already know it's you, so there's no need to repeat your details.</p>
            <div class="who-chip" hidden>
              <span class="avatar-sm"></span><span>Calling as <b class="who-name"></b></span>
              <span class="verified">${icon("shield", { size: 14 })}Verified</span>
            </div>
            <ul class="options" role="list"></ul>
            <label class="toggle location-toggle">
              <input type="checkbox" class="share-location" checked>
              <span>Share my location with the agent
                <small>Helps us confirm it's you and send help faster. Your browser will ask first; the call works either way.</small></span>
            </label>
            <p class="fine">${icon("lock", { size: 14 })}<span>Your browser asks before we use your microphone, camera or screen. Nothing is shared until you allow it, and only during the call.</span></p>
          </div>

          <div class="view" data-view="permission" hidden>
            <div class="notice">
              <div class="big-ico perm-ico">${icon("mic", { size: 32 })}</div>
              <h3>Allow access to start the call</h3>
              <p class="perm-text"></p>
              <p class="meta">Look for the prompt near the address bar and choose <b>Allow</b>.</p>
              <div class="actions"><button class="btn ghost" data-action="cancel">Cancel</button></div>
            </div>
          </div>

          <div class="view call" data-view="call" hidden>
            <div class="stage">
              <video class="remote" playsinline autoplay muted hidden></video>
              <div class="presence">
                <div class="avatar waiting" aria-hidden="true"></div>
                <h3 class="who"></h3>
                <p class="status" role="status"></p>
                <p class="sub"></p>
              </div>
              <div class="chips">
                <span class="chip time-chip"><span class="rec"></span><span class="clock">0:00</span></span>
                <span class="chip loc-chip" hidden></span>
                <span class="chip warn net-chip" hidden>${icon("wifi-off", { size: 13 })}<span>Weak connection</span></span>
              </div>
              <div class="self" hidden><video playsinline autoplay muted></video><span class="tag">You</span></div>
              <div class="banner" hidden><span class="spin-sm"></span><span>Reconnecting…</span></div>
            </div>
            <div class="toast" role="alert" hidden></div>
            <div class="controls">
              <div class="ctl"><button data-action="mute" aria-pressed="false" aria-label="Mute microphone">${icon("mic", { size: 22 })}</button><span aria-hidden="true">Mute</span></div>
              <div class="ctl"><button data-action="camera" aria-pressed="false" aria-label="Turn camera on">${icon("video-off", { size: 22 })}</button><span aria-hidden="true">Camera</span></div>
              <div class="ctl screen-ctl"><button data-action="screen" aria-pressed="false" aria-label="Share your screen">${icon("monitor", { size: 22 })}</button><span aria-hidden="true">Screen</span></div>
              <div class="ctl"><button class="end" data-action="hangup" aria-label="End call">${icon("phone", { size: 22 })}</button><span aria-hidden="true" class="end-label">End</span></div>
            </div>
            <p class="footer-note">${icon("lock", { size: 12 })}Encrypted call</p>
            <audio class="remote-audio" autoplay></audio>
          </div>

          <div class="view" data-view="ended" hidden>
            <div class="notice good">
              <div class="big-ico">${icon("check-circle", { size: 34 })}</div>
              <h3>Call ended</h3>
              <p class="ended-text"></p>
              <p class="meta ended-meta"></p>
              <div class="actions">
                <button class="btn primary" data-action="again">${icon("phone", { size: 18 })}Call again</button>
                <button class="btn ghost" data-action="close">Close</button>
              </div>
            </div>
          </div>

          <div class="view" data-view="error" hidden>
            <div class="notice bad">
              <div class="big-ico err-ico"></div>
              <h3 class="err-title"></h3>
              <p class="err-text"></p>
              <ol class="steps err-steps" hidden></ol>
              <div class="actions">
                <button class="btn primary" data-action="retry">Try again</button>
                <button class="btn primary" data-action="reload" hidden>Refresh the page</button>
                <button class="btn ghost" data-action="back" hidden>Choose another way</button>
                <button class="btn ghost" data-action="close">Close</button>
              </div>
            </div>
          </div>
        </div>
        <div class="sr-only" aria-live="assertive" id="live"></div>
      </section>`;
    const $ = (sel) => this.#root.querySelector(sel);
    this.#els = {
      launcher: $(".launcher"),
      launchLabel: $(".launch-label"),
      panel: $(".panel"),
      title: $("#title"),
      subtitle: $(".subtitle-text"),
      options: $(".options"),
      whoChip: $(".who-chip"),
      shareLocation: $(".share-location"),
      locationToggle: $(".location-toggle"),
      permText: $(".perm-text"),
      permIco: $(".perm-ico"),
      stage: $(".stage"),
      remoteVideo: $("video.remote"),
      remoteAudio: $("audio.remote-audio"),
      avatar: $(".avatar"),
      who: $(".presence .who"),
      status: $(".presence .status"),
      sub: $(".presence .sub"),
      clock: $(".clock"),
      locChip: $(".loc-chip"),
      netChip: $(".net-chip"),
      self: $(".self"),
      selfVideo: $(".self video"),
      banner: $(".banner"),
      toast: $(".toast"),
      mute: $('[data-action="mute"]'),
      camera: $('[data-action="camera"]'),
      screen: $('[data-action="screen"]'),
      screenCtl: $(".screen-ctl"),
      hangup: $('[data-action="hangup"]'),
      endLabel: $(".end-label"),
      endedText: $(".ended-text"),
      endedMeta: $(".ended-meta"),
      live: $("#live"),
    };
    this.#applyBrand();
    this.#root.addEventListener("click", (e) => this.#onClick(e));
    this.#els.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.minimize();
      }
    });
  }

  #applyBrand() {
    const o = this.options;
    if (o.brand.accent) this.style.setProperty("--accent", o.brand.accent);
    this.#els.launchLabel.textContent = o.label;
    this.#els.title.textContent = o.brand.name && o.brand.name !== "us" ? o.brand.name : "Talk to us";
    this.#els.locationToggle.hidden = !o.askLocation;
    this.#els.screenCtl.hidden = !screenShareSupported();
    this.#els.options.innerHTML = o.callTypes
      .map((type) => {
        const opt = CALL_OPTIONS[type];
        return `<li><button class="option" data-call-type="${type}" aria-label="${opt.title}: ${opt.detail}">
            <span class="ico">${icon(opt.icon, { size: 22 })}</span>
            <span class="txt"><b>${opt.title}</b><small>${opt.detail}</small></span>
            <span class="chev">${icon("chevron-right", { size: 18 })}</span></button></li>`;
      })
      .join("");
  }

  #show(view) {
    this.#view = view;
    this.#els.panel.dataset.view = view;
    for (const el of this.#root.querySelectorAll(".view")) el.hidden = el.dataset.view !== view;
    this.#updateLauncher();
  }

  #say(text) {
    this.#els.live.textContent = "";
    setTimeout(() => {
      this.#els.live.textContent = text;
    }, 30);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(`callin:${type}`, { detail, bubbles: true, composed: true }));
  }

  // ---------------------------------------------------------------------------------------------- open / close
  /** Open the panel (and connect to the gateway in the background). */
  open() {
    const { panel, launcher } = this.#els;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    const inCall = this.#client && ["starting", "queued", "connected"].includes(this.#client.state);
    if (!inCall && !["ended", "error", "permission"].includes(this.#view)) this.#prepare();
    else this.#show(this.#view);
    requestAnimationFrame(() => this.#focusFirst());
  }

  /** Hide the panel; a call goes on (the button shows it and brings it back). */
  minimize() {
    this.#els.panel.hidden = true;
    this.#els.launcher.setAttribute("aria-expanded", "false");
    this.#updateLauncher();
    this.#els.launcher.focus();
  }

  /** Close: hang up if needed, disconnect, hide. */
  async close() {
    this.minimize();
    this.#show("choose");
    if (this.#client) {
      const client = this.#client;
      this.#client = null;
      await client.close();
    }
    this.#updateLauncher();
  }

  #focusFirst() {
    const view = this.#root.querySelector(`.view[data-view="${this.#view}"]`);
    const target = view?.querySelector("button:not([disabled]):not([hidden])") ?? this.#root.querySelector('[data-action="minimize"]');
    target?.focus();
  }

  #updateLauncher() {
    const { launcher, launchLabel } = this.#els;
    const c = this.#client;
    const active = c && ["starting", "queued", "connected"].includes(c.state);
    launcher.classList.toggle("in-call", Boolean(active));
    if (active && this.#els.panel.hidden) {
      launchLabel.textContent = c.state === "connected" ? `On call · ${this.#els.clock.textContent}` : "Waiting for an agent…";
      launcher.setAttribute("aria-label", "Return to your call");
    } else {
      launchLabel.textContent = this.options.label;
      launcher.removeAttribute("aria-label");
    }
  }

  // ---------------------------------------------------------------------------------------------- the client
  #ensureClient() {
    if (this.#client) return this.#client;
    const o = this.options;
    const getToken = o.getToken || (o.tokenUrl ? () => fetchToken(o.tokenUrl) : null);
    if (!getToken) throw new CallinError("config_error", "Callin widget: pass getToken or tokenUrl");
    const client = new CallinClient({ gateway: o.gateway, getToken });
    this.#client = client;
    const on = (type, fn) => client.addEventListener(type, (e) => client === this.#client && fn(e.detail));
    on("statechange", (d) => this.#onState(d));
    on("queue", (d) => this.#onQueue(d));
    on("answered", (d) => this.#onAnswered(d));
    on("ended", (d) => this.#onEnded(d));
    on("error", (d) => this.#onError(d));
    on("localstream", () => this.#updateSelf());
    on("videosource", () => this.#updateControls());
    on("mute", () => this.#updateControls());
    on("remotetrack", (d) => this.#onRemoteTrack(d));
    on("reconnecting", () => {
      this.#els.banner.hidden = false;
      this.#say("Connection lost. Reconnecting.");
    });
    on("reconnected", () => {
      this.#els.banner.hidden = true;
      this.#say("Reconnected.");
    });
    on("devicewarning", (d) => this.#toast(capitalize(d.reason) + "."));
    return client;
  }

  async #prepare() {
    let client;
    try {
      client = this.#ensureClient();
    } catch (err) {
      this.#showError(err);
      return;
    }
    if (client.identity) {
      this.#fillIdentity(client.identity);
      this.#show("choose");
      return;
    }
    this.#show("loading");
    try {
      const welcome = await client.connect();
      if (client !== this.#client) return;
      this.#fillIdentity(welcome.caller);
      this.#show("choose");
      this.#focusFirst();
    } catch (err) {
      if (client === this.#client) this.#showError(err);
    }
  }

  #fillIdentity(caller) {
    const chip = this.#els.whoChip;
    if (!caller?.name) {
      chip.hidden = true;
      return;
    }
    chip.hidden = false;
    chip.querySelector(".avatar-sm").textContent = initials(caller.name);
    chip.querySelector(".who-name").textContent = caller.name;
  }

  /** Start a call of `callType` (from a click: the browser asks for permissions now). */
  async start(callType) {
    const client = this.#ensureClient();
    this.#lastCallType = callType;
    this.#emit("callstart", { callType, at: performance.timeOrigin + performance.now() });
    for (const b of this.#root.querySelectorAll(".option")) b.disabled = true;
    const askLocation = this.options.askLocation && this.#els.shareLocation.checked;
    const locating = askLocation ? getDeviceLocation({ timeoutMs: 8000 }) : Promise.resolve({ location: null, status: "off" });
    // Only show the "allow access" screen if the browser actually waits for the user.
    this.#permissionTimer = setTimeout(() => this.#showPermission(callType), 350);
    let media;
    try {
      media = await client.acquireMedia(callType);
    } catch (err) {
      clearTimeout(this.#permissionTimer);
      this.#enableOptions();
      this.#showError(err);
      return;
    }
    clearTimeout(this.#permissionTimer);
    this.#resetCallView(callType);
    this.#show("call");
    this.#focusFirst();
    this.#els.status.textContent = "Connecting…";
    const { location, status } = await locating;
    this.#locationStatus = status;
    this.#showLocation();
    let context = this.options.context;
    try {
      context = typeof context === "function" ? await context() : context;
    } catch {
      context = {};
    }
    try {
      await client.startCall({ callType, location, context, media });
    } catch (err) {
      this.#showError(err);
    } finally {
      this.#enableOptions();
    }
  }

  #enableOptions() {
    for (const b of this.#root.querySelectorAll(".option")) b.disabled = false;
  }

  #showPermission(callType) {
    this.#els.permText.textContent = `Your browser is asking to use ${PERMISSION_TEXT[callType]}.`;
    this.#els.permIco.innerHTML = icon(callType === "voice" ? "mic" : CALL_OPTIONS[callType].icon, { size: 32 });
    this.#show("permission");
    this.#focusFirst();
  }

  #resetCallView(callType) {
    const e = this.#els;
    e.stage.classList.remove("has-video");
    e.remoteVideo.hidden = true;
    e.remoteVideo.srcObject = null;
    e.remoteAudio.srcObject = null;
    e.avatar.className = "avatar waiting";
    e.avatar.innerHTML = icon("headphones", { size: 40 });
    e.who.textContent = callType === "screen" ? "Screen sharing call" : callType === "video" ? "Video call" : "Voice call";
    e.sub.textContent = "";
    e.clock.textContent = "0:00";
    e.banner.hidden = true;
    e.netChip.hidden = true;
    e.toast.hidden = true;
    e.endLabel.textContent = "Cancel";
    e.hangup.setAttribute("aria-label", "Cancel call");
    this.#stats = null;
    this.#stalls = 0;
    this.#startClock(Date.now());
  }

  #showLocation() {
    const chip = this.#els.locChip;
    if (this.#locationStatus === "shared") {
      chip.hidden = false;
      chip.innerHTML = `${icon("map-pin", { size: 13 })}<span>Location shared</span>`;
    } else if (this.#locationStatus && this.#locationStatus !== "off") {
      chip.hidden = false;
      chip.innerHTML = `${icon("map-pin", { size: 13 })}<span>Location not shared</span>`;
    } else {
      chip.hidden = true;
    }
  }

  #startClock(since) {
    clearInterval(this.#timer);
    const tick = () => {
      this.#els.clock.textContent = formatDuration((Date.now() - since) / 1000);
      if (this.#els.panel.hidden) this.#updateLauncher();
    };
    tick();
    this.#timer = setInterval(tick, 1000);
  }

  // ---------------------------------------------------------------------------------------------- client events
  #onState({ state }) {
    this.#emit("statechange", { state });
    if (state === "queued" && !this.#client?.queue) this.#els.status.textContent = "Finding you an agent…";
    this.#updateControls();
    this.#updateLauncher();
  }

  #onQueue({ position, estimatedWaitS }) {
    this.#emit("queue", { position, estimatedWaitS });
    if (this.#client?.state === "connected") return;
    const e = this.#els;
    e.who.textContent = `You are number ${position} in line`;
    const wait = waitText(estimatedWaitS);
    if (wait) {
      e.status.textContent = wait;
      e.sub.textContent = position === 1 ? "You're next. Please stay on the line." : "Please stay on the line; we'll connect you automatically.";
    } else {
      e.status.textContent = "Please stay on the line";
      e.sub.textContent = "No agent is free right now. We'll connect you as soon as someone is available.";
    }
    this.#say(`You are number ${position} in line${wait ? `, ${wait}` : ""}.`);
  }

  #onAnswered({ agentName }) {
    this.#emit("answered", { agentName });
    const e = this.#els;
    e.avatar.className = "avatar";
    e.avatar.textContent = initials(agentName) || "";
    if (!e.avatar.textContent) e.avatar.innerHTML = icon("user", { size: 40 });
    e.who.textContent = agentName;
    e.status.textContent = "Connected";
    e.sub.textContent = "";
    e.endLabel.textContent = "End";
    e.hangup.setAttribute("aria-label", "End call");
    this.#startClock(Date.now());
    this.#updateControls();
    this.#say(`Connected to ${agentName}.`);
    this.#startStats();
  }

  #onEnded({ reason, by, durationS }) {
    this.#emit("ended", { reason, by, durationS });
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    const agent = this.#client?.agentName;
    if (reason === "media_failed" || reason === "connection_lost" || reason === "caller_disconnected") {
      if (!durationS) {
        this.#showError(new CallinError("connection_lost", reason));
        return;
      }
    }
    const text = (ENDED_TEXT[reason] ?? (() => "The call has ended"))(agent);
    this.#els.endedText.textContent = `${text}.`;
    this.#els.endedMeta.textContent = durationS ? `Duration ${formatDuration(durationS)} · Thanks for calling.` : "Thanks for getting in touch.";
    this.#els.remoteAudio.srcObject = null;
    this.#els.remoteVideo.srcObject = null;
    this.#els.selfVideo.srcObject = null;
    this.#show("ended");
    this.#say(`Call ended. ${text}.`);
    if (!this.#els.panel.hidden) this.#focusFirst();
  }

  #onError({ error, fatal }) {
    this.#emit("error", { code: error.code, reason: error.reason, fatal });
    if (fatal) this.#showError(error);
    else if (this.#view === "call") this.#toast(capitalize(error.reason) + ".");
  }

  #showError(error) {
    if (error?.code === "cancelled") return;
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    this.#lastError = error;
    const info = describeError(error);
    const root = this.#root;
    root.querySelector(".err-ico").innerHTML = icon(info.icon, { size: 32 });
    root.querySelector(".err-title").textContent = info.title;
    root.querySelector(".err-text").textContent = info.text;
    const steps = root.querySelector(".err-steps");
    steps.hidden = !info.steps;
    steps.innerHTML = (info.steps || []).map((s) => `<li>${escapeHtml(s)}</li>`).join("");
    root.querySelector('[data-action="retry"]').hidden = !info.retry;
    root.querySelector('[data-action="reload"]').hidden = !info.reload;
    root.querySelector('[data-action="back"]').hidden = !info.back;
    this.#els.panel.dataset.error = error?.code ?? "unknown";
    this.#show("error");
    if (this.#els.panel.hidden) this.open();
    this.#say(`${info.title}. ${info.text}`);
    this.#focusFirst();
  }

  #toast(text) {
    const t = this.#els.toast;
    t.innerHTML = `${icon("alert", { size: 15 })}<span></span>`;
    t.querySelector("span").textContent = text;
    t.hidden = false;
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => (t.hidden = true), 6000);
  }

  #onRemoteTrack({ track }) {
    const e = this.#els;
    if (track.kind === "audio") {
      e.remoteAudio.srcObject = new MediaStream([track]);
      e.remoteAudio.play?.().catch(() => {});
    } else {
      e.remoteVideo.srcObject = new MediaStream([track]);
    }
  }

  #updateSelf() {
    const c = this.#client;
    const e = this.#els;
    const track = c?.localStream.getVideoTracks()[0];
    e.self.hidden = !track;
    e.self.classList.toggle("screen", c?.videoSource === "screen");
    e.selfVideo.classList.toggle("mirror", c?.videoSource === "camera");
    e.self.querySelector(".tag").textContent = c?.videoSource === "screen" ? "Your screen" : "You";
    if (track) {
      e.selfVideo.srcObject = new MediaStream([track]);
      e.selfVideo.play?.().catch(() => {});
    } else {
      e.selfVideo.srcObject = null;
    }
  }

  #updateControls() {
    const c = this.#client;
    const e = this.#els;
    if (!c) return;
    if (c.state === "connected" && !e.stage.classList.contains("has-video")) {
      const agent = String(c.agentName || "The agent").replace(/\(.*?\)/g, "").trim().split(/\s+/)[0];
      e.sub.textContent = c.videoSource === "camera" ? `${agent} can see your camera` : c.videoSource === "screen" ? `${agent} can see your screen` : "";
    }
    e.mute.setAttribute("aria-pressed", String(c.muted));
    e.mute.setAttribute("aria-label", c.muted ? "Unmute microphone" : "Mute microphone");
    e.mute.innerHTML = icon(c.muted ? "mic-off" : "mic", { size: 22 });
    e.mute.nextElementSibling.textContent = c.muted ? "Unmute" : "Mute";
    const cam = c.videoSource === "camera";
    e.camera.setAttribute("aria-pressed", String(cam));
    e.camera.setAttribute("aria-label", cam ? "Turn camera off" : "Turn camera on");
    e.camera.innerHTML = icon(cam ? "video" : "video-off", { size: 22 });
    const screen = c.videoSource === "screen";
    e.screen.setAttribute("aria-pressed", String(screen));
    e.screen.setAttribute("aria-label", screen ? "Stop sharing your screen" : "Share your screen");
    e.screen.nextElementSibling.textContent = screen ? "Stop share" : "Screen";
    this.#updateSelf();
  }

  #startStats() {
    clearInterval(this.#statsTimer);
    this.#statsTimer = setInterval(async () => {
      const c = this.#client;
      if (!c || c.state !== "connected") return;
      const stats = await c.getStats(this.#stats).catch(() => null);
      if (!stats) return;
      const e = this.#els;
      const flowing = stats.videoFlowing && stats.videoIn?.frameWidth > 0;
      this.#stalls = flowing ? 0 : this.#stalls + 1;
      const show = flowing || (this.#stalls < 2 && e.stage.classList.contains("has-video"));
      e.stage.classList.toggle("has-video", show);
      e.remoteVideo.hidden = !show;
      if (show) e.status.textContent = "";
      else if (e.status.textContent === "") e.status.textContent = "Connected";
      e.netChip.hidden = !(this.#stats && stats.quality === "poor");
      this.#stats = stats;
    }, 1000);
  }

  // ---------------------------------------------------------------------------------------------- clicks
  async #onClick(event) {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.classList.contains("launcher")) {
      if (this.#els.panel.hidden) this.open();
      else this.minimize();
      return;
    }
    const type = target.dataset.callType;
    if (type) {
      this.start(type);
      return;
    }
    const c = this.#client;
    try {
      switch (target.dataset.action) {
        case "minimize":
          this.minimize();
          break;
        case "close":
          if (c && ["queued", "connected"].includes(c.state)) this.minimize();
          else await this.close();
          break;
        case "cancel":
          clearTimeout(this.#permissionTimer);
          await c?.hangup();
          this.#enableOptions();
          this.#show("choose");
          this.#focusFirst();
          break;
        case "mute":
          c?.setMuted(!c.muted);
          break;
        case "camera":
          await c?.setCamera(c.videoSource !== "camera");
          break;
        case "screen":
          if (c?.videoSource === "screen") await c.stopScreen();
          else await c?.shareScreen();
          break;
        case "hangup":
          await c?.hangup();
          break;
        case "again":
        case "back":
          this.#show("choose");
          this.#prepare();
          break;
        case "retry":
          if (this.#lastError && ["token_expired", "invalid_token", "token_unavailable", "network_error", "disconnected"].includes(this.#lastError.code)) {
            const old = this.#client;
            this.#client = null;
            old?.close();
          }
          if (this.#lastCallType && !["token_expired", "invalid_token", "token_unavailable"].includes(this.#lastError?.code)) {
            this.#show("choose");
            this.#prepare();
          } else {
            this.#prepare();
          }
          break;
        case "reload":
          location.reload();
          break;
        default:
          break;
      }
    } catch (err) {
      if (err?.code === "screen_share_cancelled") this.#toast("Screen sharing was cancelled.");
      else this.#toast(capitalize(err?.reason ?? err?.message ?? "That didn't work") + ".");
    }
  }
}

async function fetchToken(url) {
  const response = await fetch(url, { method: "POST", credentials: "include", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`the token endpoint answered ${response.status}`);
  const body = await response.json();
  return body.token;
}

if (!customElements.get("callin-widget")) customElements.define("callin-widget", CallinWidget);

/** Mount the widget: a floating "Call us" button, or an inline one inside `options.target`. */
export function mount(options = {}) {
  const element = document.createElement("callin-widget");
  const target = typeof options.target === "string" ? document.querySelector(options.target) : options.target;
  element.configure({ ...options, inline: Boolean(target), floating: options.floating ?? !target });
  (target || document.body).append(element);
  Callin.widgets.push(element);
  return element;
}

export const Callin = globalThis.Callin ?? { widgets: [] };
Object.assign(Callin, { mount, CallinClient, getDeviceLocation, version: VERSION });
Callin.widgets ??= [];
globalThis.Callin = Callin;
globalThis.dispatchEvent?.(new CustomEvent("callin:ready", { detail: Callin }));
