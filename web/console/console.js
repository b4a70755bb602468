/**
 * The Callin agent console: sign in, availability, ringing with the caller's card, and the call itself.
 * Plain ES modules, no framework, no build step. This module is the composition root: it makes the store (lib/store.js)
 * and one module per view (views/), hands each the same `app` ({ store, state, ringer, views }), and wires the
 * page's controls to them. The agent's signaling session is callin-agent.js's CallinAgentSession; the call's
 * accept and peer connection live in views/call.js.
 */

import { summarizeStats } from "../caller/callin-client.js";
import { icon } from "../caller/icons.js";
import { $ } from "./lib/dom.js";
import { Ringer, SOUND_KEY } from "./lib/ringer.js";
import { inboundAudio } from "./lib/stats.js";
import { createStore } from "./lib/store.js";
import { createSession } from "./views/session.js";
import { createMessages } from "./views/messages.js";
import { createStatus } from "./views/status.js";
import { createIdle } from "./views/idle.js";
import { createShell } from "./views/shell.js";
import { createCard } from "./views/card.js";
import { createRinging } from "./views/ringing.js";
import { createCall } from "./views/call.js";
import { createStage } from "./views/stage.js";
import { createTransfer } from "./views/transfer.js";
import { createChat } from "./views/chat.js";
import { createShare } from "./views/share.js";
import { createSnapshot } from "./views/snapshot.js";
import { createWrapup } from "./views/wrapup.js";
import { createWallboard } from "./views/wallboard.js";
import { createSupervise } from "./views/supervise.js";
import { createDevices } from "./views/devices.js";
import { createAlerts } from "./views/alerts.js";

import { createInbox } from "./views/inbox.js";

// The session token lives only in the HttpOnly session cookie: no script (ours or injected) can read it.
const AUTO_ANSWER_KEY = "callin.agent.autoAnswer";

