/**
 * The agent's state (available, away, ringing, on a call, wrap-up, offline): the status pill and switch.
 */

import { $, toast } from "../lib/dom.js";
import { STATUS_TEXT } from "../lib/text.js";

export function createStatus(app) {
  const { store, state, ringer } = app;

  /** The agent's state changed (the gateway said so): every view that shows it renders again. */
  function setStatus(status) {
    store.set({ status });
  }

  async function requestStatus(status) {
    ringer.unlock();
    if (!state.signal?.open) return;
    try {
      const reply = await state.signal.request({ type: "agent.status", status });
      setStatus(reply.status);
    } catch (e) {
      toast(e.reason, { bad: true });
    }
  }

  function renderStatus(status) {
    const pill = $("status-pill");
    pill.dataset.status = status;
    $("status-text").textContent = STATUS_TEXT[status] ?? status;
    const locked = ["ringing", "busy", "offline"].includes(status);
    for (const b of $("status-switch").querySelectorAll("button")) {
      b.setAttribute("aria-checked", String(b.dataset.status === status));
      b.disabled = locked;
    }
    if (status !== "ringing") document.title = `${STATUS_TEXT[status] ?? status} · Callin agent console`;
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    store.subscribe("status", renderStatus);
    $("go-available").addEventListener("click", () => requestStatus("available"));
    $("go-away").addEventListener("click", () => requestStatus("away"));
  }

  return { setStatus, requestStatus, mount };
}
