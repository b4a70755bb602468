/**
 * A call ringing here (the caller's card, the ring bar) and a ring that went unanswered (the missed view).
 */

import { icon } from "../../caller/icons.js";
import { $, toast } from "../lib/dom.js";
import { escapeHtml } from "../lib/format.js";
import { CALL_TYPE } from "../lib/text.js";
const AUTO_ANSWER_KEY = "callin.agent.autoAnswer";

/** The line under the caller's name while a call rings: where they came from, their tier, their location. */
function ringSub(card) {
  const id = card.identity ?? {};
  const bits = [];
  if (card.context?.screen) bits.push(`from “${card.context.screen}”`);
  const tier = id.claims?.account_tier ?? card.context?.crm?.tier;
  if (tier) bits.push(`${tier} customer`);
  bits.push(card.location ? "location shared" : "location not shared");
  return bits.join(" · ");
}

export function createRinging(app) {
  const { state, views, ringer } = app;

  function onOffered(message) {
    state.offer = message;
    state.ringStarted = performance.now();
    window.dispatchEvent(new CustomEvent("callin:ring", { detail: { callId: message.call_id, at: performance.timeOrigin + performance.now() } }));
    state.lastCard = message.card;
    const card = message.card;
    const id = card.identity ?? {};
    const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
    $("ring-icon").innerHTML = icon(type.icon, { size: 40 });
    $("ring-title").textContent = card.consult ? `${card.consult.from_name ?? card.consult.from} wants to consult you` : card.transferred_from ? `Transferred ${type.label.toLowerCase()} from ${card.transferred_from}` : card.callback ? `Callback · ${type.label.toLowerCase()}` : `Incoming ${type.label.toLowerCase()}`;
    $("ring-name").innerHTML = `${escapeHtml(id.name || id.subject || "Unknown caller")}${id.verified ? `<span class="verified">${icon("shield", { size: 14 })}Verified</span>` : ""}`;
    $("ring-sub").textContent = ringSub(card);
    const bar = $("ring-bar");
    bar.style.transition = "none";
    bar.style.transform = "scaleX(1)";
    requestAnimationFrame(() => {
      bar.style.transition = `transform ${message.ring_timeout_s}s linear`;
      bar.style.transform = "scaleX(0)";
    });
    views.card.renderCard(card);
    views.shell.show("ringing");
    views.status.setStatus("ringing");
    document.title = `● Incoming call: ${id.name || "caller"}`;
    if (state.autoAnswer) {
      views.call.accept();
      return;
    }
    views.call.discardPrepared();
    if (!state.call) {
      state.prepared = views.call.preparePeer(message);
      if (!card.consult) views.call.preconnect(state.prepared);
    }
    ringer.start();
    if (ringer.enabled && ringer.blocked) toast("The browser blocks the ring sound: click anywhere in the console to allow it.", { bad: true, ms: 8000 });
    views.alerts.notifyRing(message);
    if (state.contacts?.callId !== message.call_id) views.card.loadContacts(message.call_id);
    $("accept-button").focus({ preventScroll: true });
  }

  /** The caller's location came while the call rings here (call.location): the ring line says so. */
  function onLocation(message) {
    if (state.offer?.call_id === message.call_id) $("ring-sub").textContent = ringSub(state.offer.card);
  }

  function stopRinging() {
    ringer.stop();
    views.alerts.closeNotification();
    state.offer = null;
    views.call.discardPrepared();
  }

  // ------------------------------------------------------------------------------------------------ missed
  /** A ring that went unanswered: say so plainly (it went back to the queue, not "to another agent"). */
  function showMissed(offer) {
    const card = offer?.card ?? {};
    const id = card.identity ?? {};
    const name = id.name || id.subject || "a caller";
    const rang = Math.max(1, Math.round((performance.now() - state.ringStarted) / 1000));
    views.card.renderCard(null);
    state.missed = null;
    views.shell.show("missed");
    state.missed = { callId: offer?.call_id, name, rang, away: false };
    $("missed-icon").innerHTML = icon("phone-incoming", { size: 44 });
    $("missed-title").textContent = `Missed call from ${name}`;
    renderMissed();
  }

  function onMissedStatus(message) {
    if (!state.missed) return;
    state.missed.away = message.reason === "missed_call";
    renderMissed();
  }

  function renderMissed() {
    const m = state.missed;
    if (!m) return;
    const first = `It rang here for ${m.rang} s without an answer and went back to the queue, where the next free agent gets it.`;
    $("missed-text").textContent = m.away
      ? `${first} You let several calls in a row ring out, so you were set to Away: no call rings here until you are available again.`
      : `${first} You are still available; if nobody else can take it, it may ring here again.`;
    $("missed-available").textContent = m.away ? "Go available" : "Stay available";
    $("missed-away").hidden = m.away;
    document.title = `Missed call · Callin agent console`;
  }

  async function decline() {
    const offer = state.offer;
    if (!offer) return;
    stopRinging();
    views.shell.backToRest();
    try {
      await state.signal.request({ type: "call.decline", call_id: offer.call_id });
    } catch (e) {
      if (e.code !== "not_offered") toast(e.reason, { bad: true });
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("decline-button").addEventListener("click", decline);
    $("missed-available").addEventListener("click", () => {
      if (state.status !== "available") views.status.requestStatus("available");
      views.shell.backToRest();
    });
    $("missed-away").addEventListener("click", () => {
      views.status.requestStatus("away");
      views.shell.backToRest();
    });
    const auto = $("auto-answer");
    auto.checked = state.autoAnswer = localStorage.getItem(AUTO_ANSWER_KEY) === "on";
    auto.addEventListener("change", () => {
      state.autoAnswer = auto.checked;
      localStorage.setItem(AUTO_ANSWER_KEY, auto.checked ? "on" : "off");
    });
  }

  return { onOffered, onLocation, stopRinging, showMissed, onMissedStatus, renderMissed, decline, mount };
}
