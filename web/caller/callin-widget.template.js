/**
 * The caller widget's markup, one part per area and state (callin-widget.js renders it once into its shadow root and
 * finds its elements by class). Static markup only: icons and fixed wording; whatever the caller, the agent or the
 * integrator says is set as text afterwards, never through these templates.
 */

import { icon } from "./icons.js";

/** The button that opens the panel (floating at the bottom right, or inline where the integrator puts it). */
const launcher = (floating) => `
  <button class="launcher ${floating ? "floating" : ""}" part="launcher" aria-haspopup="dialog" aria-expanded="false" aria-controls="panel">
    <span class="badge">${icon("phone", { size: 16 })}</span><span class="launch-label"></span>
    <span class="launch-count" hidden></span>
  </button>`;

/** The panel's title bar: brand, status line, minimize and close. */
const header = () => `
  <header class="bar">
    <span class="brand-mark">${icon("headphones", { size: 20 })}</span>
    <div class="titles">
      <h2 id="title"></h2>
      <p id="subtitle"><span class="dot"></span><span class="subtitle-text">Customer support</span></p>
    </div>
    <button class="icon-btn" data-action="minimize" aria-label="Minimize">${icon("chevron-down")}</button>
    <button class="icon-btn" data-action="close" aria-label="Close">${icon("x")}</button>
  </header>`;

// ---------------------------------------------------------------------------------------------- views (data-view)
const loadingView = () => `
  <div class="view" data-view="loading">
    <div class="notice"><div class="spinner" aria-hidden="true"></div><p>Getting things ready…</p></div>
  </div>`;

/** Before the call: how to talk (voice, video, screen), who is calling, the location consent. */
const chooseView = () => `
  <div class="view pad" data-view="choose" hidden>
    <h3 class="hello">How would you like to talk?</h3>
    <p class="lead">A specialist will pick up. They'll already know it's you, so there's no need to repeat your details.</p>
    <div class="who-chip" hidden>
      <span class="avatar-sm"></span><span>Calling as <b class="who-name"></b></span>
      <span class="verified">${icon("shield", { size: 14 })}Verified</span>
    </div>
    <ul class="options" role="list"></ul>
    <label class="toggle location-toggle">
      <input type="checkbox" class="share-location" checked>
      <span>Share my location with the agent
        <small>Helps us confirm it's you and send help faster. Your browser will ask first; the call works either way.</small></span>
    </label>
    <p class="fine">${icon("lock", { size: 14 })}<span>Your browser asks before we use your microphone, camera or screen. Nothing is shared until you allow it, and only during the call.</span></p>
  </div>`;

/** While the browser asks for the microphone or camera. */
const permissionView = () => `
  <div class="view" data-view="permission" hidden>
    <div class="notice">
      <div class="big-ico perm-ico">${icon("mic", { size: 32 })}</div>
      <h3>Allow access to start the call</h3>
      <p class="perm-text"></p>
      <p class="meta">Look for the prompt near the address bar and choose <b>Allow</b>.</p>
      <div class="actions"><button class="btn ghost" data-action="cancel">Cancel</button></div>
    </div>
  </div>`;

/** The call's chat, a sheet over the stage: messages, attachments, scan, the picture about to be sent. */
const chatSheet = () => `
  <section class="sheet" hidden aria-label="Chat with the agent">
    <header class="sheet-bar">
      <b>${icon("message-square", { size: 16 })}Chat</b>
      <button class="icon-btn sm" data-action="chat-close" aria-label="Close the chat">${icon("chevron-down", { size: 18 })}</button>
    </header>
    <ol class="messages" aria-live="polite"><li class="empty">Send a message, a photo or a screenshot of the app. The agent sees it right away.</li></ol>
    <p class="chat-error" role="alert" hidden></p>
    <form class="composer">
      <button type="button" class="icon-btn sm" data-action="attach" aria-label="Attach a photo or file" title="Attach a photo or file">${icon("paperclip", { size: 18 })}</button>
      <button type="button" class="icon-btn sm" data-action="app-shot" aria-label="Attach a screenshot of the app" title="Screenshot of the app" hidden>${icon("smartphone", { size: 18 })}</button>
      <button type="button" class="icon-btn sm" data-action="scan" aria-label="Scan a QR code or barcode" title="Scan a code (photo of a QR code, barcode, meter…)">${icon("scan", { size: 18 })}</button>
      <input class="chat-input" type="text" maxlength="2000" placeholder="Write a message…" aria-label="Message" autocomplete="off">
      <button type="submit" class="send" aria-label="Send">${icon("send", { size: 17 })}</button>
      <input class="file-input" type="file" accept="image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain" hidden>
      <input class="scan-input" type="file" accept="image/jpeg,image/png,image/webp" capture="environment" hidden>
    </form>
    <div class="pending" hidden>
      <img class="pending-img" alt="">
      <div class="pending-txt"><b class="pending-name"></b><small>This is what the agent will see.</small></div>
      <button type="button" class="btn primary sm" data-action="pending-send">Send</button>
      <button type="button" class="icon-btn sm" data-action="pending-cancel" aria-label="Don't send">${icon("x", { size: 16 })}</button>
    </div>
  </section>`;

