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
 * or with the one tag alone (it mounts a floating button when it has data-token-url):
 *
 *   <script type="module" src="https://gateway.example.com/static/caller/callin-widget.js"
 *           data-token-url="/api/callin-token" data-brand="Acme" data-accent="#0f766e"></script>
 *
 *   data-token-url, data-gateway, data-brand, data-accent, data-label, data-target (a selector),
 *   data-call-types ("voice,video"), data-ask-location ("false"). On another origin than the gateway's, the page's
 *   origin must be listed in the gateway's CALLIN_EMBED_ORIGINS (docs/integration.md).
 *
 * Every URL of the gateway (socket, files, pictures) is built from the gateway's URL, never from the page's.
 *
 * Options of Callin.mount (all optional but one of getToken / tokenUrl):
 *   gateway     the gateway's URL (default: where this script was loaded from)
 *   getToken    async () => caller token (a JWT your backend signs; see docs/protocol.md)
 *   tokenUrl    POSTed to (with credentials) for {"token": ...}, instead of getToken
 *   context     object or (async) function: {screen, steps: [...], crm: {...}}, read when the call starts
 *   target      element or selector for an inline "Call us" button (default: floating, bottom right)
 *   brand       {name, accent}   label: the button's text   callTypes: ["voice", "video", "screen"]
 *   askLocation true (default) offers to share the device's location; false never asks
 *   getAppScreenshot  async () => Blob (PNG/JPEG) of your app's screen: offered in the call's chat as
 *               "Screenshot of the app" (the caller sees it before it is sent)
 * The element dispatches callin:* events (callin:statechange, callin:queue, callin:ringing, callin:answered,
 * callin:barge, callin:transcript, callin:caption, callin:interrupted, callin:ended, callin:error) and exposes .client (a CallinClient), .open(), .minimize(), .start(callType).
 */

import { CallinClient, CallinError, getDeviceLocation, gatewayOrigin, VERSION } from "./callin-client.js";
import { WIDGET_CSS } from "./callin-widget.css.js";
import { widgetMarkup } from "./callin-widget.template.js";
import { icon } from "./icons.js";

const DEFAULT_GATEWAY = gatewayOrigin(import.meta.url);

/** The widget's styles as a constructed style sheet: a page's Content-Security-Policy without 'unsafe-inline' in
 * style-src blocks a <style> element in the widget, not this (the <style> element is kept for old browsers). */
const SHEET = (() => {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(WIDGET_CSS);
    return sheet;
  } catch {
    return null;
  }
})();

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
      // Only before a call: the socket could not be opened (or did not answer) at all.
      return {
        icon: "wifi-off",
        title: "We can't reach the service",
        text: "Your call hasn't started: we couldn't connect to our calling service. Check your internet connection, then try again.",
        retry: true,
      };
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
  message_left: () => "Your message was sent. The team will get back to you",
  callback_expired: () => "The callback expired because nobody rejoined in time",
};

