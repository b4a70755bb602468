/**
 * The inbox: callback requests waiting and messages left in this agent's queues, to act on while idle.
 */

import { icon } from "../../caller/icons.js";
import { $, toast, formError } from "../lib/dom.js";
import { escapeHtml, ago } from "../lib/format.js";
import { api } from "../lib/api.js";

export function createInbox(app) {
  const { store, state } = app;

  // Callback requests waiting and messages left in this agent's queues (GET /api/v1/agent/inbox), refreshed while idle.
  async function loadInbox() {
    if (!state.account || !state.signal) return;
    try {
      store.set({ inbox: await api("/api/v1/agent/inbox") });
    } catch {
      /* shown again at the next refresh */
    }
  }

  function renderInbox() {
    const { callbacks, messages } = state.inbox;
    const total = callbacks.length + messages.length;
    $("inbox-count").textContent = String(total);
    const view = document.body.dataset.view;
    $("inbox-section").hidden = !total || view === "ringing" || view === "call";
    const list = $("inbox-list");
    list.replaceChildren();
    for (const c of callbacks) {
      const li = document.createElement("li");
      li.dataset.callbackId = c.call_id;
      li.innerHTML = `<span class="h-ico">${icon("phone-incoming", { size: 15 })}</span><span class="h-main"><div class="h-name"></div><div class="h-meta"></div></span><button class="btn xs" data-take="${escapeHtml(c.call_id)}">Call back now</button>`;
      li.querySelector(".h-name").textContent = c.caller;
      li.querySelector(".h-meta").textContent = `Callback · ${c.queue}${c.phone ? ` · ${c.phone}` : ""} · ${ago(c.requested_at)}${c.ringing_at ? ` · ringing at ${c.ringing_at}` : ""}`;
      const take = li.querySelector("button");
      take.disabled = Boolean(c.ringing_at) || state.status !== "available" || Boolean(state.call);
      take.title = take.disabled ? (c.ringing_at ? "It is ringing at an agent now" : "Be available to take it") : "It rings here now";
      list.append(li);
    }
    for (const m of messages) {
      const li = document.createElement("li");
      li.dataset.messageId = m.call_id;
      li.innerHTML = `<span class="h-ico">${icon("message-square", { size: 15 })}</span><span class="h-main"><div class="h-name"></div><div class="h-meta"></div><div class="h-text"></div></span><button class="btn xs" data-handled="${escapeHtml(m.call_id)}">Mark handled</button>`;
      li.querySelector(".h-name").textContent = m.caller;
      li.querySelector(".h-meta").textContent = `Message · ${m.queue} · ${ago(m.left_at)}`;
      li.querySelector(".h-text").textContent = m.message;
      list.append(li);
    }
  }

  async function onInboxClick(event) {
    const b = event.target.closest("button");
    if (!b) return;
    formError("inbox-error", null);
    b.disabled = true;
    try {
      if (b.dataset.take) {
        await api(`/api/v1/callbacks/${encodeURIComponent(b.dataset.take)}/take`, { method: "POST" });
        toast("The callback rings here now.");
      } else if (b.dataset.handled) {
        await api(`/api/v1/messages/${encodeURIComponent(b.dataset.handled)}/handled`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: "{}",
        });
        toast("Message marked as handled.");
      }
    } catch (e) {
      formError("inbox-error", e.reason);
    }
    await loadInbox();
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    store.subscribe("status", renderInbox);
    store.subscribe("inbox", renderInbox);
    $("inbox-list").addEventListener("click", onInboxClick);
    setInterval(() => {
      const view = document.body.dataset.view;
      if (!$("app").hidden && view !== "ringing" && view !== "call") loadInbox();
    }, 10000);
  }

  return { loadInbox, renderInbox, onInboxClick, mount };
}
