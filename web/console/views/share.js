/**
 * Pushed content: links, text cards and images put on the caller's screen, with what the caller did with them.
 */

import { icon } from "../../caller/icons.js";
import { CallinError } from "../../caller/callin-client.js";
import { $, toast, formError } from "../lib/dom.js";
import { escapeHtml } from "../lib/format.js";
import { uploadFile } from "../lib/api.js";

const CONTENT_STATUS = { sent: "Sent", seen: "Seen", opened: "Opened", dismissed: "Dismissed" };

export function createShare(app) {
  const { state } = app;

  let shareKind = "link";

  function setShareKind(kind) {
    shareKind = kind;
    for (const b of $("share-kinds").querySelectorAll("button")) b.setAttribute("aria-checked", String(b.dataset.kind === kind));
    for (const f of $("share-form").querySelectorAll("[data-for]")) f.hidden = f.dataset.for !== kind;
    formError("share-error", null);
  }

  async function pushContent(content) {
    const call = state.call;
    if (!call) return null;
    const sent = await state.signal.request({ type: "content.push", call_id: call.id, ...content });
    call.pushed.set(sent.content.content_id, sent.content);
    renderPushed(call);
    return sent.content;
  }

  async function submitShare(event) {
    event.preventDefault();
    const call = state.call;
    if (!call) return;
    formError("share-error", null);
    const title = $("share-title").value.trim();
    const content = { kind: shareKind };
    if (title) content.title = title;
    const button = $("share-send");
    button.disabled = true;
    try {
      if (shareKind === "link") {
        const url = $("share-url").value.trim();
        if (!/^https?:\/\/\S+$/.test(url)) throw new CallinError("invalid", "Enter a web address starting with https://");
        content.url = url;
      } else if (shareKind === "text") {
        const text = $("share-text").value.trim();
        if (!text) throw new CallinError("invalid", "Write the text to show.");
        content.text = text;
      } else {
        const file = $("share-file").files?.[0];
        if (!file) throw new CallinError("invalid", "Choose an image.");
        const attachment = await uploadFile(call.id, file, file.name || "image");
        if (!attachment.mime?.startsWith("image/")) throw new CallinError("invalid", "That file is not an image.");
        content.attachment_id = attachment.id;
      }
      await pushContent(content);
      $("share-title").value = "";
      $("share-url").value = "";
      $("share-text").value = "";
      $("share-file").value = "";
    } catch (e) {
      formError("share-error", e.reason);
    } finally {
      button.disabled = false;
    }
  }

  function renderPushed(call) {
    const list = $("pushed-list");
    if (!call.pushed.size) {
      list.innerHTML = '<li class="empty">Nothing shared yet.</li>';
      return;
    }
    list.innerHTML = [...call.pushed.values()]
      .reverse()
      .map((c) => {
        const kindIcon = { link: "link", image: "image", text: "file-text" }[c.kind] ?? "file-text";
        const detail = c.kind === "link" ? c.url : c.kind === "text" ? c.text : c.attachment?.name ?? c.url ?? "";
        const thumb = c.kind === "image" && c.attachment ? `<img class="pushed-thumb" src="${escapeHtml(c.attachment.url)}" alt="">` : `<span class="pushed-ico">${icon(kindIcon, { size: 16 })}</span>`;
        return `<li class="pushed-item" data-content-id="${escapeHtml(c.content_id)}">${thumb}
          <span class="pushed-main"><b>${escapeHtml(c.title || { link: "Link", text: "Text card", image: "Image" }[c.kind])}</b><small>${escapeHtml(detail)}</small></span>
          <span class="pushed-status" data-status="${escapeHtml(c.status)}" data-testid="content-status">${icon(c.status === "opened" ? "eye" : c.status === "dismissed" ? "x" : "check", { size: 13 })}${CONTENT_STATUS[c.status] ?? c.status}</span></li>`;
      })
      .join("");
  }

  function onContentStatus(message) {
    const call = state.call;
    if (!call || call.id !== message.call_id) return;
    const item = call.pushed.get(message.content_id);
    if (!item) return;
    item.status = message.status;
    renderPushed(call);
    if (message.status === "opened") toast(`The caller opened “${item.title || item.url || "what you shared"}”.`);
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("share-kinds").addEventListener("click", (e) => e.target.closest("button") && setShareKind(e.target.closest("button").dataset.kind));
    $("share-form").addEventListener("submit", submitShare);
  }

  return { setShareKind, pushContent, submitShare, renderPushed, onContentStatus, mount };
}
