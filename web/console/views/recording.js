/**
 * The call's recording: a chip on the call that always says its state (recording, paused, not recorded, declined,
 * asking the caller…), the start / pause / resume button and its shortcut R (views/shell.js), and, for
 * supervisors, the latest recordings to play back on the wallboard tab (GET /api/v1/recordings; the file streams
 * with Range requests, and every play is in the gateway's audit log).
 */

import { $, toast } from "../lib/dom.js";
import { api } from "../lib/api.js";
import { duration } from "../lib/format.js";

const STATE_TEXT = {
  off: "Not recorded",
  asking: "Asking the caller to agree to recording…",
  pending: "Will be recorded",
  recording: "Recording",
  paused: "Recording paused",
  declined: "Caller declined recording",
  stopped: "Recording stopped",
  failed: "Recording failed",
};

export function createRecording(app) {
  const { state, views } = app;

  function current() {
    return state.call?.card?.recording ?? null;
  }

  /** What the button would do now: start (on demand, or after a failure), pause, resume, or nothing. */
  function action(rec) {
    if (!rec) return null;
    if (rec.state === "recording") return "pause";
    if (rec.state === "paused") return "resume";
    if ((rec.state === "off" && rec.policy !== "off") || rec.state === "failed") return "start";
    return null;
  }

  function render() {
    const rec = current();
    const chip = $("rec-chip");
    chip.dataset.state = rec?.state ?? "off";
    chip.querySelector("span").textContent = STATE_TEXT[rec?.state ?? "off"] ?? rec.state;
    const button = $("rec-button");
    const next = action(rec);
    button.disabled = !next;
    button.dataset.action = next ?? "";
    button.setAttribute("aria-pressed", String(rec?.state === "paused"));
    const label = { start: "Start recording (R)", pause: "Pause recording (R)", resume: "Resume recording (R)" }[next]
      ?? STATE_TEXT[rec?.state ?? "off"];
    button.setAttribute("aria-label", label);
    button.title = label;
    button.innerHTML = `<span class="rec-dot"></span><span>${next === "resume" ? "Resume" : next === "pause" ? "Pause" : "Rec"}</span>`;
  }

  /** recording.state: the call's card follows it (also a call still ringing here). */
  function onState(message) {
    const rec = { state: message.state, policy: message.policy, consent: message.consent };
    if (state.offer?.call_id === message.call_id && state.offer.card) state.offer.card.recording = rec;
    if (state.call?.id === message.call_id) {
      state.call.card.recording = rec;
      render();
      if (message.state === "declined") toast("The caller declined recording: nothing of this call is recorded.");
      if (message.state === "failed") toast("The recording could not start. Try again.", { bad: true });
    }
  }

  async function toggle() {
    const call = state.call;
    const next = action(current());
    if (!call || !next || !state.signal?.open) return;
    try {
      await state.signal.request({ type: `recording.${next}`, call_id: call.id });
    } catch (e) {
      toast(e.reason || e.code, { bad: true });
    }
  }

  // ---------------------------------------------------------------------------------------- playback (staff)
  async function loadRecordings() {
    if (!views.shell.isSupervisor()) return;
    let page;
    try {
      page = await api("/api/v1/recordings?limit=10");
    } catch (e) {
      $("wb-recordings").textContent = e.reason;
      return;
    }
    const list = $("wb-recordings");
    list.replaceChildren();
    $("wb-recordings-count").textContent = String(page.recordings.length);
    for (const rec of page.recordings) {
      const row = document.createElement("div");
      row.className = "wb-row";
      const text = document.createElement("span");
      const when = new Date(rec.started_at * 1000).toLocaleString();
      text.textContent = `${when} · ${rec.queue ?? "?"} · ${rec.agent ?? "?"} · ${duration(rec.duration_s)}`
        + (rec.paused_spans.length ? ` · ${rec.paused_spans.length} paused` : "");
      const play = document.createElement("button");
      play.className = "btn";
      play.textContent = rec.deleted_at ? "Deleted" : "Play";
      play.disabled = Boolean(rec.deleted_at);
      play.addEventListener("click", () => playRecording(rec.id));
      row.append(text, play);
      list.append(row);
    }
  }

  function playRecording(id) {
    const player = $("rec-player");
    player.hidden = false;
    player.src = `/api/v1/recordings/${encodeURIComponent(id)}/file`;
    player.dataset.recording = id;
    player.play().catch(() => {}); // a browser that blocks autoplay: the controls are there
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("rec-button").addEventListener("click", toggle);
    $("wb-recordings-refresh").addEventListener("click", loadRecordings);
  }

  return { render, onState, toggle, loadRecordings, playRecording, mount };
}