/** The stage: the agent's video or avatar, status, chips, the caller's self view, reconnect banner, overlays. */
const stage = () => `
  <div class="stage">
    <video class="remote" playsinline autoplay muted hidden></video>
    <div class="presence">
      <div class="avatar waiting" aria-hidden="true"></div>
      <h3 class="who"></h3>
      <p class="status" role="status"></p>
      <p class="sub"></p>
    </div>
    <div class="chips">
      <span class="chip time-chip"><span class="rec"></span><span class="clock">0:00</span></span>
      <span class="chip loc-chip" hidden></span>
      <span class="chip warn net-chip" hidden>${icon("wifi-off", { size: 13 })}<span>Weak connection</span></span>
    </div>
    <div class="self" hidden><video playsinline autoplay muted></video><span class="tag">You</span></div>
    <div class="banner" hidden><span class="spin-sm"></span><span class="banner-text">Reconnecting…</span></div>
    <div class="overlay" hidden role="status">
      <div class="ov-ico"></div>
      <h3 class="ov-title"></h3>
      <p class="ov-text"></p>
    </div>
    ${chatSheet()}
    <div class="lightbox" hidden><img alt=""><button class="icon-btn" data-action="lightbox-close" aria-label="Close the picture">${icon("x")}</button></div>
  </div>`;

/** Notices beside the stage: screen sharing, a supervisor on the call, the camera blocked. */
const notes = () => `
  <div class="note share-note" hidden>
    <span class="n-ico">${icon("monitor", { size: 16 })}</span>
    <span class="n-text"><b>You're sharing your screen</b></span>
    <button class="btn sm n-btn" data-action="stop-share">Stop</button>
  </div>
  <div class="note barge-note" hidden>
    <span class="n-ico">${icon("headphones", { size: 16 })}</span>
    <span class="n-text"><b class="barge-title">A supervisor joined the call</b><small class="barge-text"></small></span>
  </div>
  <div class="note rec-note" hidden role="status" data-state="off">
    <span class="n-ico"><span class="rec-light"></span></span>
    <span class="n-text"><b class="rec-title"></b><small class="rec-text"></small></span>
    <button class="btn sm rec-yes" data-action="rec-accept" hidden>OK</button>
    <button class="btn sm rec-no" data-action="rec-decline" hidden>Don't record</button>
  </div>
  <div class="note transcript-note" hidden>
    <span class="n-ico">${icon("file-text", { size: 16 })}</span>
    <span class="n-text"><b>This call is transcribed</b><small>What you say is turned into text for the agent. Card numbers are hidden.</small></span>
  </div>
  <div class="note captions-note" hidden aria-live="polite" aria-label="Captions">
    <span class="n-text"><small class="cap-who"></small><b class="cap-text"></b></span>
  </div>
  <div class="note cam-note" hidden>
    <span class="n-ico">${icon("video-off", { size: 16 })}</span>
    <span class="n-text"><b class="cam-title">Your camera is blocked</b><small class="cam-text"></small></span>
    <button class="icon-btn sm" data-action="dismiss-cam-note" aria-label="Dismiss">${icon("x", { size: 15 })}</button>
  </div>`;

/** The callback offer while waiting, and the tray of what the agent shared. */
const offerAndTray = () => `
  <div class="offer-card" hidden role="region" aria-label="Callback offer">
    <div class="oc-ico">${icon("phone-incoming", { size: 20 })}</div>
    <div class="oc-body">
      <b>Don't want to wait?</b>
      <p class="oc-text">We can call you back when an agent is free. You keep your place in line.</p>
      <div class="oc-actions">
        <button class="btn primary sm" data-action="callback">Call me back</button>
        <button class="btn ghost sm" data-action="leave-from-card" hidden>Leave a message</button>
        <button class="btn quiet sm" data-action="dismiss-offer">Keep waiting</button>
      </div>
    </div>
  </div>
  <div class="tray-box" hidden>
    <button class="tray-toggle" data-action="tray-toggle" aria-expanded="false">
      <span class="n-ico">${icon("link", { size: 15 })}</span><span class="tray-count"></span>${icon("chevron-down", { size: 16 })}
    </button>
    <ul class="tray" aria-label="Shared by the agent" hidden></ul>
  </div>
  <div class="toast" role="alert" hidden></div>`;

/** The call's controls: mute, camera, screen, chat, end. */
const controls = () => `
  <div class="controls">
    <div class="ctl"><button data-action="mute" aria-pressed="false" aria-label="Mute microphone">${icon("mic", { size: 22 })}</button><span aria-hidden="true">Mute</span></div>
    <div class="ctl"><button data-action="camera" aria-pressed="false" aria-label="Turn camera on">${icon("video-off", { size: 22 })}</button><span aria-hidden="true">Camera</span></div>
    <div class="ctl screen-ctl"><button data-action="screen" aria-pressed="false" aria-label="Share your screen">${icon("monitor", { size: 22 })}</button><span aria-hidden="true">Screen</span></div>
    <div class="ctl chat-ctl" hidden><button data-action="chat" aria-pressed="false" aria-label="Chat">${icon("message-square", { size: 22 })}<i class="unread" hidden></i></button><span aria-hidden="true">Chat</span></div>
    <div class="ctl"><button class="end" data-action="hangup" aria-label="End call">${icon("phone", { size: 22 })}</button><span aria-hidden="true" class="end-label">End</span></div>
  </div>
  <p class="footer-note">${icon("lock", { size: 12 })}Encrypted call</p>`;

