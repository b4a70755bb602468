/**
 * The caller's card: verified identity, device-reported location, what they did in the app, CRM fields, and
 * their earlier contacts (GET .../contact-history).
 */

import { icon } from "../../caller/icons.js";
import { $ } from "../lib/dom.js";
import { escapeHtml, initials, duration, ago, humanize } from "../lib/format.js";
import { CALL_TYPE } from "../lib/text.js";
import { api } from "../lib/api.js";

const OUTCOME_TEXT = {
  answered: "Answered", abandoned: "Hung up while waiting", missed: "Missed", declined: "Declined", failed: "Failed",
  after_hours: "After hours", message_left: "Left a message", callback_expired: "Callback not rejoined",
  replaced: "Called again", interrupted: "Interrupted",
};

/** The card's location section: device-reported (never verified), with its accuracy; numbers only, no caller text. */
function locationHtml(loc) {
  const body = loc
    ? `<div class="loc" data-testid="location">
         <span class="loc-pin">${icon("map-pin", { size: 20 })}</span>
         <div>
           <div class="loc-coords">${Number(loc.lat).toFixed(5)}, ${Number(loc.lon).toFixed(5)}</div>
           <div class="loc-meta">±${Math.round(Number(loc.accuracy_m))} m accuracy · measured <span class="loc-age" data-ts="${Number(loc.timestamp)}">${ago(loc.timestamp)}</span></div>
           <a href="https://www.openstreetmap.org/?mlat=${encodeURIComponent(loc.lat)}&mlon=${encodeURIComponent(loc.lon)}#map=16/${encodeURIComponent(loc.lat)}/${encodeURIComponent(loc.lon)}" target="_blank" rel="noopener noreferrer">Open in OpenStreetMap ${icon("external-link", { size: 13 })}</a>
         </div>
       </div>`
    : `<div class="loc-none" data-testid="location"><span class="loc-pin">${icon("map-pin", { size: 20 })}</span>Location not shared</div>`;
  return `<h3>${icon("map-pin", { size: 14 })}Location<span class="tag">${loc ? "device-reported" : ""}</span></h3>${body}`;
}

