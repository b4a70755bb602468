/**
 * Live captions of the call (its queue transcribes calls): what the caller and the agent say, as the gateway
 * recognises it, card numbers already redacted by the gateway. A partial line is replaced by the next caption of the
 * same speaker and utterance; the final one settles it. Everything said is shown as text, never HTML.
 */

import { $ } from "../lib/dom.js";

const MAX_LINES = 60;

export function createCaptions(app) {
  const { state } = app;
  let callId = null;
  const lines = new Map(); // `${role}/${name}/${utterance}` -> <li>

  function clear() {
    lines.clear();
    $("captions-log").replaceChildren();
    $("captions").hidden = true;
    callId = null;
  }

  function onNotice(message) {
    if (state.call?.id !== message.call_id && state.supervise?.callId !== message.call_id) return;
    if (callId !== message.call_id) clear();
    callId = message.call_id;
    $("captions").hidden = !message.active;
  }

  function onCaption(message) {
    const mine = state.call?.id === message.call_id || state.supervise?.callId === message.call_id;
    if (!mine) return;
    if (callId !== message.call_id) {
      clear();
      callId = message.call_id;
    }
    $("captions").hidden = false;
    const { role, name } = message.speaker;
    const key = `${role}/${name}/${message.utterance}`;
    let li = lines.get(key);
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
      lines.set(key, li);
      const log = $("captions-log");
      log.append(li);
      while (log.childElementCount > MAX_LINES) {
        const first = log.firstElementChild;
        for (const [k, v] of lines) if (v === first) lines.delete(k);
        first.remove();
      }
    }
    li.querySelector(".caption-text").textContent = message.text;
    li.classList.toggle("partial", !message.final);
    li.dataset.final = String(message.final);
    li.scrollIntoView?.({ block: "nearest" });
  }

  /** The captions shown now, for the browser tests: [{role, name, text, final}]. */
  function shown() {
    return [...lines.entries()].map(([key, li]) => {
      const [role, name] = key.split("/");
      return { role, name, text: li.querySelector(".caption-text").textContent, final: li.dataset.final === "true" };
    });
  }

  /** Nothing to wire: the panel is filled by the socket's transcript.notice and caption messages (views/messages.js). */
  function mount() {
    clear();
  }

  return { onNotice, onCaption, clear, shown, mount };
}
