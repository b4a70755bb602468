/**
 * Supervision from the wallboard: monitor, whisper or barge into a call over a peer connection of its own.
 */

import { AUDIO_CONSTRAINTS, candidateMessage, iceServersFrom, preferCodec } from "../../caller/callin-client.js";
import { $, toast } from "../lib/dom.js";

const MODE_TEXT = {
  monitor: (video) => `You hear the caller and the agent${video ? " and see the caller's video" : ""}. Nobody hears you.`,
  whisper: () => "The agent hears you; the caller doesn't. Coach them quietly.",
  barge: () => "You've joined the conversation: the caller and the agent both hear you.",
};

export function createSupervise(app) {
  const { state, views } = app;

  async function supervise(callId, mode) {
    if (state.supervise && state.supervise.callId !== callId) await stopSupervising(true);
    const existing = state.supervise;
    // The gateway tells a supervisor who joins a transcribed call so (transcript.notice) before its answer comes.
    state.superviseStarting = callId;
    try {
      const started = await state.signal.request({ type: "supervise.start", call_id: callId, mode });
      if (existing) {
        existing.mode = mode;
        if (existing.mic) existing.mic.enabled = mode !== "monitor" && !existing.muted;
        renderSupervisePanel();
        if (state.wallboard) views.wallboard.renderWallboard(state.wallboard);
        return;
      }
      await startSupervisePeer(callId, mode, started.card);
    } catch (e) {
      if (!state.supervise) views.captions.clearSupervised();
      toast(e.reason ?? "Supervision failed.", { bad: true });
    } finally {
      if (state.superviseStarting === callId) state.superviseStarting = null;
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
    $("sv-novideo").hidden = false;
    pc.addEventListener("track", (e) => {
      if (e.transceiver === sv.videoTx) {
        const video = $("sv-video");
        video.srcObject = new MediaStream([e.track]);
        video.play().catch(() => {});
        // The video section is there on a voice call too, but carries nothing: "No video" stays until a frame shows.
        video.addEventListener("loadeddata", () => {
          if (state.supervise === sv) $("sv-novideo").hidden = true;
        }, { once: true });
        return;
      }
      const audio = views.devices.audioElement(e.transceiver === sv.auxTx ? "sv-audio-agent" : "sv-audio-caller");
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
    if (state.wallboard) views.wallboard.renderWallboard(state.wallboard);
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
    views.captions.clearSupervised();
    $("sv-video").srcObject = null;
    $("sv-novideo").hidden = false;
    for (const id of ["sv-audio-agent", "sv-audio-caller"]) {
      const a = document.getElementById(id);
      if (a) a.srcObject = null;
    }
    renderSupervisePanel();
    if (state.wallboard) views.wallboard.renderWallboard(state.wallboard);
  }

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
    $("sv-text").textContent = MODE_TEXT[sv.mode]((live?.call_type ?? sv.card?.call_type) !== "voice");
    for (const b of $("sv-modes").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.mode === sv.mode));
    const mute = $("sv-mute");
    mute.hidden = sv.mode === "monitor";
    mute.setAttribute("aria-pressed", String(sv.muted));
    mute.textContent = sv.muted ? "Unmute me" : "Mute me";
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
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
  }

  return { supervise, startSupervisePeer, stopSupervising, renderSupervisePanel, mount };
}