export function createCard(app) {
  const { state } = app;

  function renderCard(card) {
    const host = $("card");
    if (!card) {
      host.innerHTML = `<div class="card"><div class="card-empty">${icon("user", { size: 28 })}<p>The caller's details appear here when a call rings.</p></div></div>`;
      return;
    }
    const id = card.identity ?? {};
    const type = CALL_TYPE[card.call_type] ?? CALL_TYPE.voice;
    const signer = id.issuer || "integrator";
    const verified = id.verified
      ? `<span class="verified" title="These fields come from a token signed by ${escapeHtml(signer)}; the caller's device cannot change them.">${icon("shield", { size: 14 })}Verified by ${escapeHtml(signer)} signature</span>`
      : `<span class="unverified">${icon("alert", { size: 14 })}Not verified</span>`;
    const vrow = (label, value) =>
      value ? `<dt>${escapeHtml(label)}</dt><dd class="v" title="verified"><span>${escapeHtml(value)}</span>${icon("check", { size: 13, label: "verified" })}</dd>` : "";
    const claims = Object.entries(id.claims ?? {})
      .map(([k, v]) => vrow(humanize(k), String(v)))
      .join("");

    const ctx = card.context ?? {};
    const steps = (ctx.steps ?? []).map((s) => `<li>${escapeHtml(s)}</li>`).join("");
    const crm = Object.entries(ctx.crm ?? {})
      .map(([k, v]) => `<dt>${escapeHtml(humanize(k))}</dt><dd>${escapeHtml(v === null ? "–" : String(v))}</dd>`)
      .join("");
    const waited = card.created_at ? Math.max(0, Date.now() / 1000 - card.created_at) : null;

    host.innerHTML = `
      <article class="card" aria-label="Caller card">
        <header class="card-head">
          <span class="card-avatar">${escapeHtml(initials(id.name || id.subject))}</span>
          <div><h2 data-testid="caller-name">${escapeHtml(id.name || id.subject || "Unknown caller")}</h2>${verified}</div>
        </header>
        <section>
          <h3>${icon("shield", { size: 14 })}Identity<span class="tag">from the signed token</span></h3>
          <dl class="kv">${vrow("Customer ID", id.subject)}${vrow("Email", id.email)}${vrow("Phone", id.phone)}${claims}</dl>
        </section>
        <section id="card-location" data-call-id="${escapeHtml(card.call_id ?? "")}">${locationHtml(card.location)}</section>
        <section>
          <h3>${icon("smartphone", { size: 14 })}In the app</h3>
          ${ctx.screen ? `<span class="screen-name">${icon("smartphone", { size: 14 })}${escapeHtml(ctx.screen)}</span>` : '<span class="muted">No screen reported</span>'}
          ${steps ? `<ol class="steps" aria-label="Recent steps">${steps}</ol>` : ""}
        </section>
        ${crm ? `<section><h3>${icon("database", { size: 14 })}CRM</h3><dl class="kv">${crm}</dl></section>` : ""}
        <section>
          <h3>${icon(type.icon, { size: 14 })}Call</h3>
          <dl class="kv"><dt>Type</dt><dd>${type.label}</dd><dt>Queue</dt><dd>${escapeHtml(card.queue ?? "default")}${card.priority ? ` · priority ${escapeHtml(card.priority)}` : ""}</dd>${waited != null ? `<dt>Waited</dt><dd>${duration(waited)}</dd>` : ""}</dl>
        </section>
        <section id="card-contacts" data-call-id="${escapeHtml(card.call_id ?? "")}" aria-label="Earlier contacts">
          <h3>${icon("clock", { size: 14 })}Earlier contacts<span class="tag">this customer ID</span></h3>
          <p class="muted small" id="contacts-body">Looking up earlier calls…</p>
        </section>
      </article>`;
    renderContacts();
  }

  /** The caller's earlier calls (date, outcome, who, wrap-up notes), fetched for the call ringing or in progress. */
  async function loadContacts(callId) {
    try {
      const body = await api(`/api/v1/calls/${encodeURIComponent(callId)}/contact-history`);
      state.contacts = { callId, calls: body.calls };
    } catch (e) {
      state.contacts = { callId, calls: null, error: e.reason };
    }
    renderContacts();
  }

  function renderContacts() {
    const section = $("card-contacts");
    if (!section) return;
    const body = $("contacts-body");
    const found = state.contacts?.callId === section.dataset.callId ? state.contacts : null;
    if (!found) return;
    if (!found.calls) {
      body.textContent = `Earlier calls could not be loaded: ${found.error ?? "try again later"}.`;
      return;
    }
    if (!found.calls.length) {
      body.textContent = "No earlier calls from this customer.";
      return;
    }
    const list = document.createElement("ol");
    list.className = "contacts";
    list.dataset.testid = "contacts";
    for (const c of found.calls) {
      const li = document.createElement("li");
      const when = new Date(c.created_at * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      const who = c.agent ? ` · ${c.agent}` : "";
      const talk = c.talk_s >= 1 ? ` · talked ${duration(c.talk_s)}` : "";
      li.innerHTML = `<div><b></b></div><div class="c-meta"></div>`;
      li.querySelector("b").textContent = `${OUTCOME_TEXT[c.outcome] ?? c.outcome ?? "In progress"}${c.disposition ? ` · ${humanize(c.disposition)}` : ""}`;
      li.querySelector(".c-meta").textContent = `${when} · ${(CALL_TYPE[c.call_type] ?? CALL_TYPE.voice).label}${who}${talk}`;
      const text = c.notes || (c.message ? `Message: ${c.message}` : "");
      if (text) {
        const notes = document.createElement("div");
        notes.className = "c-notes";
        notes.textContent = text;
        li.append(notes);
      }
      list.append(li);
    }
    body.replaceWith(list);
    list.id = "contacts-body";
  }

  /** The caller's device reported its location after the call started (call.location): the card shown for that
   * call says so, in place (the rest of the card, and where the agent scrolled to, stay as they are). */
  function showLocation(callId, location) {
    const section = $("card-location");
    if (!section || section.dataset.callId !== callId) return;
    section.innerHTML = locationHtml(location);
    section.querySelector(".loc")?.classList.add("loc-new");
  }

  function refreshAges() {
    for (const el of document.querySelectorAll(".loc-age")) el.textContent = ago(Number(el.dataset.ts));
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    setInterval(refreshAges, 5000);
    renderCard(null);
  }

  return { renderCard, showLocation, loadContacts, renderContacts, refreshAges, mount };
}