const callView = () => `
  <div class="view call" data-view="call" hidden>
    ${stage()}
    <div class="side">
      ${notes()}
      ${offerAndTray()}
      ${controls()}
    </div>
    <audio class="remote-audio" autoplay></audio>
    <audio class="aux-audio" autoplay></audio>
  </div>`;

/** Nobody can take the call now (closed, over the longest wait, nobody signed in): callback, message, wait. */
const closedView = () => `
  <div class="view" data-view="closed" hidden>
    <div class="notice">
      <div class="big-ico closed-ico">${icon("moon", { size: 32 })}</div>
      <h3 class="closed-title"></h3>
      <p class="closed-text"></p>
      <p class="meta closed-meta"></p>
      <div class="actions closed-actions">
        <button class="btn primary" data-action="callback">${icon("phone-incoming", { size: 18 })}Request a callback</button>
        <button class="btn ghost" data-action="leave">${icon("message-square", { size: 18 })}Leave a message</button>
        <button class="btn ghost" data-action="keep-waiting">Keep waiting</button>
        <button class="btn quiet" data-action="end-call">End the call</button>
      </div>
      <form class="leave-form" hidden>
        <label for="leave-text">Your message for the team</label>
        <textarea id="leave-text" class="leave-text" rows="5" maxlength="2000" placeholder="What can we help you with?"></textarea>
        <p class="leave-meta"><span class="leave-count">0 / 2000</span></p>
        <p class="form-err" role="alert" hidden></p>
        <div class="actions">
          <button class="btn primary" type="submit">${icon("send", { size: 18 })}Send message</button>
          <button class="btn ghost" type="button" data-action="leave-cancel">Back</button>
        </div>
      </form>
    </div>
  </div>`;

const callbackView = () => `
  <div class="view" data-view="callback" hidden>
    <div class="notice good">
      <div class="big-ico">${icon("phone-incoming", { size: 32 })}</div>
      <h3>We'll call you back</h3>
      <p class="cb-text">You keep your place in line. When an agent is ready, we'll let you know here and in the app.</p>
      <p class="meta cb-meta"></p>
      <div class="actions">
        <button class="btn ghost" data-action="minimize">Got it</button>
        <button class="btn quiet" data-action="end-call">Cancel the callback</button>
      </div>
    </div>
  </div>`;

/** A callback is ready: join the call. */
const rejoinView = () => `
  <div class="view" data-view="rejoin" hidden>
    <div class="notice">
      <div class="big-ico ringing-ico">${icon("phone", { size: 32 })}</div>
      <h3 class="rejoin-title">An agent is ready for you</h3>
      <p class="rejoin-text"></p>
      <p class="meta rejoin-meta"></p>
      <div class="actions">
        <button class="btn primary join" data-action="rejoin">${icon("phone", { size: 18 })}Join the call</button>
        <button class="btn quiet" data-action="end-call">Cancel the call</button>
      </div>
    </div>
  </div>`;

const endedView = () => `
  <div class="view" data-view="ended" hidden>
    <div class="notice good">
      <div class="big-ico">${icon("check-circle", { size: 34 })}</div>
      <h3>Call ended</h3>
      <p class="ended-text"></p>
      <p class="meta ended-meta"></p>
      <div class="actions">
        <button class="btn primary" data-action="again">${icon("phone", { size: 18 })}Call again</button>
        <button class="btn ghost" data-action="close">Close</button>
      </div>
    </div>
  </div>`;

const errorView = () => `
  <div class="view" data-view="error" hidden>
    <div class="notice bad">
      <div class="big-ico err-ico"></div>
      <h3 class="err-title"></h3>
      <p class="err-text"></p>
      <ol class="steps err-steps" hidden></ol>
      <div class="actions">
        <button class="btn primary" data-action="retry">Try again</button>
        <button class="btn primary" data-action="reload" hidden>Refresh the page</button>
        <button class="btn ghost" data-action="back" hidden>Choose another way</button>
        <button class="btn ghost" data-action="close">Close</button>
      </div>
    </div>
  </div>`;

/** The whole widget: `style` is a <style> element where constructed style sheets are not supported, else "". */
export function widgetMarkup({ floating, style = "" }) {
  return `${style}
  ${launcher(floating)}
  <section class="panel" id="panel" part="panel" role="dialog" aria-modal="false" aria-labelledby="title" hidden data-view="choose">
    ${header()}
    <div class="body">
      ${[loadingView, chooseView, permissionView, callView, closedView, callbackView, rejoinView, endedView, errorView].map((view) => view()).join("\n")}
    </div>
    <div class="sr-only" aria-live="assertive" id="live"></div>
  </section>`;
}
