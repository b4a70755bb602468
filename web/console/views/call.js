/**
 * The call's media: the agent's peer connection, prepared while the call rings, accept, the rejoin after a
 * reload, media recovery after a network change, remote tracks and the first frame, microphone and camera, hang-up.
 * One module for the accept and peer-connection code, so that it reads (and changes) in one place.
 */

import { AUDIO_CONSTRAINTS, candidateMessage, iceServersFrom, preferCodec } from "../../caller/callin-client.js";
import { offerCallMedia } from "../../caller/callin-agent.js";
import { $, toast, banner } from "../lib/dom.js";
import { duration, sleep } from "../lib/format.js";

export function createCall(app) {
  const { store, state, views } = app;

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
        if (state.call === call && !call.firstFrameAt) $("ph-text").textContent = views.stage.waitingText(call);
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
    views.ringing.stopRinging();
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
    views.stage.showCallView(call);
    for (const [track, slot] of call.earlyTracks.splice(0)) onRemoteTrack(call, track, slot);

    navigator.mediaDevices
      .getUserMedia({ audio: views.devices.audioConstraints() })
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
      views.shell.show("idle");
      views.card.renderCard(null);
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
    views.card.renderCard(welcomeCall.card);
    views.stage.showCallView(call);
    // The call went on while the page reloaded: its timer goes on from the gateway's count, not from 0:00.
    if (welcomeCall.connected_s != null) {
      call.startedAt = Date.now() - welcomeCall.connected_s * 1000;
      $("call-timer").textContent = duration(welcomeCall.connected_s);
    }
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
      views.card.renderCard(welcomeCall.card);
      views.shell.show("stale");
      toast(`The call's media could not be set up again: ${e.reason ?? e.message}`, { bad: true });
    }
  }

  function onRemoteTrack(call, track, slot = "main") {
    if (slot === "aux") {
      const audio = views.devices.audioElement("remote-audio-2");
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
        views.devices.routeToSpeaker(audio);
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

  function setMuted(muted) {
    const call = state.call;
    if (!call) return;
    call.muted = muted;
    if (call.mic) call.mic.enabled = !muted;
    views.stage.updateCallControls();
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
        const stream = await navigator.mediaDevices.getUserMedia({ video: views.devices.videoConstraints() });
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
    views.stage.updateCallControls();
  }

  async function hangup() {
    const call = state.call;
    if (call) {
      try {
        await state.signal?.request({ type: "call.hangup", call_id: call.id }, 5000);
      } catch (e) {
        if (!["call_ended", "unknown_call"].includes(e.code)) toast(e.reason, { bad: true });
      }
      if (state.call === call) views.wrapup.endCallView({ call_id: call.id, reason: "agent_hangup", by: "agent", duration_s: (Date.now() - call.startedAt) / 1000 });
    } else if (state.staleCallId) {
      const callId = state.staleCallId;
      try {
        await state.signal?.request({ type: "call.hangup", call_id: callId }, 5000);
      } catch (e) {
        if (!["call_ended", "unknown_call"].includes(e.code)) toast(e.reason, { bad: true });
      }
      state.staleCallId = null;
      views.shell.show("idle");
      views.card.renderCard(null);
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

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("accept-button").addEventListener("click", accept);
    $("mute-button").addEventListener("click", () => setMuted(!state.call?.muted));
    $("camera-button").addEventListener("click", toggleCamera);
    $("hangup-button").addEventListener("click", hangup);
    $("stale-hangup").addEventListener("click", hangup);
    // A network change (back online, Wi-Fi to cellular): the call's media gets a new peer connection.
    window.addEventListener("online", () => onNetworkChange("online"));
    navigator.connection?.addEventListener?.("change", () => onNetworkChange("network_changed"));
    // A spare peer connection while available (see refillSpare); dropped offline (a new session may bring other
    // ICE servers).
    store.subscribe("status", (status) => {
      if (status === "available") setTimeout(refillSpare, 0);
      else if (status === "offline") dropSpare();
    });
  }

  return { preparePeer, refillSpare, dropSpare, preconnect, newPeer, recoverMedia, offerMedia, onNetworkChange, step, discardPrepared, accept, rejoinCall, onRemoteTrack, watchFirstFrame, setMuted, toggleCamera, hangup, cleanupCall, mount };
}
