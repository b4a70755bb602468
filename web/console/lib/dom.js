/** The console's DOM helpers: find an element by id, say something (a toast, the connection banner, a form's error).
 * Text is set as text, never parsed as HTML. */

import { icon } from "../../caller/icons.js";

export const $ = (id) => document.getElementById(id);

export function toast(text, { bad = false, ms = 5000 } = {}) {
  const el = document.createElement("div");
  el.className = `toast${bad ? " bad" : ""}`;
  el.setAttribute("role", bad ? "alert" : "status");
  el.innerHTML = `${icon(bad ? "alert" : "bell", { size: 16 })}<span></span>`;
  el.querySelector("span").textContent = text;
  $("toasts").append(el);
  setTimeout(() => el.remove(), ms);
}

export function banner(text, { bad = false, action = null } = {}) {
  const el = $("conn-banner");
  if (!text) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.className = `conn-banner${bad ? " bad" : ""}`;
  el.textContent = text;
  if (action) {
    const b = document.createElement("button");
    b.className = "btn";
    b.textContent = action.label;
    b.addEventListener("click", action.run);
    el.append(b);
  }
}

export function formError(id, text) {
  const el = $(id);
  el.hidden = !text;
  el.textContent = text ?? "";
}
