/**
 * The supervisor's wallboard: queues, calls in progress, callers waiting and agents, live from the gateway.
 */

import { icon } from "../../caller/icons.js";
import { $, toast } from "../lib/dom.js";
import { escapeHtml, initials, duration, capitalize } from "../lib/format.js";
import { STATUS_TEXT } from "../lib/text.js";

const AGENT_STATUS_ORDER = ["busy", "ringing", "wrap_up", "available", "away", "offline"];

export function createWallboard(app) {
  const { state, views } = app;

  async function subscribeWallboard() {
    if (!state.signal?.open) return;
    try {
      renderWallboard(await state.signal.request({ type: "wallboard.subscribe" }));
    } catch (e) {
      toast(e.reason, { bad: true });
    }
  }

  function since(unix, offset) {
    return unix ? duration(Date.now() / 1000 + offset - unix) : "–";
  }

  function renderWallboard(board) {
    const offset = board.at - Date.now() / 1000; // the gateway's clock minus ours
    state.wallboard = { ...board, offset };
    const tiles = $("wb-tiles");
    const available = board.agents.filter((a) => a.status === "available").length;
    const staffed = board.agents.filter((a) => a.status !== "offline").length;
    const queues = board.queues.length ? board.queues : [{ name: "default", waiting: 0, oldest_since: null }];
    tiles.innerHTML =
      queues
        .map(
          (q) => `<div class="tile${q.waiting ? " busy" : ""}" data-queue="${escapeHtml(q.name)}"><span class="t-label">${icon("users", { size: 14 })}Queue · ${escapeHtml(q.name)}</span>
        <b class="t-value">${q.waiting}</b><span class="t-sub">waiting${typeof q.waiting_here === "number" ? ` on all nodes · ${q.waiting_here} here` : ""}${q.oldest_since ? ` · longest <span class="tick" data-since="${q.oldest_since}">${since(q.oldest_since, offset)}</span>` : ""}</span></div>`,
        )
        .join("") +
      `<div class="tile"><span class="t-label">${icon("phone", { size: 14 })}Calls in progress</span><b class="t-value">${board.calls.length}</b><span class="t-sub">${board.calls.filter((c) => c.held).length} on hold · ${board.calls.filter((c) => c.consult).length} in consult</span></div>
       <div class="tile"><span class="t-label">${icon("headphones", { size: 14 })}Agents</span><b class="t-value">${available}<small> / ${staffed}</small></b><span class="t-sub">available / signed in</span></div>`;

    $("wb-calls-count").textContent = String(board.calls.length);
    $("wb-calls").innerHTML = board.calls.length
      ? `<table class="wb-table"><thead><tr><th>Caller</th><th>Agent</th><th>Queue</th><th>Duration</th><th>State</th><th></th></tr></thead><tbody>${board.calls
          .map((c) => {
            const flags = [];
            if (c.held) flags.push('<span class="flag hold">On hold</span>');
            if (c.consult) flags.push(`<span class="flag consult">Consult · ${escapeHtml(c.consult)}</span>`);
            for (const [who, mode] of Object.entries(c.supervisors ?? {})) flags.push(`<span class="flag sv">${escapeHtml(who)} · ${escapeHtml(mode)}</span>`);
            if (!flags.length) flags.push('<span class="flag talk">Talking</span>');
            const mine = state.supervise?.callId === c.call_id;
            const actions = ["monitor", "whisper", "barge"]
              .map((m) => `<button class="btn xs${mine && state.supervise.mode === m ? " on" : ""}" data-supervise="${m}" data-call="${escapeHtml(c.call_id)}">${capitalize(m)}</button>`)
              .join("");
            return `<tr data-call-id="${escapeHtml(c.call_id)}"${mine ? ' class="mine"' : ""}><td><b>${escapeHtml(c.caller)}</b><small>${escapeHtml(c.call_type)}</small></td><td>${escapeHtml(c.agent ?? "–")}</td><td>${escapeHtml(c.queue)}</td>
              <td class="num"><span class="tick" data-since="${c.since ?? ""}">${since(c.since, offset)}</span></td><td>${flags.join(" ")}</td><td class="sv-buttons">${actions}${mine ? '<button class="btn xs danger" data-supervise-stop>Stop</button>' : ""}</td></tr>`;
          })
          .join("")}</tbody></table>`
      : '<p class="wb-empty">No calls in progress.</p>';

    $("wb-waiting-count").textContent = String(board.waiting.length);
    $("wb-waiting").innerHTML = board.waiting.length
      ? `<table class="wb-table"><thead><tr><th>Caller</th><th>Queue</th><th>Priority</th><th>Waiting</th><th>State</th></tr></thead><tbody>${board.waiting
          .map((w) => {
            const st = w.callback ? '<span class="flag cb">Callback</span>' : w.ringing_at ? `<span class="flag ring">Ringing ${escapeHtml(w.ringing_at)}</span>` : '<span class="flag wait">Waiting</span>';
            return `<tr><td><b>${escapeHtml(w.caller)}</b><small>${escapeHtml(w.call_type)}</small></td><td>${escapeHtml(w.queue)}</td><td class="num">${w.priority ?? 0}</td><td class="num"><span class="tick" data-since="${w.since}">${since(w.since, offset)}</span></td><td>${st}</td></tr>`;
          })
          .join("")}</tbody></table>`
      : '<p class="wb-empty">Nobody is waiting.</p>';

    const agents = [...board.agents].sort((a, b) => AGENT_STATUS_ORDER.indexOf(a.status) - AGENT_STATUS_ORDER.indexOf(b.status) || a.username.localeCompare(b.username));
    $("wb-agents-count").textContent = String(agents.length);
    $("wb-agents").innerHTML = `<ul class="wb-agent-list">${agents
      .map(
        (a) => `<li><span class="a-avatar">${escapeHtml(initials(a.display_name || a.username))}</span><span class="a-main"><b>${escapeHtml(a.display_name || a.username)}</b><small>${escapeHtml(a.username)}</small></span>
        <span class="status-tag" data-status="${escapeHtml(a.status)}">${escapeHtml(STATUS_TEXT[a.status] ?? a.status)}</span><span class="a-since">${a.since && a.status === "available" ? `idle <span class="tick" data-since="${a.since}">${since(a.since, offset)}</span>` : ""}</span></li>`,
      )
      .join("")}</ul>`;
    views.supervise.renderSupervisePanel();
  }

  function tickWallboard() {
    const board = state.wallboard;
    if (!board || $("wallboard").hidden) return;
    for (const el of document.querySelectorAll("#wallboard .tick")) {
      const at = Number(el.dataset.since);
      if (at) el.textContent = since(at, board.offset);
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    setInterval(tickWallboard, 1000);
  }

  return { subscribeWallboard, since, renderWallboard, tickWallboard, mount };
}