function initialState() {
  return {
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
}

/** A small handle for debugging in the browser's console (and for the browser tests). */
function debugHandle(app) {
  const { state, views } = app;

  return {
    get state() {
      return { status: state.status, callId: state.call?.id ?? null, ringing: state.offer?.call_id ?? null, firstFrameAt: state.call?.firstFrameAt ?? null };
    },
    get peerConnection() {
      return state.call?.pc ?? null;
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
      return { micLevel: views.devices.micLevel, previewWidth: $("dev-preview").videoWidth, soundBlocked: !$("sound-blocked").hidden };
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
}

function wire(app) {
  const { state, views, ringer } = app;

  $("signin-form").addEventListener("submit", views.session.signIn);
  $("go-available").addEventListener("click", () => views.session.requestStatus("available"));
  $("go-away").addEventListener("click", () => views.session.requestStatus("away"));
  $("idle-available").addEventListener("click", () => views.session.requestStatus("available"));
  $("accept-button").addEventListener("click", views.call.accept);
  $("decline-button").addEventListener("click", views.ringing.decline);
  $("mute-button").addEventListener("click", () => views.call.setMuted(!state.call?.muted));
  $("camera-button").addEventListener("click", views.call.toggleCamera);
  $("hangup-button").addEventListener("click", views.call.hangup);
  $("stale-hangup").addEventListener("click", views.call.hangup);
  // A network change (back online, Wi-Fi to cellular): the call's media gets a new peer connection.
  window.addEventListener("online", () => views.call.onNetworkChange("online"));
  navigator.connection?.addEventListener?.("change", () => views.call.onNetworkChange("network_changed"));
  const ready = () => {
    // "Ready" ends after-call work early; an unsaved note stays a draft (recent calls: "Finish wrap-up").
    if (state.status === "wrap_up") views.session.requestStatus("available");
    state.endedCallId = null;
    state.endedCard = null;
    views.shell.show("idle");
    views.card.renderCard(null);
    views.idle.renderHistory();
  };
  $("ended-dismiss").addEventListener("click", ready);
  $("ended-next").addEventListener("click", ready);
  $("wrapup").addEventListener("submit", views.wrapup.submitWrapUp);
  $("wrapup").addEventListener("input", views.wrapup.saveDraft);
  $("wrapup").addEventListener("change", views.wrapup.saveDraft);
  $("history").addEventListener("click", (e) => {
    const b = e.target.closest("[data-finish-wrapup]");
    if (b) views.wrapup.finishWrapUp(b.dataset.finishWrapup);
  });
  $("missed-available").addEventListener("click", () => {
    if (state.status !== "available") views.session.requestStatus("available");
    views.shell.backToRest();
  });
  $("missed-away").addEventListener("click", () => {
    views.session.requestStatus("away");
    views.shell.backToRest();
  });
  $("transfer-directory").addEventListener("click", views.transfer.pickTransferTarget);
  $("transfer-queue-list").addEventListener("click", views.transfer.pickTransferTarget);
  $("transfer-dialog").addEventListener("close", () => clearInterval(state.directoryTimer));
  $("snap-retry").addEventListener("click", () => state.call && views.snapshot.loadSnapshot(state.call));
  $("inbox-list").addEventListener("click", views.inbox.onInboxClick);
  $("dev-test-mic").addEventListener("click", views.devices.testMicrophone);
  $("dev-test-camera").addEventListener("click", views.devices.testCamera);
  for (const kind of ["mic", "camera", "speaker"]) $(`dev-${kind}`).addEventListener("change", (e) => views.devices.chooseDevice(kind, e.target.value));
  $("notify-enable").addEventListener("click", views.alerts.enableNotifications);
  $("sound-enable").addEventListener("click", () => ringer.unlock());
  ringer.onchange = views.alerts.renderSoundBlocked;
  $("hold-button").addEventListener("click", views.stage.toggleHold);
  $("transfer-button").addEventListener("click", views.transfer.openTransfer);
  $("snapshot-button").addEventListener("click", views.snapshot.openSnapshot);
  $("transfer-form").addEventListener("submit", views.transfer.submitTransfer);
  $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
  $("transfer-modes").addEventListener("click", (e) => e.target.closest("button") && views.transfer.setTransferMode(e.target.closest("button").dataset.mode));
  $("transfer-agent").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="agent"]').checked = true));
  $("transfer-queue").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="queue"]').checked = true));
  $("consult-complete").addEventListener("click", () => views.transfer.consultStep("transfer.complete"));
  $("consult-cancel").addEventListener("click", () => views.transfer.consultStep("transfer.cancel"));
  $("side-tabs").addEventListener("click", (e) => e.target.closest("[role=tab]") && views.stage.selectPane(e.target.closest("[role=tab]").dataset.pane));
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    views.chat.sendChat({ text: $("chat-input").value });
  });
  $("chat-attach").innerHTML = icon("paperclip", { size: 18 });
  $("chat-attach").addEventListener("click", () => $("chat-file").click());
  $("chat-file").addEventListener("change", () => {
    const file = $("chat-file").files?.[0];
    $("chat-file").value = "";
    if (file) views.chat.sendChat({ file });
  });
  $("share-kinds").addEventListener("click", (e) => e.target.closest("button") && views.share.setShareKind(e.target.closest("button").dataset.kind));
  $("share-form").addEventListener("submit", views.share.submitShare);
  views.snapshot.initSnapshotCanvas();
  $("nav-tabs").addEventListener("click", (e) => e.target.closest("button") && views.shell.setTab(e.target.closest("button").dataset.tab));
  $("wb-calls").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.supervise) views.supervise.supervise(b.dataset.call, b.dataset.supervise);
    else if (b.hasAttribute("data-supervise-stop")) views.supervise.stopSupervising(true);
  });
  $("sv-modes").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (b && state.supervise) views.supervise.supervise(state.supervise.callId, b.dataset.mode);
  });
  $("sv-stop").addEventListener("click", () => views.supervise.stopSupervising(true));
  $("sv-mute").addEventListener("click", () => {
    const sv = state.supervise;
    if (!sv) return;
    sv.muted = !sv.muted;
    if (sv.mic) sv.mic.enabled = sv.mode !== "monitor" && !sv.muted;
    views.supervise.renderSupervisePanel();
  });
  setInterval(() => {
    views.wallboard.tickWallboard();
    views.wrapup.renderWrapUpTimer();
  }, 1000);
  setInterval(() => {
    const view = document.body.dataset.view;
    if (!$("app").hidden && view !== "ringing" && view !== "call") views.inbox.loadInbox();
  }, 10000);
  $("signout-button").innerHTML = icon("log-out", { size: 18 });
  $("signout-button").addEventListener("click", views.session.signOut);
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
  views.alerts.renderSoundButton();
  $("sound-button").addEventListener("click", () => {
    ringer.enabled = !ringer.enabled;
    localStorage.setItem(SOUND_KEY, ringer.enabled ? "on" : "off");
    ringer.unlock();
    views.alerts.renderSoundButton();
    views.alerts.renderSoundBlocked();
  });
  views.alerts.renderNotifyButton();
  views.devices.listDevices();
  navigator.mediaDevices?.addEventListener?.("devicechange", views.devices.listDevices);
  document.addEventListener("keydown", views.shell.onKey);
  document.addEventListener("pointerdown", () => ringer.unlock(), { once: true });
  setInterval(views.card.refreshAges, 5000);
  views.card.renderCard(null);
  views.idle.renderHistory();
  window.addEventListener("beforeunload", () => {
    if (state.signal?.open && !state.call) {
      state.closing = true;
      state.signal.send({ type: "bye", id: "unload" });
    }
  });
  views.session.resumeSignedIn();
}


function main() {
  const store = createStore(initialState());
  const app = { store, state: store.state, ringer: new Ringer(), views: {} };
  Object.assign(app.views, {
    session: createSession(app),
    messages: createMessages(app),
    status: createStatus(app),
    idle: createIdle(app),
    shell: createShell(app),
    card: createCard(app),
    ringing: createRinging(app),
    call: createCall(app),
    stage: createStage(app),
    transfer: createTransfer(app),
    chat: createChat(app),
    share: createShare(app),
    snapshot: createSnapshot(app),
    wrapup: createWrapup(app),
    wallboard: createWallboard(app),
    supervise: createSupervise(app),
    devices: createDevices(app),
    alerts: createAlerts(app),
    inbox: createInbox(app),
  });
  window.callinConsole = debugHandle(app);
  wire(app);
  app.views.session.resumeSignedIn();
}

main();
