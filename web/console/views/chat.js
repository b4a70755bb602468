/**
 * The in-call chat: messages and files with the caller, and what the gateway read in a caller's picture.
 * Everything from the caller is shown as text, never HTML.
 */

import { icon } from "../../caller/icons.js";
import { $, toast, formError } from "../lib/dom.js";
import { escapeHtml } from "../lib/format.js";
import { uploadFile } from "../lib/api.js";

export function createChat(app) {
  const { state } = app;

  /** What the gateway read in a caller's picture: the codes in it (copyable) and where the photo was taken. All of it
   * comes from the caller: text only, never HTML. */
  function scanDetails(scan) {
    const box = document.createElement("div");
    box.className = "chat-scan";
    box.dataset.testid = "chat-scan";
    for (const code of scan.codes ?? []) {
      const row = document.createElement("div");
      const kind = document.createElement("small");
      kind.textContent = code.format;
      const value = document.createElement("code");
      value.textContent = code.text;
      value.title = "Click to copy";
      value.tabIndex = 0;
      value.addEventListener("click", () => navigator.clipboard?.writeText(code.text).then(() => toast("Copied")).catch(() => {}));
      row.append(kind, " ", value);
      box.append(row);
    }
    if (scan.location) {
      const row = document.createElement("div");
      const where = document.createElement("a");
      const { lat, lon } = scan.location;
      where.href = `https://www.openstreetmap.org/?mlat=${encodeURIComponent(lat)}&mlon=${encodeURIComponent(lon)}#map=17/${encodeURIComponent(lat)}/${encodeURIComponent(lon)}`;
      where.target = "_blank";
      where.rel = "noopener noreferrer";
      where.textContent = `Photo taken at ${Number(lat).toFixed(5)}, ${Number(lon).toFixed(5)}`;
      row.append(where);
      box.append(row);
    }
    if (!box.childElementCount) {
      box.textContent = "No code found in this picture";
      box.classList.add("none");
    }
    return box;
  }

  function onChatMessage(message) {
    const call = state.call;
    if (!call || call.id !== message.call_id) return;
    const m = message.message;
    const log = $("chat-log");
    log.querySelector(".empty")?.remove();
    const mine = m.from?.username && m.from.username === state.account?.username;
    const li = document.createElement("li");
    li.className = `chat-msg ${mine ? "mine" : m.from?.role === "caller" ? "caller" : "staff"}`;
    const at = new Date((m.at ?? Date.now() / 1000) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.innerHTML = `<div class="chat-meta"><b></b><time>${at}</time></div><div class="chat-bubble"></div>`;
    li.querySelector("b").textContent = mine ? "You" : m.from?.name ?? "Caller";
    const bubble = li.querySelector(".chat-bubble");
    const a = m.attachment;
    if (a) {
      const link = document.createElement("a");
      link.href = a.url;
      link.download = a.name;
      link.className = a.mime?.startsWith("image/") ? "chat-image" : "chat-file";
      link.dataset.testid = "chat-attachment";
      if (a.mime?.startsWith("image/")) {
        link.innerHTML = `<img alt=""><span class="dl">${icon("download", { size: 14 })}${escapeHtml(a.name)} · ${Math.max(1, Math.round(a.size / 1024))} KB</span>`;
        link.querySelector("img").src = a.url;
        link.querySelector("img").alt = a.name;
      } else {
        link.innerHTML = `${icon("file-text", { size: 18 })}<span>${escapeHtml(a.name)}<small>${Math.max(1, Math.round(a.size / 1024))} KB · download</small></span>`;
      }
      bubble.append(link);
      if (a.scan) bubble.append(scanDetails(a.scan));
    }
    if (m.text) {
      const p = document.createElement("p");
      p.textContent = m.text;
      bubble.append(p);
    }
    log.append(li);
    log.scrollTop = log.scrollHeight;
    if (!mine && $("pane-chat").hidden) {
      call.unread += 1;
      const badge = $("chat-badge");
      badge.hidden = false;
      badge.textContent = String(call.unread);
      if (m.from?.role === "caller") toast(`${m.from.name ?? "The caller"}: ${m.text ?? a?.name ?? "sent a file"}`);
    }
  }

  async function sendChat({ text = "", file = null } = {}) {
    const call = state.call;
    if (!call) return;
    formError("chat-error", null);
    const line = text.trim();
    if (!line && !file) return;
    const form = $("chat-form");
    form.classList.add("busy");
    try {
      let attachment = null;
      if (file) attachment = await uploadFile(call.id, file, file.name || "file");
      const body = { type: "chat.send", call_id: call.id };
      if (line) body.text = line;
      if (attachment) body.attachment_id = attachment.id;
      await state.signal.request(body);
      if (line) $("chat-input").value = "";
    } catch (e) {
      formError("chat-error", e.reason);
    } finally {
      form.classList.remove("busy");
    }
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sendChat({ text: $("chat-input").value });
    });
    $("chat-attach").innerHTML = icon("paperclip", { size: 18 });
    $("chat-attach").addEventListener("click", () => $("chat-file").click());
    $("chat-file").addEventListener("change", () => {
      const file = $("chat-file").files?.[0];
      $("chat-file").value = "";
      if (file) sendChat({ file });
    });
  }

  return { scanDetails, onChatMessage, sendChat, mount };
}
