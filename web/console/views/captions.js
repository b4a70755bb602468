/**
 * Live captions of the call (its queue transcribes calls): what the caller and the agent say, as the gateway
 * recognises it, card numbers already redacted by the gateway. A partial line is replaced by the next caption of the
 * same speaker and utterance; the final one settles it. Everything said is shown as text, never HTML.
 *
 * Two panels: the agent's, in the call view (#captions), and a supervisor's, in the supervise panel of the wallboard
 * (#sv-captions), for the call it monitors, whispers into or barges into. The gateway sends captions to the call's
 * agent and to its supervisors (and a supervisor who joins a transcribed call is sent transcript.notice first).
 */

import { $ } from "../lib/dom.js";

const MAX_LINES = 60;

/** One captions panel: its section, its list, the call it shows and its lines. */
function panel(sectionId, logId) {
  return { sectionId, logId, callId: null, lines: new Map() }; // lines: `${role}/${name}/${utterance}` -> <li>
}

export function createCaptions(app) {
  const { state } = app;
  const call = panel("captions", "captions-log");
  const supervise = panel("sv-captions", "sv-captions-log");

  /** The panel a message about `callId` goes to: the supervised call's, or this agent's own call's. */
  function panelFor(callId) {
    if (state.supervise?.callId === callId || state.superviseStarting === callId) return supervise;
    if (state.call?.id === callId) return call;
    return null;
  }

  function reset(p) {
    p.lines.clear();
    $(p.logId).replaceChildren();
    $(p.sectionId).hidden = true;
    p.callId = null;
  }

  /** The agent's panel (the call view's) is emptied at the end of its call; the supervisor's when it stops. */
  function clear() {
    reset(call);
  }

  function clearSupervised() {
    reset(supervise);
  }

  function onNotice(message) {
    const p = panelFor(message.call_id);
    if (!p) return;
    if (p.callId !== message.call_id) reset(p);
    p.callId = message.call_id;
    $(p.sectionId).hidden = !message.active;
  }

  function onCaption(message) {
    const p = panelFor(message.call_id);
    if (!p) return;
    if (p.callId !== message.call_id) {
      reset(p);
      p.callId = message.call_id;
    }
    $(p.sectionId).hidden = false;
    const { role, name } = message.speaker;
    const key = `${role}/${name}/${message.utterance}`;
    let li = p.lines.get(key);
    if (!li) {
      li = document.createElement("li");
      li.dataset.testid = "caption";
      const who = document.createElement("b");
      who.className = "caption-who";
      who.textContent = role === "caller" ? name : `${name} (${role})`;
      const text = document.createElement("span");
      text.className = "caption-text";
      li.append(who, text);
      li.className = `caption ${role}`;
      p.lines.set(key, li);
      const log = $(p.logId);
      log.append(li);
      while (log.childElementCount > MAX_LINES) {
        const first = log.firstElementChild;
        for (const [k, v] of p.lines) if (v === first) p.lines.delete(k);
        first.remove();
      }
    }
    li.querySelector(".caption-text").textContent = message.text;
    li.classList.toggle("partial", !message.final);
    li.dataset.final = String(message.final);
    li.scrollIntoView?.({ block: "nearest" });
  }

  /** The captions shown now, for the browser tests: [{role, name, text, final}] of the agent's panel, or of the
   * supervisor's with `which` "supervise". */
  function shown(which = "call") {
    const p = which === "supervise" ? supervise : call;
    return [...p.lines.entries()].map(([key, li]) => {
      const [role, name] = key.split("/");
      return { role, name, text: li.querySelector(".caption-text").textContent, final: li.dataset.final === "true" };
    });
  }

  /** Nothing to wire: the panels are filled by the socket's transcript.notice and caption messages (views/messages.js). */
  function mount() {
    reset(call);
    reset(supervise);
  }

  return { onNotice, onCaption, clear, clearSupervised, shown, mount };
}
