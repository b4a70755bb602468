/**
 * Transfers: the dialog with a live directory of colleagues and queues, blind and warm (consult) transfer, and
 * the consult bar on both sides.
 */

import { $, toast, formError } from "../lib/dom.js";
import { escapeHtml, initials, capitalize } from "../lib/format.js";
import { api } from "../lib/api.js";

const DIRECTORY_STATUS = { available: "Available", away: "Away", ringing: "Ringing", busy: "On a call", wrap_up: "Wrap-up", offline: "Not signed in" };

export function createTransfer(app) {
  const { state, views } = app;

  let transferMode = "blind";

  function setTransferMode(mode) {
    transferMode = mode;
    for (const b of $("transfer-modes").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
    const queueRow = $("transfer-queue-row");
    queueRow.hidden = mode === "warm";
    $("transfer-queue").hidden = mode === "warm";
    $("transfer-queue-list").hidden = mode === "warm";
    if (mode === "warm") document.querySelector('#transfer-form input[value="agent"]').checked = true;
    $("transfer-help").textContent = mode === "warm"
      ? "You talk to your colleague first while the caller waits on hold; then hand the call over or take it back."
      : "The call leaves you now and rings at the colleague or queue you choose.";
    $("transfer-go").textContent = mode === "warm" ? "Call colleague" : "Transfer";
  }

  async function openTransfer() {
    const call = state.call;
    if (!call || call.consult || call.consultFrom || $("transfer-dialog").open) return;
    formError("transfer-error", null);
    setTransferMode("blind");
    $("transfer-agent").value = "";
    $("transfer-queue").value = "";
    $("transfer-dialog").showModal();
    $("transfer-agent").focus();
    // A live directory of colleagues and queues (any signed-in user may read it), refreshed while the dialog is open.
    await loadDirectory();
    clearInterval(state.directoryTimer);
    state.directoryTimer = setInterval(() => ($("transfer-dialog").open ? loadDirectory() : clearInterval(state.directoryTimer)), 3000);
  }

  async function loadDirectory() {
    let directory;
    try {
      directory = await api("/api/v1/directory");
    } catch (e) {
      formError("transfer-error", `The list of colleagues could not be loaded (${e.reason}); type a username instead.`);
      return;
    }
    const chosenAgent = $("transfer-agent").value.trim();
    const chosenQueue = $("transfer-queue").value.trim();
    $("transfer-agents").innerHTML = directory.agents.map((a) => `<option value="${escapeHtml(a.username)}">${escapeHtml(a.display_name)} · ${escapeHtml(DIRECTORY_STATUS[a.status] ?? a.status)}</option>`).join("");
    $("transfer-queues").innerHTML = directory.queues.map((q) => `<option value="${escapeHtml(q.name)}"></option>`).join("");
    $("transfer-directory").innerHTML = directory.agents
      .map((a) => `<li><button type="button" data-agent="${escapeHtml(a.username)}" aria-pressed="${a.username === chosenAgent}"${a.status === "offline" ? " disabled" : ""}>
        <span class="a-avatar">${escapeHtml(initials(a.display_name))}</span><span class="d-name">${escapeHtml(a.display_name)}<small>${escapeHtml(a.username)}${a.queues.length ? ` · ${escapeHtml(a.queues.join(", "))}` : ""}</small></span>
        <span class="status-tag" data-status="${escapeHtml(a.status)}">${escapeHtml(DIRECTORY_STATUS[a.status] ?? a.status)}</span></button></li>`)
      .join("");
    $("transfer-queue-list").innerHTML = directory.queues
      .map((q) => `<li><button type="button" data-queue="${escapeHtml(q.name)}" aria-pressed="${q.name === chosenQueue}">
        <span class="d-name">${escapeHtml(q.name)}<small>${q.open ? "open" : "closed"} · ${q.waiting} waiting</small></span>
        <span class="status-tag" data-status="${q.agents_available ? "available" : "away"}">${q.agents_available} available</span></button></li>`)
      .join("");
    $("transfer-queue-list").hidden = transferMode === "warm";
  }

  function pickTransferTarget(event) {
    const b = event.target.closest("button");
    if (!b || b.disabled) return;
    const toQueue = b.dataset.queue != null;
    $(toQueue ? "transfer-queue" : "transfer-agent").value = b.dataset.queue ?? b.dataset.agent;
    document.querySelector(`#transfer-form input[value="${toQueue ? "queue" : "agent"}"]`).checked = true;
    for (const x of document.querySelectorAll("#transfer-directory button, #transfer-queue-list button")) x.setAttribute("aria-pressed", String(x === b));
    formError("transfer-error", null);
  }

  async function submitTransfer(event) {
    event.preventDefault();
    const call = state.call;
    if (!call) return;
    const toQueue = document.querySelector('#transfer-form input[name="target"]:checked').value === "queue" && transferMode === "blind";
    const target = (toQueue ? $("transfer-queue") : $("transfer-agent")).value.trim();
    if (!target) {
      formError("transfer-error", toQueue ? "Enter the queue's name." : "Enter your colleague's username.");
      return;
    }
    const body = { type: "call.transfer", call_id: call.id, mode: transferMode };
    body[toQueue ? "to_queue" : "to_agent"] = target;
    $("transfer-go").disabled = true;
    try {
      await state.signal.request(body);
      $("transfer-dialog").close();
      if (transferMode === "warm") {
        call.consult = { colleague: target, state: "ringing" };
        renderConsultBar(call);
        views.stage.updateCallControls();
      }
    } catch (e) {
      const why = { unknown_agent: `${target} is not signed in.`, target_unavailable: e.reason ? `${capitalize(e.reason)}: try again when they're available.` : null, unknown_queue: `There is no queue “${target}”.`, transfer_to_self: "You can't transfer a call to yourself." }[e.code];
      formError("transfer-error", why ?? e.reason);
    } finally {
      $("transfer-go").disabled = false;
    }
  }

  function renderConsultBar(call) {
    const bar = $("consult-bar");
    if (call?.consultFrom) {
      bar.hidden = false;
      bar.dataset.state = "colleague";
      $("consult-title").textContent = `${call.consultFrom.from_name ?? call.consultFrom.from} is consulting you`;
      $("consult-text").textContent = "The caller is on hold and can't hear you. They may hand the call over to you.";
      $("consult-complete").hidden = true;
      $("consult-cancel").hidden = true;
      return;
    }
    if (!call?.consult) {
      bar.hidden = true;
      return;
    }
    bar.hidden = false;
    bar.dataset.state = call.consult.state;
    $("consult-complete").hidden = false;
    $("consult-cancel").hidden = false;
    const joined = call.consult.state === "joined";
    $("consult-title").textContent = joined ? `Talking with ${call.consult.colleague}` : `Calling ${call.consult.colleague}…`;
    $("consult-text").textContent = joined ? "The caller is on hold. Hand the call over, or cancel to go back to the caller." : "The caller is on hold while it rings.";
    $("consult-complete").disabled = !joined;
  }

  function onConsultState(message) {
    const call = state.call;
    if (!call || call.id !== message.call_id) return;
    if (call.consultFrom) {
      // This console was called in for the consult.
      if (message.state === "completed") {
        call.consultFrom = null;
        renderConsultBar(call);
        views.stage.updateCallControls();
        toast(`${message.colleague} handed the caller to you.`);
      } else {
        views.wrapup.endCallView({ call_id: call.id, reason: "consult_ended", by: "agent" });
        toast(message.state === "cancelled" ? `${message.colleague || "Your colleague"} went back to the caller.` : "The consult ended.");
      }
      return;
    }
    if (message.state === "joined") {
      call.consult = { colleague: message.colleague, state: "joined" };
    } else {
      const text = { declined: `${message.colleague} declined the consult.`, ring_timeout: `${message.colleague} didn't answer.`, agent_disconnected: `${message.colleague} lost their connection: you're back with the caller.`, cancelled: "You're back with the caller." }[message.state];
      call.consult = null;
      call.held = false;
      if (text) toast(text, { bad: message.state !== "cancelled" });
    }
    renderConsultBar(call);
    views.stage.updateCallControls();
  }

  async function consultStep(type) {
    const call = state.call;
    if (!call?.consult) return;
    try {
      await state.signal.request({ type, call_id: call.id });
      if (type === "transfer.cancel") {
        call.consult = null;
        call.held = false;
        renderConsultBar(call);
        views.stage.updateCallControls();
      }
    } catch (e) {
      toast(e.reason, { bad: true });
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("transfer-button").addEventListener("click", openTransfer);
    $("transfer-form").addEventListener("submit", submitTransfer);
    $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
    $("transfer-dialog").addEventListener("close", () => clearInterval(state.directoryTimer));
    $("transfer-directory").addEventListener("click", pickTransferTarget);
    $("transfer-queue-list").addEventListener("click", pickTransferTarget);
    $("transfer-modes").addEventListener("click", (e) => e.target.closest("button") && setTransferMode(e.target.closest("button").dataset.mode));
    $("transfer-agent").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="agent"]').checked = true));
    $("transfer-queue").addEventListener("focus", () => (document.querySelector('#transfer-form input[value="queue"]').checked = true));
    $("consult-complete").addEventListener("click", () => consultStep("transfer.complete"));
    $("consult-cancel").addEventListener("click", () => consultStep("transfer.cancel"));
  }

  return { setTransferMode, openTransfer, loadDirectory, pickTransferTarget, submitTransfer, renderConsultBar, onConsultState, consultStep, mount };
}
