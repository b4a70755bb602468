/**
 * The call view: the caller's video stage, call timer, connection quality, the controls (mute, camera, hold,
 * transfer, snapshot) and the side panes (card, chat, shared).
 */

import { icon } from "../../caller/icons.js";
import { summarizeStats } from "../../caller/callin-client.js";
import { $, toast, formError } from "../lib/dom.js";
import { initials, duration } from "../lib/format.js";
import { callTypeChip } from "../lib/text.js";
import { inboundAudio } from "../lib/stats.js";

export function createStage(app) {
  const { state, views } = app;

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
    views.transfer.renderConsultBar(call);
    views.recording.render();
    updateCallControls();
    views.shell.show("call");
    views.status.setStatus("busy");
    document.title = `On a call with ${id.name || "caller"} · Callin`;
    call.timers.push(setInterval(() => ($("call-timer").textContent = duration((Date.now() - call.startedAt) / 1000)), 1000));
    call.timers.push(setInterval(() => pollStats(call), 1000));
    $("hangup-button").focus({ preventScroll: true });
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

  // ------------------------------------------------------------------------------------------------ hold
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

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("hold-button").addEventListener("click", toggleHold);
    $("side-tabs").addEventListener("click", (e) => e.target.closest("[role=tab]") && selectPane(e.target.closest("[role=tab]").dataset.pane));
    $("stale-icon").innerHTML = icon("alert", { size: 44 });
  }

  return { waitingText, showCallView, pollStats, updateCallControls, resetInCallPanes, selectPane, toggleHold, mount };
}
