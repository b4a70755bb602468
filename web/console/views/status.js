/**
 * The agent's state (available, away, ringing, on a call, wrap-up, offline): the status pill and switch.
 */

import { $ } from "../lib/dom.js";

import { STATUS_TEXT } from "../lib/text.js";

export function createStatus(app) {
  const { state, views } = app;

  function setStatus(status) {
    state.status = status;
    const pill = $("status-pill");
    pill.dataset.status = status;
    $("status-text").textContent = STATUS_TEXT[status] ?? status;
    const locked = ["ringing", "busy", "offline"].includes(status);
    for (const b of $("status-switch").querySelectorAll("button")) {
      b.setAttribute("aria-checked", String(b.dataset.status === status));
      b.disabled = locked;
    }
    views.idle.renderIdle();
    views.inbox.renderInbox();
    if (status !== "ringing") document.title = `${STATUS_TEXT[status] ?? status} · Callin agent console`;
  }

  return { setStatus };
}
