/**
 * The page's frame: which view of the call area shows, the signed-in agent, the Calls/Wallboard tabs and the
 * keyboard shortcuts.
 */

import { icon } from "../../caller/icons.js";
import { $ } from "../lib/dom.js";
import { initials } from "../lib/format.js";

const SUPERVISOR_ROLES = new Set(["supervisor", "admin"]);
const VIEWS = ["idle", "ringing", "call", "ended", "stale", "missed"];

export function createShell(app) {
  const { state, views } = app;

  function renderMe() {
    const name = state.account?.display_name || state.account?.username || "";
    $("me-name").textContent = name;
    $("me-avatar").textContent = initials(name);
    $("nav-tabs").hidden = !isSupervisor();
    if (!isSupervisor() && state.tab !== "calls") setTab("calls");
  }

  // ------------------------------------------------------------------------------------------------ views
  function show(view) {
    if ((view === "ringing" || view === "call") && state.tab !== "calls") setTab("calls");
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
    const busy = view === "ringing" || view === "call";
    $("history-section").hidden = busy;
    $("inbox-section").hidden = busy || !(state.inbox.callbacks.length || state.inbox.messages.length);
    if (view !== "missed") state.missed = null;
    document.body.dataset.view = view;
  }

  /** After a ring that did not become a call: back to the wrap-up being written (unsaved input), else idle. */
  function backToRest() {
    if (state.endedCallId && state.endedCard && views.wrapup.readDraft(state.endedCallId)) {
      views.card.renderCard(state.endedCard);
      show("ended");
      views.wrapup.renderWrapUpTimer();
    } else {
      state.endedCallId = null;
      state.endedCard = null;
      show("idle");
      views.card.renderCard(null);
    }
    views.inbox.loadInbox();
  }

  // ------------------------------------------------------------------------------------------------ tabs
  function isSupervisor() {
    return SUPERVISOR_ROLES.has(state.account?.role);
  }

  async function setTab(tab) {
    if (tab === "wallboard" && !isSupervisor()) tab = "calls";
    state.tab = tab;
    for (const b of $("nav-tabs").querySelectorAll("button")) {
      if (b.dataset.tab === tab) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    document.querySelector(".workspace").hidden = tab !== "calls";
    $("wallboard").hidden = tab !== "wallboard";
    $("shortcuts").hidden = tab !== "calls";
    document.body.dataset.tab = tab;
    if (tab === "wallboard") {
      views.recording.loadRecordings();
      await views.wallboard.subscribeWallboard();
    }
  }

  // ------------------------------------------------------------------------------------------------ keyboard
  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target?.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.target?.isContentEditable) return;
    if ($("app").hidden) return;
    const key = event.key.toLowerCase();
    const ringing = Boolean(state.offer) && !$("view-ringing").hidden;
    const inCall = Boolean(state.call);
    let handled = true;
    if (key === "a" && ringing) views.call.accept();
    else if (key === "d" && ringing) views.ringing.decline();
    else if (key === "m" && inCall) views.call.setMuted(!state.call.muted);
    else if (key === "c" && inCall) views.call.toggleCamera();
    else if (key === "t" && inCall) views.transfer.openTransfer();
    else if (key === "r" && inCall) views.recording.toggle();
    else if (key === "h" && (inCall || state.staleCallId)) views.call.hangup();
    else if (key === "?") $("help-dialog").showModal();
    else handled = false;
    if (handled) event.preventDefault();
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("nav-tabs").addEventListener("click", (e) => e.target.closest("button") && setTab(e.target.closest("button").dataset.tab));
    $("help-button").innerHTML = icon("keyboard", { size: 18 });
    $("help-button").addEventListener("click", () => $("help-dialog").showModal());
    document.addEventListener("keydown", onKey);
    for (const el of document.querySelectorAll("[data-icon]")) el.innerHTML = icon(el.dataset.icon, { size: 18 });
  }

  return { renderMe, show, backToRest, isSupervisor, setTab, onKey, mount };
}
