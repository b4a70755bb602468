/**
 * Telling the agent a call rings: the ring sound's switch and its blocked notice, and desktop notifications.
 */

import { SOUND_KEY } from "../lib/ringer.js";
import { icon } from "../../caller/icons.js";
import { $ } from "../lib/dom.js";
import { CALL_TYPE } from "../lib/text.js";

export function createAlerts(app) {
  const { state, views, ringer } = app;

  function renderSoundBlocked() {
    $("sound-blocked").hidden = !(ringer.enabled && ringer.blocked && !$("app").hidden);
  }

  function renderNotifyButton() {
    const b = $("notify-enable");
    const supported = "Notification" in window;
    const permission = supported ? Notification.permission : "denied";
    b.hidden = !supported;
    b.disabled = permission !== "default";
    b.lastChild.textContent = permission === "granted" ? "Notifications on" : permission === "denied" ? "Notifications blocked" : "Notify me of calls";
    b.title = permission === "denied" ? "Allow notifications for this site in the browser's settings" : "A desktop notification when a call rings while this tab is hidden";
  }

  async function enableNotifications() {
    if (!("Notification" in window)) return;
    const result = await Notification.requestPermission().catch(() => "denied");
    renderNotifyButton();
    views.devices.devStatus(result === "granted" ? "You'll get a desktop notification when a call rings while this tab is hidden." : "Notifications are blocked for this site.", result !== "granted");
  }

  /** A call rings while the agent looks at another tab: a desktop notification (permission asked on a click). */
  function notifyRing(message) {
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
    const id = message.card?.identity ?? {};
    const type = CALL_TYPE[message.card?.call_type] ?? CALL_TYPE.voice;
    try {
      const n = new Notification(`Incoming ${type.label.toLowerCase()} · Callin`, {
        body: `${id.name || id.subject || "A caller"} is calling. Open the console to answer.`,
        tag: `callin-${message.call_id}`,
        requireInteraction: true,
      });
      n.addEventListener("click", () => {
        window.focus();
        n.close();
      });
      state.notification = n;
    } catch {
      /* notifications unavailable */
    }
  }

  function closeNotification() {
    state.notification?.close();
    state.notification = null;
  }

  // ------------------------------------------------------------------------------------------------ sound button
  function renderSoundButton() {
    const b = $("sound-button");
    b.innerHTML = icon(ringer.enabled ? "bell" : "bell-off", { size: 18 });
    b.setAttribute("aria-label", ringer.enabled ? "Ring sound on (click to mute)" : "Ring sound off (click to turn on)");
    b.setAttribute("aria-pressed", String(ringer.enabled));
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("notify-enable").addEventListener("click", enableNotifications);
    $("sound-enable").addEventListener("click", () => ringer.unlock());
    ringer.onchange = renderSoundBlocked;
    renderSoundButton();
    $("sound-button").addEventListener("click", () => {
      ringer.enabled = !ringer.enabled;
      localStorage.setItem(SOUND_KEY, ringer.enabled ? "on" : "off");
      ringer.unlock();
      renderSoundButton();
      renderSoundBlocked();
    });
    renderNotifyButton();
    document.addEventListener("pointerdown", () => ringer.unlock(), { once: true });
  }

  return { renderSoundBlocked, renderNotifyButton, enableNotifications, notifyRing, closeNotification, renderSoundButton, mount };
}
