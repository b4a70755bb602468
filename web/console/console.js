/**
 * The Callin agent console: sign in, availability, ringing with the caller's card, and the call itself.
 * Plain ES modules, no framework, no build step. This module is the composition root: it makes the store (lib/store.js)
 * and one module per view (views/), hands each the same `app` ({ store, state, ringer, views }), and mounts them
 * (each wires its own controls). The agent's signaling session is callin-agent.js's CallinAgentSession; the call's
 * accept and peer connection live in views/call.js.
 */

import { summarizeStats } from "../caller/callin-client.js";

import { $ } from "./lib/dom.js";
import { Ringer } from "./lib/ringer.js";
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
import { createRecording } from "./views/recording.js";
import { createCaptions } from "./views/captions.js";

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
    autoAnswer: false, // the agent's choice, kept in localStorage (views/ringing.js)
    staleCallId: null,
    prepared: null, // the peer connection prepared while a call rings
    spare: null, // a peer connection made ahead while available (views/call.js refillSpare)
    wrapUp: null, // {callId, until} while the gateway keeps the agent in wrap-up
    endedCallId: null, // the call the ended view (and its wrap-up form) is about
    tab: "calls",
    wallboard: null, // the last wallboard message, with clockOffset
    supervise: null, // {callId, mode, pc, audioTx, videoTx, auxTx, mic, card}
    superviseStarting: null, // the call a supervise.start is on its way for (views/supervise.js)
    endedCard: null, // the card of the call the ended view is about
    missed: null, // {callId, name} while the missed view shows
    contacts: null, // {callId, calls} the caller's earlier contacts (GET .../contact-history)
    inbox: { callbacks: [], messages: [] },
    notification: null, // the desktop notification of the call ringing now
    directoryTimer: null, // refreshes the transfer dialog's directory while it is open (views/transfer.js)
  };
}

/** A small handle for debugging in the browser's console (and for the browser tests). */
function debugHandle(app) {
  const { state, views } = app;

  return {
    get state() {
      return { status: state.status, callId: state.call?.id ?? null, ringing: state.offer?.call_id ?? null, firstFrameAt: state.call?.firstFrameAt ?? null };
    },
    /** The peer connection set up for the call ringing now (connected before the accept, see preconnect). */
    get ringingPeerConnection() {
      return state.prepared?.pc ?? null;
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
      return { micLevel: views.devices.micLevel(), previewWidth: $("dev-preview").videoWidth, soundBlocked: !$("sound-blocked").hidden };
    },
    get recording() {
      return { chip: $("rec-chip").dataset.state, button: $("rec-button").dataset.action || null };
    },
    /** The live captions shown now (views/captions.js): the agent's call's, and the supervised call's. */
    get captions() {
      return views.captions.shown();
    },
    get supervisedCaptions() {
      return views.captions.shown("supervise");
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
    recording: createRecording(app),
    captions: createCaptions(app),
  });
  for (const view of Object.values(app.views)) view.mount?.();
  window.callinConsole = debugHandle(app);
  app.views.session.resumeSignedIn();
}

main();