/** What the widget says about the call's recording, by state: [title, detail]; no entry: nothing shown. */
const RECORDING_TEXT = {
  pending: ["This call will be recorded", "Recording starts when an agent answers."],
  asking: ["May we record this call?", "It helps us with quality and training. You can say no."],
  recording: ["This call is being recorded", ""],
  paused: ["Recording paused", "Nothing is recorded right now."],
  declined: ["This call is not recorded", "You said no to recording."],
  failed: ["This call is not recorded", ""],
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
  #unseen = 0; // chat lines and pushed content that arrived while the panel was minimized
  #cameraMissing = null; // camera_blocked / camera_unavailable: a video call going on as voice
  #wantCamera = false; // the camera was on when the screen share began: stopping the share brings it back
  #reconnectTimer = null;
  #silentFor = 0; // stats intervals in a row with nothing arriving

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
      gateway: this.#opts.gateway || attr("gateway") || attr("data-gateway") || DEFAULT_GATEWAY,
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
    if (SHEET) this.#root.adoptedStyleSheets = [SHEET];
    this.#root.innerHTML = widgetMarkup({ floating: o.floating, style: SHEET ? "" : `<style>${WIDGET_CSS}</style>` });
    const $ = (sel) => this.#root.querySelector(sel);
    this.#els = {
      launcher: $(".launcher"),
      launchLabel: $(".launch-label"),
      launchCount: $(".launch-count"),
      shareNote: $(".share-note"),
      bargeNote: $(".barge-note"),
      transcriptNote: $(".transcript-note"),
      captionsNote: $(".captions-note"),
      camNote: $(".cam-note"),
      recNote: $(".rec-note"),
      trayBox: $(".tray-box"),
      trayToggle: $(".tray-toggle"),
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
      overlay: $(".overlay"),
      offerCard: $(".offer-card"),
      sheet: $(".sheet"),
      messages: $(".messages"),
      chatError: $(".chat-error"),
      composer: $(".composer"),
      chatInput: $(".chat-input"),
      fileInput: $(".file-input"),
      scanInput: $(".scan-input"),
      appShot: $('[data-action="app-shot"]'),
      pending: $(".pending"),
      lightbox: $(".lightbox"),
      tray: $(".tray"),
      chatCtl: $(".chat-ctl"),
      chatBtn: $('[data-action="chat"]'),
      unread: $(".unread"),
      auxAudio: $("audio.aux-audio"),
      leaveForm: $(".leave-form"),
      leaveText: $(".leave-text"),
    };
    this.#applyBrand();
    this.#root.addEventListener("click", (e) => this.#onClick(e));
    this.#els.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      this.#sendChat({ text: this.#els.chatInput.value });
    });
    this.#els.fileInput.addEventListener("change", () => {
      const file = this.#els.fileInput.files?.[0];
      this.#els.fileInput.value = "";
      if (file) this.#sendChat({ file });
    });
    // Scan: a photo of the code (the phone's back camera opens at once); the gateway reads the codes in it and the
    // agent gets them as text, so the caller types nothing. The caller sees what was read under the photo.
    this.#els.scanInput.addEventListener("change", () => {
      const file = this.#els.scanInput.files?.[0];
      this.#els.scanInput.value = "";
      if (file) this.#sendChat({ file, name: file.name || "scan.jpg" });
    });
    this.#els.leaveText.addEventListener("input", () => {
      this.#root.querySelector(".leave-count").textContent = `${this.#els.leaveText.value.length} / 2000`;
    });
    this.#els.leaveForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.#leaveMessage();
    });
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
    this.#els.appShot.hidden = typeof this.#opts.getAppScreenshot !== "function";
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
    const inCall = this.#client && ["starting", "queued", "connected", "callback"].includes(this.#client.state);
    if (!inCall && !["ended", "error", "permission", "closed", "rejoin", "callback"].includes(this.#view)) this.#prepare();
    else this.#show(this.#view);
    if (this.#view === "call") this.#reportUnseen();
    this.#unseen = 0;
    this.#updateLauncher();
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
    // The first button actually shown (buttons inside hidden overlays, sheets or cards don't count).
    const shown = [...(view?.querySelectorAll("button:not([disabled])") ?? [])].find((b) => b.getClientRects().length > 0);
    const target = shown ?? this.#root.querySelector('[data-action="minimize"]');
    target?.focus();
  }

  #updateLauncher() {
    const { launcher, launchLabel } = this.#els;
    const c = this.#client;
    const active = c && ["starting", "queued", "connected", "callback"].includes(c.state);
    launcher.classList.toggle("in-call", Boolean(active));
    if (active && this.#els.panel.hidden) {
      launchLabel.textContent = c.state === "connected" ? `On call · ${this.#els.clock.textContent}`
        : c.state === "callback" ? (c.callback?.ready ? "An agent is ready: join" : "We'll call you back")
        : c.ringingAgent ? `Connecting you to ${c.ringingAgent}…`
        : "Waiting for an agent…";
      launcher.setAttribute("aria-label", `Return to your call${this.#unseen ? ` (${this.#unseen} new)` : ""}`);
    } else {
      launchLabel.textContent = this.options.label;
      launcher.removeAttribute("aria-label");
    }
    // What arrived while minimized: a count on the button (new chat lines, content shared by the agent).
    const count = active && this.#els.panel.hidden ? this.#unseen : 0;
    this.#els.launchCount.hidden = !count;
    this.#els.launchCount.textContent = count > 9 ? "9+" : String(count);
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
    on("videosource", (d) => this.#onVideoSource(d));
    on("mute", () => this.#updateControls());
    on("remotetrack", (d) => this.#onRemoteTrack(d));
    on("reconnecting", (d) => this.#onReconnecting(d));
    on("reconnected", () => {
      this.#stopReconnecting();
      this.#els.banner.hidden = !client.agentReconnecting;
      this.#els.stage.classList.toggle("bannered", client.agentReconnecting);
      if (client.agentReconnecting) this.#showBanner("The agent is reconnecting…");
      this.#say("Reconnected.");
    });
    // This side's media is being set up again in the same call (a network change, a dead peer connection): say so
    // instead of a frozen picture. The socket's own countdown (reconnecting) says more and wins.
    on("mediarecovering", () => {
      if (client.reconnecting) return;
      this.#els.stage.classList.add("bannered");
      this.#showBanner("Restoring sound and video…");
      this.#say("The connection changed. Restoring sound and video.");
    });
    on("mediarecovered", () => {
      if (client.reconnecting) return;
      this.#els.banner.hidden = !client.agentReconnecting;
      this.#els.stage.classList.toggle("bannered", client.agentReconnecting);
      if (client.agentReconnecting) this.#showBanner("The agent is reconnecting…");
    });
    on("interrupted", (d) => this.#onInterrupted(d));
    on("ringing", (d) => {
      this.#onRinging(d);
      this.#updateLauncher();
    });
    on("barge", (d) => this.#onBarge(d));
    on("recording", (d) => this.#onRecording(d));
    on("transcript", (d) => this.#onTranscript(d));
    on("caption", (d) => this.#onCaption(d));
    on("participant", (d) => {
      // The agent's console lost its connection: the call goes on (it may come back within seconds).
      if (d.state === "reconnecting") {
        this.#showBanner("The agent is reconnecting…");
        this.#say("The agent's connection dropped. Please hold on.");
      } else {
        this.#els.banner.hidden = true;
        this.#els.stage.classList.remove("bannered");
        this.#say("The agent is back.");
      }
    });
    on("shutdown", (d) => this.#toast(d.resume
      ? "The service is restarting. You keep your place in line; we reconnect you automatically."
      : "The service is restarting. Please call again in a moment."));
    on("devicewarning", (d) => {
      if (d.missing) this.#cameraMissing = d.missing; // shown as a note on the call screen (see #start)
      else this.#toast(capitalize(d.reason) + ".");
    });
    on("held", (d) => this.#onHeld(d));
    on("transferring", () => this.#onTransferring());
    on("closed", (d) => this.#onClosed(d));
    on("callbackoffer", (d) => this.#onCallbackOffer(d));
    on("callbackaccepted", (d) => this.#onCallbackAccepted(d));
    on("callbackready", (d) => this.#onCallbackReady(d));
    on("content", (d) => this.#onContent(d.content));
    on("chat", (d) => this.#onChat(d.message));
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
    this.#cameraMissing = null;
    if (client.startsBeforeMedia(callType)) {
      // The devices are allowed on this site already, so no prompt comes: the call screen shows at once and the call
      // starts while the camera and microphone start (a device that then fails ends the call with its error).
      const acquiring = client.acquireMedia(callType);
      this.#enterCall(callType, null);
      acquiring.then((m) => {
        const missing = m.missing ?? this.#cameraMissing;
        if (missing && client === this.#client && this.#view === "call") this.#showCameraNote(missing);
      }, () => {});
      await this.#placeCall(client, callType, locating, acquiring);
      return;
    }
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
    this.#enterCall(callType, media.missing ?? this.#cameraMissing);
    await this.#placeCall(client, callType, locating, media);
  }

  #enterCall(callType, missing) {
    this.#resetCallView(callType);
    this.#showCameraNote(missing);
    this.#show("call");
    this.#focusFirst();
    this.#els.status.textContent = "Connecting…";
  }

  /** Send the call (with the app's context) at once; `media`: acquired, or on its way. The location follows when the
   * browser answers (its consent prompt, then the device: seconds on a phone), as call.location: the call never
   * waits for it. */
  async #placeCall(client, callType, locating, media) {
    this.#locationStatus = null;
    this.#showLocation();
    let context = this.options.context;
    try {
      context = typeof context === "function" ? await context() : context;
    } catch {
      context = {};
    }
    const starting = client.startCall({ callType, context, media });
    this.#sendLocation(client, locating);
    try {
      await starting;
    } catch (err) {
      this.#showError(err);
    } finally {
      this.#enableOptions();
    }
  }

  /** When the device answers: the chip says whether the location was shared, and the call gets it (call.location;
   * while call.start is still on its way the client sends it once the call has its id). A call that ended or
   * failed meanwhile sends nothing: the location only ever goes with a call. */
  async #sendLocation(client, locating) {
    const { location, status } = await locating;
    if (client !== this.#client || !["starting", "queued", "connected"].includes(client.state)) return;
    this.#locationStatus = status;
    this.#showLocation();
    if (!location) return;
    // Refused (the call ended, or was cancelled, while the device answered): the call goes on without it.
    await client.sendLocation(location).catch(() => null);
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
    e.overlay.hidden = true;
    e.offerCard.hidden = true;
    e.sheet.hidden = true;
    e.panel.classList.remove("chatting");
    e.lightbox.hidden = true;
    e.pending.hidden = true;
    e.chatCtl.hidden = true;
    e.unread.hidden = true;
    e.chatBtn.setAttribute("aria-pressed", "false");
    e.chatError.hidden = true;
    e.tray.hidden = true;
    e.tray.innerHTML = "";
    e.trayBox.hidden = true;
    e.trayBox.classList.remove("expanded");
    e.shareNote.hidden = true;
    e.bargeNote.hidden = true;
    e.recNote.hidden = true;
    e.transcriptNote.hidden = true;
    e.captionsNote.hidden = true;
    e.camNote.hidden = true;
    e.stage.classList.remove("bannered", "ringing");
    delete e.panel.dataset.inbound;
    this.#stopReconnecting();
    this.#wantCamera = false;
    this.#silentFor = 0;
    this.#unseen = 0;
    e.messages.innerHTML = '<li class="empty">Send a message, a photo or a screenshot of the app. The agent sees it right away.</li>';
    e.auxAudio.srcObject = null;
    this.#revokeBlobs();
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
    if (state === "callback" && this.#view !== "callback") this.#show("callback");
    if (state === "queued" && !this.#client?.queue) this.#els.status.textContent = "Finding you an agent…";
    this.#updateControls();
    this.#updateLauncher();
  }

  #onQueue({ position, estimatedWaitS }) {
    this.#emit("queue", { position, estimatedWaitS });
    if (this.#client?.state === "connected") return;
    // Someone is staffed again (an estimate comes only then): "no one is available" is no longer true.
    if (estimatedWaitS != null && this.#closedNotice?.reason === "no_agents") this.#clearClosedCard();
    if (this.#client?.ringingAgent) return; // "Connecting you to …" stays until the ring ends
    this.#showWaiting(position, estimatedWaitS);
  }

  #showWaiting(position, estimatedWaitS) {
    const e = this.#els;
    e.stage.classList.remove("ringing");
    e.avatar.className = "avatar waiting";
    e.avatar.innerHTML = icon("headphones", { size: 40 });
    e.who.textContent = `You are number ${position} in line`;
    const wait = estimatedWaitS === 0 ? "any moment now" : waitText(estimatedWaitS);
    if (wait) {
      e.status.textContent = wait;
      e.sub.textContent = position === 1 ? "You're next. Please stay on the line." : "Please stay on the line; we'll connect you automatically.";
    } else {
      e.status.textContent = "Please stay on the line";
      e.sub.textContent = "No agent is free right now. We'll connect you as soon as someone is available.";
    }
    this.#say(`You are number ${position} in line${wait ? `, ${wait}` : ""}.`);
  }

  /** The waiting call rings at an agent ("Connecting you to Alice…"), or that ring ended: back to the line. */
  #onRinging({ ringing, agentName }) {
    this.#emit("ringing", { ringing, agentName });
    const c = this.#client;
    if (!c || c.state !== "queued" || this.#view !== "call") return;
    const e = this.#els;
    if (!ringing) {
      const q = c.queue;
      if (q) this.#showWaiting(q.position, q.estimatedWaitS);
      this.#say("Still waiting for an agent. You keep your place in line.");
      return;
    }
    const name = agentName || "an agent";
    this.#clearClosedCard();
    e.stage.classList.add("ringing");
    e.avatar.className = "avatar waiting";
    e.avatar.textContent = initials(agentName) || "";
    if (!e.avatar.textContent) e.avatar.innerHTML = icon("user", { size: 40 });
    e.who.textContent = `Connecting you to ${name}…`;
    e.status.textContent = "Their phone is ringing";
    e.sub.textContent = "Please stay on the line.";
    this.#say(`Connecting you to ${name}.`);
  }

  /** A supervisor speaks in the call (barge): the caller hears a new voice, so it is told who. */
  /** The call's recording: always said before anything is recorded; with "asking", the caller chooses. */
  #onRecording({ state, policy, consent, by }) {
    this.#emit("recording", { state, policy, consent, by });
    const note = this.#els.recNote;
    const text = RECORDING_TEXT[state];
    note.hidden = !text;
    note.dataset.state = state;
    if (!text) return;
    note.querySelector(".rec-title").textContent = text[0];
    note.querySelector(".rec-text").textContent = text[1];
    note.querySelector(".rec-yes").hidden = state !== "asking";
    note.querySelector(".rec-no").hidden = state !== "asking";
    this.#say(`${text[0]}. ${text[1]}`);
  }

  async #answerRecording(accept) {
    try {
      await this.#client.recordingConsent(accept);
    } catch (err) {
      this.#toast(err.reason || "That did not work. Please try again.");
    }
  }

  #onBarge({ active, name, barging }) {
    this.#emit("barge", { active, name });
    const note = this.#els.bargeNote;
    note.hidden = !barging.length;
    if (!barging.length) {
      this.#say(`${name ?? "The supervisor"} left the conversation.`);
      return;
    }
    const names = barging.join(", ");
    note.querySelector(".barge-title").textContent = barging.length > 1 ? "Supervisors joined the call" : "A supervisor joined the call";
    note.querySelector(".barge-text").textContent = `You can hear ${names} and they can hear you.`;
    if (active) this.#say(`A supervisor, ${name ?? ""}, joined the call. They can hear you.`);
  }

  /** The call is transcribed from now on: the caller is told, before anything it says is turned into text. */
  #onTranscript({ active, captions }) {
    this.#emit("transcript", { active, captions });
    this.#els.transcriptNote.hidden = !active;
    if (active) this.#say("This call is transcribed. Card numbers are hidden.");
  }

  /** Captions of the call (an accessibility aid, when the queue gives them): the latest line, as text only. */
  #onCaption({ speaker, text, final }) {
    this.#emit("caption", { speaker, text, final });
    const note = this.#els.captionsNote;
    note.hidden = false;
    note.querySelector(".cap-who").textContent = speaker?.role === "caller" ? "You" : (speaker?.name ?? "");
    const line = note.querySelector(".cap-text");
    line.textContent = text;
    line.style.opacity = final ? "1" : ".75";
  }

  /** A video call going on as voice (camera blocked or missing): say so, and how to turn the camera on. */
  #showCameraNote(missing) {
    const note = this.#els.camNote;
    note.hidden = !missing;
    if (!missing) return;
    const blocked = missing === "camera_blocked";
    note.querySelector(".cam-title").textContent = blocked ? "Your camera is blocked: this is a voice call" : "No camera found: this is a voice call";
    note.querySelector(".cam-text").textContent = blocked
      ? "To show your camera, tap the lock icon next to the web address, allow Camera, then tap Camera below."
      : "The agent can still hear you. Connect a camera, then tap Camera below.";
    if (this.#client?.state !== "connected") this.#els.who.textContent = "Voice call"; // else: the agent's name
    this.#say(`${note.querySelector(".cam-title").textContent}. ${note.querySelector(".cam-text").textContent}`);
  }

  #onVideoSource({ source }) {
    const c = this.#client;
    const e = this.#els;
    if (source === "camera") {
      e.camNote.hidden = true;
      this.#cameraMissing = null;
    }
    e.shareNote.hidden = source !== "screen";
    if (source === null && this.#wantCamera && c && ["queued", "connected"].includes(c.state)) {
      // The share ended from the browser's own bar: back to the camera the caller had on.
      this.#wantCamera = false;
      c.useCamera().catch((err) => this.#toast(capitalize(err.reason ?? "The camera could not be started") + "."));
    }
    this.#updateControls();
  }

  async #stopShare() {
    const c = this.#client;
    if (!c) return;
    const back = this.#wantCamera;
    this.#wantCamera = false;
    if (back) await c.useCamera(); // replaces the screen with the camera, then stops the screen
    else await c.stopScreen();
    this.#say(back ? "You stopped sharing your screen. Your camera is on again." : "You stopped sharing your screen.");
  }

  /** The socket dropped: the call is held for the gateway's resume grace; count it down, in one place. */
  #onReconnecting({ attempt, until }) {
    const e = this.#els;
    const deadline = until ?? Date.now() + (this.#client?.resumeGraceS ?? 30) * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      this.#showBanner(`Reconnecting… your call is held for ${left} s`);
    };
    if (!this.#reconnectTimer) {
      tick();
      this.#reconnectTimer = setInterval(tick, 1000);
      this.#say(`Connection lost. Reconnecting. Your call is held for ${this.#client?.resumeGraceS ?? 30} seconds.`);
    }
    e.stage.classList.add("bannered", "reconnecting");
    e.panel.dataset.reconnecting = String(attempt ?? 1);
  }

  #stopReconnecting() {
    clearInterval(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#els.stage.classList.remove("reconnecting");
    delete this.#els.panel.dataset.reconnecting;
  }
  #onAnswered({ agentName }) {
    this.#emit("answered", { agentName });
    const e = this.#els;
    e.stage.classList.remove("ringing");
    e.avatar.className = "avatar";
    e.avatar.textContent = initials(agentName) || "";
    if (!e.avatar.textContent) e.avatar.innerHTML = icon("user", { size: 40 });
    e.who.textContent = agentName;
    e.status.textContent = "Connected";
    e.sub.textContent = "";
    e.endLabel.textContent = "End";
    e.hangup.setAttribute("aria-label", "End call");
    e.overlay.hidden = true;
    e.offerCard.hidden = true;
    e.chatCtl.hidden = false;
    if (this.#view !== "call") this.#show("call");
    this.#startClock(Date.now());
    this.#updateControls();
    this.#say(`Connected to ${agentName}.`);
    this.#startStats();
  }

  /** The call was cut off (the server holding it died): the caller waits again, first in line, by itself. */
  #onInterrupted({ callId, rejoinedCallId }) {
    this.#emit("interrupted", { callId, rejoinedCallId });
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    const e = this.#els;
    e.avatar.className = "avatar waiting";
    e.avatar.innerHTML = icon("headphones", { size: 40 });
    e.who.textContent = "Your call was cut off";
    e.status.textContent = "You are first in line";
    e.sub.textContent = "We'll connect you to the next free agent. Please stay on the line.";
    e.endLabel.textContent = "Cancel";
    e.hangup.setAttribute("aria-label", "Leave the line");
    if (this.#view !== "call") this.#show("call");
    this.#updateControls();
    this.#updateLauncher();
    this.#say("Your call was cut off. You are first in line; we'll connect you to the next free agent.");
  }

  #onEnded({ reason, by, durationS }) {
    this.#emit("ended", { reason, by, durationS });
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    this.#stopReconnecting();
    this.#els.banner.hidden = true;
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
    this.#els.auxAudio.srcObject = null;
    this.#els.remoteVideo.srcObject = null;
    this.#els.selfVideo.srcObject = null;
    this.#els.panel.dataset.ended = reason;
    if (reason === "message_left") this.#els.endedMeta.textContent = "Thanks for getting in touch.";
    this.#root.querySelector('.view[data-view="ended"] h3').textContent = reason === "message_left" ? "Message sent" : "Call ended";
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
    this.#stopReconnecting();
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

  #showBanner(text) {
    this.#els.banner.querySelector(".banner-text").textContent = text;
    this.#els.banner.hidden = false;
  }

  #toast(text) {
    const t = this.#els.toast;
    t.innerHTML = `${icon("alert", { size: 15 })}<span></span>`;
    t.querySelector("span").textContent = text;
    t.hidden = false;
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => (t.hidden = true), 6000);
  }

  #onRemoteTrack({ track, slot }) {
    const e = this.#els;
    if (slot === "aux") {
      // A supervisor who joins the conversation (barge) is heard on this second section.
      e.auxAudio.srcObject = new MediaStream([track]);
      e.auxAudio.play?.().catch(() => {});
      return;
    }
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
    if (c.state === "connected" && !this.#reconnectTimer) {
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
      // "Weak connection" is about the network: loss and round-trip time. Nothing arriving is not a weak network
      // when nothing is sent (on hold, being transferred, the agent's console away, this side reconnecting); at
      // other times only after a few seconds of it.
      const nothing = Boolean(this.#stats) && !stats.audioFlowing && !stats.videoFlowing;
      this.#silentFor = nothing ? this.#silentFor + 1 : 0;
      e.panel.dataset.inbound = nothing ? "silent" : "flowing";
      e.panel.dataset.silentFor = String(this.#silentFor); // seconds in a row with nothing arriving
      const quiet = c.held || c.transferring || c.agentReconnecting || c.reconnecting;
      const lossy = Boolean(this.#stats) && (stats.lossPct > 8 || (stats.rttMs ?? 0) > 450);
      e.netChip.hidden = !(lossy || (this.#silentFor >= 3 && !quiet));
      this.#stats = stats;
    }, 1000);
  }

  // ---------------------------------------------------------------------------------------------- hold, transfer
  #overlay(kind, title, text) {
    const o = this.#els.overlay;
    if (!kind) {
      o.hidden = true;
      return;
    }
    o.dataset.kind = kind;
    o.querySelector(".ov-ico").innerHTML = icon(kind === "hold" ? "pause" : "phone-forwarded", { size: 28 });
    o.querySelector(".ov-title").textContent = title;
    o.querySelector(".ov-text").textContent = text;
    o.hidden = false;
    this.#say(`${title}. ${text}`);
  }

  #onHeld({ held }) {
    this.#emit("held", { held });
    if (held) this.#overlay("hold", "You're on hold", "Please stay on the line: the agent will be right back with you.");
    else if (this.#els.overlay.dataset.kind === "hold") this.#overlay(null);
  }

  #onTransferring() {
    this.#emit("transferring", {});
    this.#overlay("transfer", "Connecting you to another agent", "Please stay on the line. You won't need to repeat anything.");
    this.#els.status.textContent = "";
  }

  // ---------------------------------------------------------------------------------------------- closed queue, callbacks
  #closedNotice = null;

  #onClosed(notice) {
    this.#emit("closed", notice);
    this.#closedNotice = notice;
    const titles = { after_hours: "We're closed right now", no_agents: "No one is available right now", max_wait: "Sorry for the long wait" };
    if (notice.reason !== "after_hours" && this.#view === "call") {
      // The call keeps waiting: say so on the waiting screen, with the alternatives, without leaving it.
      const card = this.#els.offerCard;
      card.querySelector(".oc-body b").textContent = titles[notice.reason] ?? "We can't answer right now";
      card.querySelector(".oc-text").textContent = notice.message || "You can keep waiting, or choose another way.";
      card.querySelector('[data-action="callback"]').hidden = !notice.callbackAvailable;
      card.querySelector('[data-action="leave-from-card"]').hidden = !notice.messageAllowed;
      card.hidden = !(notice.callbackAvailable || notice.messageAllowed);
      card.dataset.reason = notice.reason;
      if (this.#client?.ringingAgent) card.hidden = true; // an agent is being rung: not "no one is available"
      this.#say(notice.message || titles[notice.reason]);
      return;
    }
    this.#showClosed(notice, titles);
  }

  /** An agent is being rung, or agents are staffed again: a "no one is available" card is no longer true. */
  #clearClosedCard() {
    const card = this.#els.offerCard;
    if (card.dataset.reason) {
      card.hidden = true;
      delete card.dataset.reason;
    }
    if (this.#closedNotice?.reason === "no_agents") this.#closedNotice = null;
  }

  #showClosed(notice, titles) {
    const root = this.#root;
    root.querySelector(".closed-title").textContent = titles[notice.reason] ?? (notice.reason === "after_hours" ? "We're closed right now" : "Leave us a message");
    root.querySelector(".closed-text").textContent = notice.message || "Nobody can take your call at the moment.";
    let meta = "";
    if (notice.opensAt) {
      const opens = new Date(notice.opensAt * 1000);
      const sameDay = opens.toDateString() === new Date().toDateString();
      meta = `We open again ${sameDay ? "today" : opens.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" })} at ${opens.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`;
    }
    root.querySelector(".closed-meta").textContent = meta;
    root.querySelector(".closed-ico").innerHTML = icon(notice.reason === "after_hours" ? "moon" : "clock", { size: 32 });
    root.querySelector('.closed-actions [data-action="callback"]').hidden = !notice.callbackAvailable;
    root.querySelector('.closed-actions [data-action="leave"]').hidden = !notice.messageAllowed;
    root.querySelector('.closed-actions [data-action="keep-waiting"]').hidden = notice.reason === "after_hours";
    this.#els.leaveForm.hidden = true;
    root.querySelector(".closed-actions").hidden = false;
    this.#show("closed");
    if (this.#els.panel.hidden) this.open();
    this.#say(`${root.querySelector(".closed-title").textContent}. ${notice.message}`);
    this.#focusFirst();
  }

  #onCallbackOffer({ estimatedWaitS }) {
    this.#emit("callbackoffer", { estimatedWaitS });
    const wait = waitText(estimatedWaitS);
    delete this.#els.offerCard.dataset.reason;
    this.#els.offerCard.querySelector(".oc-body b").textContent = "Don't want to wait?";
    this.#els.offerCard.querySelector('[data-action="callback"]').hidden = false;
    this.#els.offerCard.querySelector('[data-action="leave-from-card"]').hidden = true;
    this.#els.offerCard.querySelector(".oc-text").textContent = wait
      ? `The wait is ${wait}. We can call you back when an agent is free, and you keep your place in line.`
      : "We can call you back when an agent is free, and you keep your place in line.";
    this.#els.offerCard.hidden = false;
    this.#say("Don't want to wait? We can call you back.");
  }

  async #requestCallback() {
    const c = this.#client;
    if (!c) return;
    try {
      await c.requestCallback();
    } catch (err) {
      if (this.#view === "call") this.#toast(capitalize(err.reason ?? "The callback could not be requested") + ".");
      else this.#showError(err);
    }
  }

  #onCallbackAccepted({ position }) {
    this.#emit("callbackaccepted", { position });
    clearInterval(this.#timer);
    clearInterval(this.#statsTimer);
    this.#root.querySelector(".cb-meta").textContent = position ? `You're number ${position} in line.` : "";
    this.#show("callback");
    this.#say("We'll call you back. You keep your place in line.");
    this.#focusFirst();
  }

  #onCallbackReady({ agentName, rejoinWithinS, at }) {
    this.#emit("callbackready", { agentName, rejoinWithinS });
    const root = this.#root;
    root.querySelector(".rejoin-title").textContent = `${agentName || "An agent"} is ready for you`;
    root.querySelector(".rejoin-text").textContent = "Join the call now: they're waiting on the line.";
    const meta = root.querySelector(".rejoin-meta");
    clearInterval(this.#timer);
    const tick = () => {
      const left = Math.max(0, rejoinWithinS - (Date.now() - at) / 1000);
      meta.textContent = `The agent waits ${formatDuration(left)} more.`;
    };
    tick();
    this.#timer = setInterval(tick, 1000);
    this.#show("rejoin");
    if (this.#els.panel.hidden) this.open();
    this.#say(`${agentName} is ready for you. Join the call.`);
    this.#focusFirst();
  }

  async #rejoin() {
    const c = this.#client;
    if (!c) return;
    clearInterval(this.#timer);
    const callType = this.#lastCallType || c.callType || "voice";
    this.#resetCallView(callType);
    this.#show("call");
    this.#els.status.textContent = "Joining the call…";
    try {
      await c.rejoin({ callType });
    } catch (err) {
      this.#showError(err);
    }
  }

  async #leaveMessage() {
    const c = this.#client;
    const err = this.#root.querySelector(".leave-form .form-err");
    err.hidden = true;
    const text = this.#els.leaveText.value.trim();
    if (!text) {
      err.textContent = "Write your message first.";
      err.hidden = false;
      return;
    }
    const button = this.#els.leaveForm.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      await c.leaveMessage(text);
      this.#els.leaveText.value = "";
    } catch (e) {
      err.textContent = `${capitalize(e.reason ?? "The message could not be sent")}.`;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------------------------------------- pushed content
  #blobs = [];

  #revokeBlobs() {
    for (const url of this.#blobs) URL.revokeObjectURL(url);
    this.#blobs = [];
  }

  async #blobUrl(url) {
    const blob = await this.#client.fetchAttachment(url);
    const objectUrl = URL.createObjectURL(blob);
    this.#blobs.push(objectUrl);
    return objectUrl;
  }

  #onContent(content) {
    this.#emit("content", { content });
    const e = this.#els;
    const li = document.createElement("li");
    li.className = `pushed ${content.kind}`;
    li.dataset.contentId = content.content_id;
    const kindIcon = { link: "link", image: "image", text: "file-text" }[content.kind] ?? "file-text";
    const title = content.title || { link: "A link from the agent", image: "A picture from the agent", text: "From the agent" }[content.kind];
    let host = "";
    if (content.kind === "link") {
      try {
        host = new URL(content.url).host;
      } catch {
        host = content.url;
      }
    }
    li.innerHTML = `
      <div class="p-head"><span class="p-ico">${icon(kindIcon, { size: 16 })}</span><b class="p-title"></b>
        <button class="icon-btn sm p-dismiss" data-action="dismiss-content" aria-label="Dismiss">${icon("x", { size: 15 })}</button></div>
      ${content.kind === "text" ? '<p class="p-text"></p>' : ""}
      ${content.kind === "image" ? '<button class="p-img" data-action="open-image" aria-label="Show the picture larger"><img alt=""></button>' : ""}
      ${content.kind === "link" ? `<div class="p-link"><span class="p-host"></span><button class="btn primary sm" data-action="open-link">${icon("external-link", { size: 15 })}Open</button></div>` : ""}`;
    li.querySelector(".p-title").textContent = title;
    if (content.kind === "text") li.querySelector(".p-text").textContent = content.text ?? "";
    if (content.kind === "link") li.querySelector(".p-host").textContent = host;
    li._content = content;
    if (content.kind === "image") {
      const img = li.querySelector("img");
      img.alt = title;
      const source = content.attachment?.url ?? content.url;
      (content.attachment ? this.#blobUrl(source) : Promise.resolve(source))
        .then((src) => (img.src = src))
        .catch(() => li.querySelector(".p-img").replaceWith(Object.assign(document.createElement("p"), { className: "p-text", textContent: "The picture could not be loaded." })));
    }
    e.tray.prepend(li);
    this.#updateTray();
    this.#say(`${title}, shared by the agent.`);
    if (!e.panel.hidden) this.#client?.reportContent(content.content_id, "seen");
    else {
      li.dataset.unseen = "1";
      this.#unseen += 1;
      this.#updateLauncher();
    }
  }

  /** Content shared by the agent, collapsed to the newest card and a count, so the video keeps its room. */
  #updateTray(expand = null) {
    const e = this.#els;
    const n = e.tray.children.length;
    e.tray.hidden = !n;
    e.trayBox.hidden = !n;
    if (expand !== null) e.trayBox.classList.toggle("expanded", expand);
    if (n < 2) e.trayBox.classList.remove("expanded");
    const expanded = e.trayBox.classList.contains("expanded");
    e.trayToggle.hidden = n < 2;
    e.trayToggle.setAttribute("aria-expanded", String(expanded));
    e.trayToggle.querySelector(".tray-count").textContent = expanded ? `Shared by the agent (${n}) · show less` : `Shared by the agent (${n}) · show all`;
  }

  #reportUnseen() {
    for (const li of this.#els.tray.querySelectorAll('[data-unseen="1"]')) {
      delete li.dataset.unseen;
      this.#client?.reportContent(li.dataset.contentId, "seen");
    }
  }

  #contentAction(action, li) {
    const content = li?._content;
    if (!content) return;
    const c = this.#client;
    if (action === "dismiss-content") {
      c?.reportContent(content.content_id, "dismissed");
      li.remove();
      this.#updateTray();
    } else if (action === "open-link") {
      window.open(content.url, "_blank", "noopener,noreferrer");
      c?.reportContent(content.content_id, "opened");
      li.classList.add("opened");
    } else if (action === "open-image") {
      const lb = this.#els.lightbox;
      lb.querySelector("img").src = li.querySelector("img").src;
      lb.querySelector("img").alt = content.title || "Picture from the agent";
      lb.hidden = false;
      c?.reportContent(content.content_id, "opened");
    }
  }

  // ---------------------------------------------------------------------------------------------- chat
  #toggleChat(open = this.#els.sheet.hidden) {
    const e = this.#els;
    e.sheet.hidden = !open;
    e.panel.classList.toggle("chatting", open); // the chat takes the pushed cards' room while it is open
    e.chatBtn.setAttribute("aria-pressed", String(open));
    if (open) {
      e.unread.hidden = true;
      e.messages.scrollTop = e.messages.scrollHeight;
      e.chatInput.focus();
    }
  }

  #chatError(text) {
    const el = this.#els.chatError;
    el.hidden = !text;
    el.textContent = text || "";
  }

  async #sendChat({ text = null, file = null, name = null }) {
    const c = this.#client;
    if (!c) return;
    this.#chatError(null);
    const line = (text ?? "").trim();
    if (!line && !file) return;
    if (file && file.size > 5 * 1024 * 1024) {
      this.#chatError(`“${name ?? file.name ?? "This file"}” is too large: files can be up to 5 MB.`);
      return;
    }
    const e = this.#els;
    e.composer.classList.add("busy");
    try {
      await c.sendChat({ text: line || null, file, name });
      if (line) e.chatInput.value = "";
    } catch (err) {
      const why = {
        attachment_too_large: "That file is too large to send.",
        attachment_type: "That kind of file can't be sent: use a photo (PNG, JPEG, GIF, WebP), a PDF or a text file.",
        empty_attachment: "That file is empty.",
      }[err.code];
      this.#chatError(why ?? `${capitalize(err.reason ?? "The message could not be sent")}.`);
    } finally {
      e.composer.classList.remove("busy");
    }
  }

  async #attachAppScreenshot() {
    const fn = this.#opts.getAppScreenshot;
    if (typeof fn !== "function") return;
    let blob;
    try {
      blob = await fn();
    } catch {
      blob = null;
    }
    if (!(blob instanceof Blob)) {
      this.#chatError("The app could not take a screenshot.");
      return;
    }
    const e = this.#els;
    this.#pendingShot = blob;
    const url = URL.createObjectURL(blob);
    this.#blobs.push(url);
    e.pending.querySelector(".pending-img").src = url;
    e.pending.querySelector(".pending-name").textContent = "Screenshot of the app";
    e.pending.hidden = false;
  }

  #pendingShot = null;

  /** Under the caller's own picture: what the gateway read in it (and so what the agent sees), as text. */
  #scanNote(scan) {
    const note = document.createElement("small");
    note.className = "scan-note";
    const codes = (scan.codes ?? []).map((c) => c.text);
    note.textContent = codes.length
      ? `Read from the photo: ${codes.join(" · ")}`
      : "No code could be read in this photo. Try again closer, with the whole code in view.";
    return note;
  }

  #onChat(message) {
    this.#emit("chat", { message });
    const e = this.#els;
    e.messages.querySelector(".empty")?.remove();
    const mine = message.from?.role === "caller";
    const li = document.createElement("li");
    li.className = `msg ${mine ? "mine" : "theirs"}`;
    li.innerHTML = `${mine ? "" : '<span class="from"></span>'}<div class="bubble"></div><time></time>`;
    if (!mine) li.querySelector(".from").textContent = message.from?.name ?? "Agent";
    const bubble = li.querySelector(".bubble");
    const a = message.attachment;
    if (a) {
      if (a.mime?.startsWith("image/")) {
        const b = document.createElement("button");
        b.className = "att-img";
        b.dataset.action = "open-chat-image";
        b.setAttribute("aria-label", `Show ${a.name}`);
        const img = document.createElement("img");
        img.alt = a.name;
        b.append(img);
        bubble.append(b);
        this.#blobUrl(a.url).then((src) => (img.src = src)).catch(() => (img.alt = `${a.name} (could not be loaded)`));
        if (mine && a.scan) bubble.append(this.#scanNote(a.scan));
      } else {
        const b = document.createElement("button");
        b.className = "att-file";
        b.dataset.action = "download";
        b.innerHTML = `${icon("file-text", { size: 18 })}<span><b></b><small></small></span>`;
        b.querySelector("b").textContent = a.name;
        b.querySelector("small").textContent = `${Math.max(1, Math.round(a.size / 1024))} KB · tap to download`;
        b._attachment = a;
        bubble.append(b);
      }
    }
    if (message.text) {
      const p = document.createElement("p");
      p.textContent = message.text;
      bubble.append(p);
    }
    li.querySelector("time").textContent = new Date((message.at ?? Date.now() / 1000) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    e.messages.append(li);
    e.messages.scrollTop = e.messages.scrollHeight;
    if (!mine) {
      if (e.sheet.hidden) e.unread.hidden = false;
      if (e.panel.hidden) {
        this.#unseen += 1;
        this.#updateLauncher();
      }
      this.#say(`${message.from?.name ?? "The agent"} wrote: ${message.text ?? a?.name ?? ""}`);
    }
  }

  async #download(attachment) {
    try {
      const url = await this.#blobUrl(attachment.url);
      const link = Object.assign(document.createElement("a"), { href: url, download: attachment.name });
      this.#root.append(link);
      link.click();
      link.remove();
    } catch (err) {
      this.#chatError(`${capitalize(err.reason ?? "The file could not be downloaded")}.`);
    }
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
          if (c && ["queued", "connected", "callback"].includes(c.state)) this.minimize();
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
          if (c?.videoSource === "screen") await this.#stopShare();
          else if (c) {
            const hadCamera = c.videoSource === "camera";
            await c.shareScreen();
            this.#wantCamera = hadCamera;
          }
          break;
        case "stop-share":
          await this.#stopShare();
          break;
        case "rec-accept":
          this.#answerRecording(true);
          break;
        case "rec-decline":
          this.#answerRecording(false);
          break;
        case "dismiss-cam-note":
          this.#els.camNote.hidden = true;
          break;
        case "tray-toggle":
          this.#updateTray(!this.#els.trayBox.classList.contains("expanded"));
          break;
        case "hangup":
        case "end-call":
          await c?.hangup();
          break;
        case "chat":
          this.#toggleChat();
          break;
        case "chat-close":
          this.#toggleChat(false);
          break;
        case "attach":
          this.#els.fileInput.click();
          break;
        case "scan":
          this.#els.scanInput.click();
          break;
        case "app-shot":
          await this.#attachAppScreenshot();
          break;
        case "pending-send": {
          const blob = this.#pendingShot;
          this.#pendingShot = null;
          this.#els.pending.hidden = true;
          if (blob) await this.#sendChat({ file: blob, name: "app-screenshot.png" });
          break;
        }
        case "pending-cancel":
          this.#pendingShot = null;
          this.#els.pending.hidden = true;
          break;
        case "open-chat-image": {
          const lb = this.#els.lightbox;
          lb.querySelector("img").src = target.querySelector("img").src;
          lb.hidden = false;
          break;
        }
        case "lightbox-close":
          this.#els.lightbox.hidden = true;
          break;
        case "download":
          await this.#download(target._attachment);
          break;
        case "dismiss-content":
        case "open-link":
        case "open-image":
          this.#contentAction(target.dataset.action, target.closest(".pushed"));
          break;
        case "callback":
          await this.#requestCallback();
          break;
        case "dismiss-offer":
          this.#els.offerCard.hidden = true;
          break;
        case "leave-from-card":
          this.#showClosed({ ...this.#closedNotice, reason: this.#closedNotice?.reason ?? "no_agents" }, {});
          this.#root.querySelector(".closed-actions").hidden = true;
          this.#els.leaveForm.hidden = false;
          this.#els.leaveText.focus();
          break;
        case "leave":
          this.#root.querySelector(".closed-actions").hidden = true;
          this.#els.leaveForm.hidden = false;
          this.#els.leaveText.focus();
          break;
        case "leave-cancel":
          this.#els.leaveForm.hidden = true;
          this.#root.querySelector(".closed-actions").hidden = false;
          break;
        case "keep-waiting":
          this.#show("call");
          break;
        case "rejoin":
          await this.#rejoin();
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

/** The options of the one-tag embed: the data-* attributes of the script tag that loaded this module. */
export function scriptTagOptions(script) {
  const d = script.dataset;
  const options = {};
  if (d.tokenUrl) options.tokenUrl = d.tokenUrl;
  if (d.gateway) options.gateway = d.gateway;
  if (d.label) options.label = d.label;
  if (d.target) options.target = d.target;
  if (d.callTypes) options.callTypes = d.callTypes.split(",").map((t) => t.trim()).filter(Boolean);
  if (d.askLocation) options.askLocation = d.askLocation !== "false";
  const brand = {};
  if (d.brand) brand.name = d.brand;
  if (d.accent) brand.accent = d.accent;
  if (Object.keys(brand).length) options.brand = brand;
  return options;
}

/** The script tag that loaded this module (module scripts have no document.currentScript). */
function ownScriptTag() {
  if (typeof document === "undefined") return null;
  return [...document.querySelectorAll("script[src]")].find((script) => script.src === import.meta.url) ?? null;
}

export const Callin = globalThis.Callin ?? { widgets: [] };
Object.assign(Callin, { mount, CallinClient, getDeviceLocation, version: VERSION });
Callin.widgets ??= [];
globalThis.Callin = Callin;
const tag = ownScriptTag();
if (tag?.dataset.tokenUrl && !tag.dataset.callinMounted) {
  tag.dataset.callinMounted = "1"; // once, even if the module is evaluated again under another URL
  const options = scriptTagOptions(tag);
  if (options.target && document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => mount(options), { once: true });
  } else {
    mount(options);
  }
}
globalThis.dispatchEvent?.(new CustomEvent("callin:ready", { detail: Callin }));
