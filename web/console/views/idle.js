/**
 * The idle view: waiting for the next call or away, with today's figures and the recent calls.
 */

import { icon } from "../../caller/icons.js";
import { $ } from "../lib/dom.js";
import { escapeHtml, duration } from "../lib/format.js";
import { CALL_TYPE, END_TEXT } from "../lib/text.js";

export function createIdle(app) {
  const { store, state, views } = app;

  function renderIdle() {
    const available = state.status === "available";
    const visual = $("idle-visual");
    visual.className = `idle-visual${available ? " available" : ""}`;
    visual.innerHTML = icon(available ? "headphones" : "clock", { size: 48 });
    $("idle-title").textContent = available ? "Waiting for the next call" : state.status === "offline" ? "Not connected" : "You're away";
    $("idle-text").textContent = available
      ? "Calls ring here with the caller's verified identity, location and what they were doing in the app."
      : state.status === "offline"
        ? "Reconnecting to the gateway…"
        : "Set yourself to available to start taking calls.";
    $("idle-available").hidden = available || state.status === "offline";
  }

  function renderHistory() {
    const list = $("history");
    const calls = state.history.length;
    const talk = state.history.reduce((sum, h) => sum + h.seconds, 0);
    $("stat-calls").textContent = String(calls);
    $("stat-talk").textContent = duration(talk);
    $("stat-avg").textContent = calls ? duration(talk / calls) : "–";
    if (!calls) return;
    list.innerHTML = state.history
      .slice(0, 8)
      .map((h) => {
        const type = CALL_TYPE[h.type] ?? CALL_TYPE.voice;
        const pending = h.callId && h.callId !== state.endedCallId && views.wrapup.readDraft(h.callId);
        return `<li><span class="h-ico">${icon(type.icon, { size: 15 })}</span>
          <span class="h-main"><div class="h-name">${escapeHtml(h.name)}</div><div class="h-meta">${h.at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} · ${escapeHtml(END_TEXT[h.reason] ?? h.reason)}</div></span>
          ${pending ? `<button class="btn xs" data-finish-wrapup="${escapeHtml(h.callId)}">Finish wrap-up</button>` : `<span class="h-dur">${duration(h.seconds)}</span>`}</li>`;
      })
      .join("");
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    store.subscribe("status", renderIdle);
    store.subscribe("history", renderHistory);
    $("idle-available").addEventListener("click", () => views.status.requestStatus("available"));
    $("history").addEventListener("click", (e) => {
      const b = e.target.closest("[data-finish-wrapup]");
      if (b) views.wrapup.finishWrapUp(b.dataset.finishWrapup);
    });
    renderHistory();
  }

  return { renderIdle, renderHistory, mount };
}
