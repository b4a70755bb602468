/**
 * The ended view and after-call work: the wrap-up form, its drafts (sessionStorage, per call) and timer.
 */

import { icon } from "../../caller/icons.js";
import { $, toast, formError } from "../lib/dom.js";
import { escapeHtml, sleep, duration } from "../lib/format.js";
import { CALL_TYPE, END_TEXT } from "../lib/text.js";

const DRAFT_PREFIX = "callin.wrapup."; // sessionStorage: an unsaved wrap-up note per call, until it is saved

export function createWrapup(app) {
  const { store, state, views } = app;

  function endCallView(message) {
    const call = state.call;
    if (!call) return;
    views.call.cleanupCall(call);
    // Dialogs about the call go with it.
    for (const id of ["snapshot-dialog", "transfer-dialog"]) if ($(id).open) $(id).close();
    $("side-tabs").hidden = true;
    views.stage.selectPane("card");
    $("consult-bar").hidden = true;
    views.captions.clear();
    const seconds = message.duration_s ?? (Date.now() - call.startedAt) / 1000;
    const id = call.card.identity ?? {};
    const type = CALL_TYPE[call.card.call_type] ?? CALL_TYPE.voice;
    state.history.unshift({ callId: call.id, card: call.card, name: id.name || id.subject, type: call.card.call_type, seconds, reason: message.reason, at: new Date() });
    store.notify("history");
    $("ended-icon").innerHTML = icon(message.reason === "transferred" ? "phone-forwarded" : "check-circle", { size: 44 });
    $("ended-title").textContent = message.reason === "transferred" ? `Call with ${id.name || "the caller"} transferred` : `Call with ${id.name || "the caller"} ended`;
    $("ended-text").textContent = message.reason === "transferred" ? `You handed the call to ${message.to}.` : `${END_TEXT[message.reason] ?? "The call ended"}.`;
    $("ended-facts").innerHTML = `
      <div><dt>Duration</dt><dd>${duration(seconds)}</dd></div>
      <div><dt>Type</dt><dd>${type.label}</dd></div>
      <div><dt>Ended by</dt><dd>${escapeHtml({ caller: "Caller", agent: "You", system: "System" }[message.by] ?? message.by ?? "–")}</dd></div>`;
    views.shell.show("ended");
    // Wrap-up belongs to the agent who had the call at its end (not after a transfer or a consult).
    const wrap = !["transferred", "consult_ended"].includes(message.reason);
    state.endedCallId = wrap ? call.id : null;
    state.endedCard = call.card;
    showWrapUp(wrap);
    (wrap ? $("wrapup-disposition") : $("ended-next")).focus({ preventScroll: true });
    if (state.status === "busy") views.status.setStatus("available");
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
    views.card.renderCard(h.card);
    const id = h.card?.identity ?? {};
    $("ended-icon").innerHTML = icon("file-text", { size: 44 });
    $("ended-title").textContent = `Wrap-up of the call with ${id.name || "the caller"}`;
    $("ended-text").textContent = "Your note was kept. Save it when you're done.";
    $("ended-facts").innerHTML = "";
    views.shell.show("ended");
    showWrapUp(true);
    views.idle.renderHistory();
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
      views.idle.renderHistory();
      if (!state.call && !state.offer) {
        views.shell.show("idle");
        views.card.renderCard(null);
      }
    } catch (e) {
      formError("wrapup-error", e.reason ?? "The wrap-up could not be saved.");
      $("wrapup-submit").disabled = false;
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    const ready = () => {
      // "Ready" ends after-call work early; an unsaved note stays a draft (recent calls: "Finish wrap-up").
      if (state.status === "wrap_up") views.status.requestStatus("available");
      state.endedCallId = null;
      state.endedCard = null;
      views.shell.show("idle");
      views.card.renderCard(null);
      views.idle.renderHistory();
    };
    $("ended-dismiss").addEventListener("click", ready);
    $("ended-next").addEventListener("click", ready);
    $("wrapup").addEventListener("submit", submitWrapUp);
    $("wrapup").addEventListener("input", saveDraft);
    $("wrapup").addEventListener("change", saveDraft);
    setInterval(renderWrapUpTimer, 1000);
  }

  return { endCallView, readDraft, saveDraft, formDirty, showWrapUp, finishWrapUp, onWrapUpStatus, extendWrapUp, renderWrapUpTimer, submitWrapUp, mount };
}
