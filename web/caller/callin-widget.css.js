/** The caller widget's styles (inside its shadow root, so the host page's CSS neither leaks in nor out). */
export const WIDGET_CSS = String.raw`
:host {
  all: initial;
  --accent: #1d4ed8;
  --accent-ink: #ffffff;
  --accent-soft: color-mix(in srgb, var(--accent) 10%, white);
  --danger: #dc2626;
  --danger-dark: #b91c1c;
  --ok: #15803d;  /* green-700: 4.5:1 or more on white, --soft and under white text (WCAG AA) */
  --ink: #0f172a;
  --ink-2: #334155;
  --muted: #475569;  /* slate-600: AA on every light surface of the widget */
  --line: #e2e8f0;
  --surface: #ffffff;
  --soft: #f1f5f9;
  --night: #0b1120;
  --night-2: #131c31;
  --radius: 20px;
  font-family: "Inter", ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px;
  line-height: 1.45;
  color: var(--ink);
  -webkit-font-smoothing: antialiased;
}
:host([hidden]) { display: none; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
button { font: inherit; color: inherit; }
.icon { flex: none; display: block; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
:focus { outline: none; }
:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 60%, white); outline-offset: 2px; }

/* ---------------------------------------------------------------- launcher */
.launcher {
  display: inline-flex; align-items: center; gap: 10px;
  min-height: 48px; padding: 0 22px 0 16px;
  border: 0; border-radius: 999px; cursor: pointer;
  background: var(--accent); color: var(--accent-ink);
  font-weight: 650; font-size: 15px; letter-spacing: .01em;
  box-shadow: 0 10px 24px -8px color-mix(in srgb, var(--accent) 70%, transparent), 0 2px 6px rgba(15, 23, 42, .14);
  transition: transform .15s ease, box-shadow .15s ease, background .15s;
}
.launcher:hover { transform: translateY(-1px); }
.launcher:active { transform: translateY(0); }
.launcher .badge {
  display: grid; place-items: center; width: 30px; height: 30px; border-radius: 50%;
  background: color-mix(in srgb, var(--accent-ink) 18%, transparent);
}
.launcher.floating { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; }
.launcher.in-call { background: var(--ok); box-shadow: 0 10px 24px -8px rgba(22, 163, 74, .7); }
.launcher.in-call .badge { animation: beat 1.6s ease-in-out infinite; }
.launcher[aria-expanded="true"].floating { display: none; }
.launch-count {
  min-width: 22px; height: 22px; padding: 0 6px; margin-right: -8px; border-radius: 999px; display: grid; place-items: center;
  background: #be123c; color: white; font-size: 12px; font-weight: 750; box-shadow: 0 0 0 2px var(--ok);
}

/* ---------------------------------------------------------------- panel */
.panel {
  position: fixed; z-index: 2147483001; right: 20px; bottom: 20px;
  width: 384px; height: min(680px, calc(100dvh - 40px));
  display: flex; flex-direction: column; overflow: hidden;
  background: var(--surface); border-radius: var(--radius);
  box-shadow: 0 30px 80px -20px rgba(15, 23, 42, .45), 0 0 0 1px rgba(15, 23, 42, .06);
  animation: rise .22s cubic-bezier(.2, .8, .2, 1);
}
@media (max-width: 520px) {
  .panel { inset: 0; width: auto; height: auto; border-radius: 0; animation: none; }
  .launcher.floating { right: 16px; bottom: 16px; }
}
@keyframes rise { from { opacity: 0; transform: translateY(16px) scale(.98); } to { opacity: 1; transform: none; } }

.bar {
  display: flex; align-items: center; gap: 12px;
  padding: 14px 12px 14px 18px; border-bottom: 1px solid var(--line);
}
.brand-mark {
  display: grid; place-items: center; width: 38px; height: 38px; border-radius: 12px;
  background: var(--accent); color: var(--accent-ink); flex: none;
}
.titles { flex: 1; min-width: 0; }
.titles h2 { margin: 0; font-size: 16px; font-weight: 700; letter-spacing: -.01em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.titles p { margin: 1px 0 0; font-size: 12.5px; color: var(--muted); display: flex; align-items: center; gap: 6px; white-space: nowrap; overflow: hidden; }
.titles p span:last-child { overflow: hidden; text-overflow: ellipsis; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: var(--ok); display: inline-block; flex: none; }
.dot.off { background: #94a3b8; }
.icon-btn {
  display: grid; place-items: center; width: 40px; height: 40px; border-radius: 12px;
  border: 0; background: transparent; color: var(--muted); cursor: pointer;
}
.icon-btn:hover { background: var(--soft); color: var(--ink); }

.body { flex: 1; min-height: 0; display: flex; flex-direction: column; overflow: auto; }
.view { flex: 1; display: flex; flex-direction: column; min-height: 0; }
.pad { padding: 20px 20px 22px; }

/* ---------------------------------------------------------------- choose */
.hello { margin: 0 0 4px; font-size: 21px; font-weight: 750; letter-spacing: -.02em; }
.lead { margin: 0 0 18px; color: var(--ink-2); font-size: 14.5px; }
.who-chip {
  display: flex; align-items: center; gap: 10px; padding: 10px 12px; margin: 0 0 16px;
  border-radius: 14px; background: var(--soft); font-size: 13.5px; color: var(--ink-2);
}
.who-chip .avatar-sm {
  width: 30px; height: 30px; border-radius: 50%; display: grid; place-items: center; flex: none;
  background: var(--accent); color: var(--accent-ink); font-weight: 700; font-size: 12px;
}
.who-chip b { color: var(--ink); }
.who-chip .verified { margin-left: auto; display: inline-flex; align-items: center; gap: 4px; color: var(--ok); font-weight: 600; font-size: 12px; }
.options { list-style: none; margin: 0 0 16px; padding: 0; display: grid; gap: 10px; }
.option {
  width: 100%; display: flex; align-items: center; gap: 14px; text-align: left;
  padding: 14px 14px; border-radius: 16px; cursor: pointer;
  background: var(--surface); border: 1.5px solid var(--line);
  transition: border-color .15s, box-shadow .15s, background .15s;
}
.option:hover { border-color: color-mix(in srgb, var(--accent) 50%, white); background: var(--accent-soft); }
.option:focus-visible { border-color: var(--accent); }
.option .ico {
  display: grid; place-items: center; width: 44px; height: 44px; border-radius: 14px; flex: none;
  background: var(--accent-soft); color: var(--accent);
}
.option .txt { flex: 1; min-width: 0; display: flex; flex-direction: column; }
.option b { font-size: 15.5px; font-weight: 650; }
.option small { color: var(--muted); font-size: 13px; margin-top: 1px; }
.option .chev { color: #94a3b8; }
.option:disabled { opacity: .55; cursor: progress; }

.toggle {
  display: flex; gap: 12px; align-items: flex-start; padding: 12px 14px; border-radius: 14px;
  border: 1px dashed var(--line); cursor: pointer; margin-bottom: 14px;
}
.toggle input { appearance: none; -webkit-appearance: none; margin: 2px 0 0; flex: none; width: 38px; height: 22px; border-radius: 999px; background: #cbd5e1; position: relative; cursor: pointer; transition: background .15s; }
.toggle input::after { content: ""; position: absolute; top: 3px; left: 3px; width: 16px; height: 16px; border-radius: 50%; background: white; box-shadow: 0 1px 2px rgba(0,0,0,.25); transition: transform .15s; }
.toggle input:checked { background: var(--accent); }
.toggle input:checked::after { transform: translateX(16px); }
.toggle input:focus-visible { outline: 3px solid color-mix(in srgb, var(--accent) 60%, white); outline-offset: 2px; }
.toggle span { display: flex; flex-direction: column; font-size: 14px; font-weight: 600; }
.toggle small { font-weight: 400; color: var(--muted); font-size: 12.5px; margin-top: 2px; }
.fine { display: flex; gap: 8px; align-items: flex-start; margin: 0; color: var(--muted); font-size: 12.5px; }
.fine .icon { margin-top: 2px; }

/* ---------------------------------------------------------------- notices (permission, ended, error, loading) */
.notice { flex: 1; display: flex; flex-direction: column; align-items: center; justify-content: center; text-align: center; padding: 28px 26px; }
.notice .big-ico {
  display: grid; place-items: center; width: 76px; height: 76px; border-radius: 50%; margin-bottom: 18px;
  background: var(--accent-soft); color: var(--accent);
}
.notice.bad .big-ico { background: #fef2f2; color: var(--danger); }
.notice.good .big-ico { background: #f0fdf4; color: var(--ok); }
.notice h3 { margin: 0 0 8px; font-size: 20px; font-weight: 750; letter-spacing: -.015em; }
.notice p { margin: 0 0 6px; color: var(--ink-2); max-width: 300px; }
.notice .meta { color: var(--muted); font-size: 13.5px; }
.actions { display: flex; flex-direction: column; gap: 10px; width: 100%; max-width: 300px; margin-top: 22px; }
.btn {
  display: inline-flex; align-items: center; justify-content: center; gap: 8px;
  min-height: 48px; padding: 0 18px; border-radius: 14px; border: 0; cursor: pointer;
  font-weight: 650; font-size: 15px;
}
.btn.primary { background: var(--accent); color: var(--accent-ink); }
.btn.primary:hover { background: color-mix(in srgb, var(--accent) 88%, black); }
.btn.ghost { background: var(--soft); color: var(--ink); }
.btn.ghost:hover { background: #e2e8f0; }
.steps { text-align: left; margin: 12px 0 0; padding: 12px 14px 12px 32px; border-radius: 14px; background: var(--soft); font-size: 13.5px; color: var(--ink-2); max-width: 310px; }
.steps li + li { margin-top: 4px; }
.spinner { width: 34px; height: 34px; border-radius: 50%; border: 3px solid var(--line); border-top-color: var(--accent); animation: spin .8s linear infinite; margin-bottom: 16px; }
@keyframes spin { to { transform: rotate(360deg); } }

/* ---------------------------------------------------------------- call */
.panel[data-view="call"] { background: var(--night); color: #e2e8f0; }
.panel[data-view="call"] .bar { border-bottom-color: rgba(255,255,255,.07); }
.panel[data-view="call"] .titles p { color: #94a3b8; }
.panel[data-view="call"] .icon-btn { color: #94a3b8; }
.panel[data-view="call"] .icon-btn:hover { background: rgba(255,255,255,.08); color: white; }
.call { background: var(--night); color: #e2e8f0; }
.stage {
  position: relative; flex: 1; min-height: 260px; margin: 0 12px; border-radius: 18px; overflow: hidden;
  background: radial-gradient(120% 90% at 50% 20%, #1e2a4a 0%, var(--night-2) 55%, #0a0f1c 100%);
}
.stage video.remote { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; background: black; }
.stage video.remote.contain { object-fit: contain; }
.presence { position: absolute; inset: 0; display: flex; flex-direction: column; align-items: center; justify-content: center; text-align: center; padding: 24px; }
.avatar {
  position: relative; width: 104px; height: 104px; border-radius: 50%; display: grid; place-items: center;
  background: linear-gradient(145deg, color-mix(in srgb, var(--accent) 80%, white), var(--accent));
  color: white; font-size: 36px; font-weight: 700; margin-bottom: 22px;
  box-shadow: 0 12px 40px -8px color-mix(in srgb, var(--accent) 70%, transparent);
}
.avatar.waiting::before, .avatar.waiting::after {
  content: ""; position: absolute; inset: -2px; border-radius: 50%;
  border: 2px solid color-mix(in srgb, var(--accent) 70%, white); animation: ripple 2.4s ease-out infinite;
}
.avatar.waiting::after { animation-delay: 1.2s; }
@keyframes ripple { from { transform: scale(1); opacity: .7; } to { transform: scale(1.7); opacity: 0; } }
@keyframes beat { 0%, 100% { transform: scale(1); } 50% { transform: scale(1.12); } }
.presence h3 { margin: 0 0 6px; font-size: 21px; font-weight: 700; color: white; letter-spacing: -.015em; }
.presence .status { margin: 0; font-size: 15px; color: #cbd5e1; }
.presence .sub { margin: 6px 0 0; font-size: 13.5px; color: #94a3b8; max-width: 270px; }
.stage.has-video .presence { justify-content: flex-end; padding: 16px; background: linear-gradient(to top, rgba(0,0,0,.55), transparent 45%); }
.stage.has-video .avatar { display: none; }
.stage.has-video .presence h3 { font-size: 17px; }
.self {
  position: absolute; right: 10px; top: 10px; width: 92px; aspect-ratio: 3 / 4; border-radius: 14px; overflow: hidden;
  background: #111827; box-shadow: 0 8px 24px rgba(0,0,0,.45); border: 2px solid rgba(255,255,255,.14);
}
.self video { width: 100%; height: 100%; object-fit: cover; display: block; }
.self video.mirror { transform: scaleX(-1); }
.self .tag { position: absolute; left: 6px; bottom: 6px; font-size: 10.5px; font-weight: 600; padding: 2px 6px; border-radius: 6px; background: rgba(0,0,0,.55); color: white; }
.self.screen { aspect-ratio: 16 / 10; width: 128px; }
.self.screen video { object-fit: contain; }
.chips { position: absolute; left: 10px; top: 10px; display: flex; flex-direction: column; align-items: flex-start; gap: 6px; }
.chip {
  display: inline-flex; align-items: center; gap: 6px; padding: 5px 10px 5px 8px; border-radius: 999px;
  background: rgba(2, 6, 23, .6); color: #e2e8f0; font-size: 12px; font-weight: 600; backdrop-filter: blur(6px);
}
.chip .rec { width: 8px; height: 8px; border-radius: 50%; background: #22c55e; }
.chip.warn { background: rgba(180, 83, 9, .85); color: white; }
.banner {
  position: absolute; left: 50%; bottom: 14px; transform: translateX(-50%); white-space: nowrap;
  display: inline-flex; align-items: center; gap: 8px; padding: 8px 14px; border-radius: 999px;
  background: rgba(234, 88, 12, .95); color: white; font-size: 13px; font-weight: 600;
}
.banner .spin-sm { width: 14px; height: 14px; border-radius: 50%; border: 2px solid rgba(255,255,255,.4); border-top-color: white; animation: spin .8s linear infinite; }
.side { display: contents; }
.note {
  display: flex; align-items: center; gap: 10px; margin: 10px 12px 0; padding: 8px 8px 8px 12px; border-radius: 14px; flex: none;
  background: rgba(255,255,255,.08); color: #e2e8f0; font-size: 13px;
}
.note .n-ico { display: grid; place-items: center; width: 30px; height: 30px; border-radius: 10px; flex: none; background: rgba(255,255,255,.1); }
.note .n-text { flex: 1; min-width: 0; display: flex; flex-direction: column; }
.note .n-text b { font-weight: 650; color: white; }
.note .n-text small { color: #cbd5e1; font-size: 12.5px; }
.share-note { background: #1d4ed8; }
.share-note .n-btn { background: white; color: #1e3a8a; }
.barge-note { background: rgba(124, 58, 237, .35); }
.cam-note { background: rgba(180, 83, 9, .4); }
.rec-note { background: rgba(185, 28, 28, .35); }
.rec-note[data-state="asking"] { background: rgba(180, 83, 9, .45); }
.rec-note[data-state="paused"], .rec-note[data-state="declined"], .rec-note[data-state="stopped"] { background: rgba(255,255,255,.08); }
.rec-note .rec-light { width: 10px; height: 10px; border-radius: 50%; background: #f87171; }
.rec-note[data-state="paused"] .rec-light, .rec-note[data-state="declined"] .rec-light { background: #94a3b8; }
.rec-note .rec-yes { background: white; color: #7c2d12; }
.transcript-note { background: rgba(15, 118, 110, .4); }
.captions-note { background: rgba(0, 0, 0, .55); }
.captions-note .cap-text { font-weight: 500; }
.cam-note .icon-btn { color: #fde68a; }
.stage.bannered .presence { padding-bottom: 64px; }
.stage.reconnecting .presence .status, .stage.reconnecting .presence .sub { visibility: hidden; }
.controls { display: flex; justify-content: center; gap: 14px; padding: 16px 12px 20px; }
.ctl { display: flex; flex-direction: column; align-items: center; gap: 6px; min-width: 62px; }
.ctl button {
  display: grid; place-items: center; width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;
  background: rgba(255,255,255,.1); color: white; transition: background .15s, transform .1s;
}
.ctl button:hover { background: rgba(255,255,255,.18); }
.ctl button:active { transform: scale(.96); }
.ctl button[aria-pressed="true"] { background: white; color: var(--night); }
.ctl button.end { background: var(--danger); }
.ctl button.end:hover { background: var(--danger-dark); }
.ctl button.end .icon { transform: rotate(135deg); }
.ctl button:focus-visible { outline: 3px solid #93c5fd; outline-offset: 3px; }
.ctl span { font-size: 11.5px; color: #94a3b8; font-weight: 600; }
.toast {
  margin: 10px 12px 0; padding: 9px 12px; border-radius: 12px; font-size: 13px;
  background: rgba(220, 38, 38, .16); color: #fecaca; display: flex; gap: 8px; align-items: flex-start;
}
.toast .icon { margin-top: 1px; }
.footer-note { margin: 0; padding: 0 20px 14px; text-align: center; font-size: 11.5px; color: var(--muted); display: flex; justify-content: center; gap: 6px; align-items: center; }
.panel[data-view="call"] .footer-note { color: #94a3b8; }  /* AA on the night background */
/* ---------------------------------------------------------------- small buttons */
.btn.sm { min-height: 36px; padding: 0 14px; border-radius: 11px; font-size: 13.5px; gap: 6px; }
.btn.quiet { background: transparent; color: var(--muted); }
.btn.quiet:hover { background: var(--soft); color: var(--ink); }
.icon-btn.sm { width: 34px; height: 34px; border-radius: 10px; }
.controls { gap: 8px; }
.ctl { min-width: 56px; }
.ctl button { position: relative; }
.unread { position: absolute; top: 6px; right: 6px; width: 11px; height: 11px; border-radius: 50%; background: #f43f5e; box-shadow: 0 0 0 2px var(--night); }

/* ---------------------------------------------------------------- hold / transfer overlay */
.overlay {
  position: absolute; inset: 0; z-index: 3; display: flex; flex-direction: column; align-items: center; justify-content: center;
  text-align: center; padding: 24px; background: rgba(8, 12, 26, .82); backdrop-filter: blur(6px);
}
.overlay .ov-ico { display: grid; place-items: center; width: 72px; height: 72px; border-radius: 50%; margin-bottom: 16px;
  background: rgba(251, 191, 36, .16); color: #fbbf24; animation: beat 2s ease-in-out infinite; }
.overlay[data-kind="transfer"] .ov-ico { background: color-mix(in srgb, var(--accent) 25%, transparent); color: color-mix(in srgb, var(--accent) 45%, white); }
.overlay h3 { margin: 0 0 6px; color: white; font-size: 19px; font-weight: 700; }
.overlay p { margin: 0; color: #cbd5e1; font-size: 14px; max-width: 260px; }

/* ---------------------------------------------------------------- callback offer (while waiting): below the stage */
.offer-card {
  position: relative; margin: 10px 12px 0; flex: none; display: flex; gap: 12px; padding: 14px;
  border-radius: 16px; background: var(--surface); color: var(--ink); box-shadow: 0 18px 40px -12px rgba(0,0,0,.6);
  animation: rise .22s ease-out;
}
.oc-ico { display: grid; place-items: center; width: 38px; height: 38px; border-radius: 12px; flex: none; background: var(--accent-soft); color: var(--accent); }
.oc-body b { font-size: 15px; }
.oc-body p { margin: 2px 0 10px; font-size: 13px; color: var(--ink-2); }
.oc-actions { display: flex; gap: 8px; flex-wrap: wrap; }

/* ---------------------------------------------------------------- pushed content */
.panel.chatting .tray { display: none; }
.panel.chatting .tray-box { display: none; }
.tray-box { margin: 10px 12px 0; flex: none; display: flex; flex-direction: column; gap: 6px; min-height: 0; }
.tray-box.expanded { max-height: 45%; }
.tray-toggle {
  display: flex; align-items: center; gap: 8px; padding: 6px 10px; border: 0; border-radius: 10px; cursor: pointer;
  background: rgba(255,255,255,.08); color: #e2e8f0; font-size: 12.5px; font-weight: 650; text-align: left;
}
.tray-toggle .tray-count { flex: 1; }
.tray-box.expanded .tray-toggle > .icon:last-child { transform: rotate(180deg); }
.tray { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 8px; overflow-y: auto; flex: 1; min-height: 0; }
.tray-box:not(.expanded) .pushed + .pushed { display: none; }
.pushed { background: var(--surface); color: var(--ink); border-radius: 16px; padding: 10px 10px 12px 14px; box-shadow: 0 10px 30px -14px rgba(0,0,0,.7); animation: rise .22s ease-out; }
.p-head { display: flex; align-items: center; gap: 8px; }
.p-ico { display: grid; place-items: center; width: 28px; height: 28px; border-radius: 9px; flex: none; background: var(--accent-soft); color: var(--accent); }
.p-title { flex: 1; min-width: 0; font-size: 14px; font-weight: 650; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.p-dismiss { color: var(--muted); }
.p-text { margin: 6px 4px 0 0; font-size: 13.5px; color: var(--ink-2); white-space: pre-wrap; overflow-wrap: anywhere; }
.p-link { display: flex; align-items: center; gap: 10px; margin-top: 8px; }
.p-host { flex: 1; min-width: 0; font-size: 12.5px; color: var(--muted); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pushed.opened .p-link .btn { background: var(--soft); color: var(--ink); }
.p-img { display: block; margin: 8px 4px 0 0; padding: 0; border: 0; border-radius: 12px; overflow: hidden; cursor: zoom-in; background: var(--soft); width: calc(100% - 4px); }
.p-img img { display: block; width: 100%; max-height: 150px; object-fit: contain; background: #0f172a; }

/* ---------------------------------------------------------------- chat sheet */
.sheet {
  position: absolute; left: 0; right: 0; bottom: 0; top: 0; z-index: 4; display: flex; flex-direction: column;
  background: var(--surface); color: var(--ink); border-radius: 18px 18px 0 0; box-shadow: 0 -18px 40px -16px rgba(0,0,0,.6);
  animation: rise .2s ease-out;
}
.sheet-bar { display: flex; align-items: center; justify-content: space-between; padding: 8px 8px 6px 16px; border-bottom: 1px solid var(--line); }
.sheet-bar b { display: inline-flex; align-items: center; gap: 8px; font-size: 14.5px; }
/* the chat sheet is light inside the dark call view: its buttons must not take the call view's (white) hover */
.sheet .icon-btn, .panel[data-view="call"] .sheet .icon-btn { color: var(--muted); }
.sheet .icon-btn:hover, .panel[data-view="call"] .sheet .icon-btn:hover { background: var(--soft); color: var(--ink); }
.messages { list-style: none; margin: 0; padding: 12px 12px 4px; flex: 1; min-height: 0; overflow-y: auto; display: flex; flex-direction: column; gap: 8px; }
.messages .empty { margin: auto 10px; text-align: center; color: var(--muted); font-size: 13px; }
.msg { display: flex; flex-direction: column; max-width: 82%; }
.msg.mine { align-self: flex-end; align-items: flex-end; }
.msg.theirs { align-self: flex-start; }
.msg .from { font-size: 11.5px; color: var(--muted); font-weight: 600; margin: 0 0 2px 10px; }
.bubble { padding: 8px 12px; border-radius: 16px; background: var(--soft); font-size: 14px; overflow-wrap: anywhere; }
.msg.mine .bubble { background: var(--accent); color: var(--accent-ink); border-bottom-right-radius: 6px; }
.msg.theirs .bubble { border-bottom-left-radius: 6px; }
.bubble p { margin: 0; white-space: pre-wrap; }
.bubble .scan-note { display: block; margin-top: 6px; font-size: 12px; line-height: 1.35; overflow-wrap: anywhere; }
.bubble .att-img + p, .bubble .att-file + p { margin-top: 6px; }
.msg time { font-size: 10.5px; color: var(--muted); margin: 2px 8px 0; }
.att-img { display: block; padding: 0; border: 0; background: none; cursor: zoom-in; }
.att-img img { display: block; max-width: 200px; max-height: 160px; border-radius: 10px; background: rgba(0,0,0,.1); }
.att-file { display: flex; align-items: center; gap: 8px; border: 0; padding: 6px 8px; border-radius: 10px; background: rgba(255,255,255,.55); color: inherit; cursor: pointer; text-align: left; }
.msg.mine .att-file { background: rgba(255,255,255,.16); }
.att-file span { display: flex; flex-direction: column; min-width: 0; }
.att-file b { font-size: 13px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 170px; }
.att-file small { font-size: 11px; opacity: .8; }
.chat-error { margin: 0 12px 4px; padding: 8px 10px; border-radius: 10px; background: #fef2f2; color: var(--danger-dark); font-size: 12.5px; }
.composer { display: flex; align-items: center; gap: 4px; padding: 8px 8px 10px; border-top: 1px solid var(--line); }
.composer.busy { opacity: .6; pointer-events: none; }
.chat-input { flex: 1; min-width: 0; font: inherit; font-size: 14.5px; padding: 9px 12px; border-radius: 999px; border: 1px solid var(--line); background: var(--soft); color: var(--ink); }
.chat-input:focus { outline: none; border-color: var(--accent); background: white; }
.send { display: grid; place-items: center; width: 38px; height: 38px; border-radius: 50%; border: 0; background: var(--accent); color: var(--accent-ink); cursor: pointer; flex: none; }
.pending { display: flex; align-items: center; gap: 10px; margin: 0 8px 8px; padding: 8px; border-radius: 14px; background: var(--accent-soft); }
.pending-img { width: 46px; height: 64px; object-fit: cover; border-radius: 8px; background: white; flex: none; box-shadow: 0 2px 6px rgba(0,0,0,.15); }
.pending-txt { flex: 1; display: flex; flex-direction: column; font-size: 13px; min-width: 0; }
.pending-txt small { color: var(--muted); font-size: 11.5px; }
.lightbox { position: absolute; inset: 0; z-index: 6; display: grid; place-items: center; background: rgba(2,6,23,.92); padding: 14px; }
.lightbox img { max-width: 100%; max-height: 100%; border-radius: 10px; }
.lightbox .icon-btn { position: absolute; top: 8px; right: 8px; color: white; background: rgba(255,255,255,.12); }

/* ---------------------------------------------------------------- closed queue, callback, rejoin */
.closed-ico { background: #eef2ff !important; color: #4338ca !important; }
.leave-form { width: 100%; max-width: 310px; margin-top: 18px; text-align: left; }
.leave-form label { font-size: 13.5px; font-weight: 650; color: var(--ink-2); }
.leave-text { display: block; width: 100%; margin-top: 6px; font: inherit; font-size: 14.5px; padding: 10px 12px; border-radius: 12px; border: 1.5px solid var(--line); resize: vertical; min-height: 110px; color: var(--ink); }
.leave-text:focus { outline: none; border-color: var(--accent); }
.leave-meta { margin: 4px 0 0 !important; text-align: right; font-size: 12px; color: var(--muted) !important; max-width: none !important; }
.form-err { margin: 6px 0 0 !important; padding: 8px 10px; border-radius: 10px; background: #fef2f2; color: var(--danger-dark) !important; font-size: 13px; }
.leave-form .actions { margin-top: 12px; max-width: none; }
.ringing-ico { background: #f0fdf4 !important; color: var(--ok) !important; animation: beat 1.4s ease-in-out infinite; }
.btn.join { background: var(--ok); }
.btn.join:hover { background: #15803d; }
@media (max-height: 560px) { .avatar { width: 72px; height: 72px; font-size: 26px; margin-bottom: 12px; } }
/* A phone on its side (e.g. 844 x 390): the whole screen, the stage on the left, notes and controls on the right. */
@media (max-height: 500px) and (min-aspect-ratio: 4/3) {
  .panel { inset: 0; width: auto; height: auto; border-radius: 0; animation: none; }
  .bar { padding: 6px 10px 6px 14px; }
  .brand-mark { width: 30px; height: 30px; border-radius: 10px; }
  .view.call { display: grid; grid-template-columns: minmax(0, 1fr) minmax(280px, 38%); grid-template-rows: minmax(0, 1fr); }
  .stage { min-height: 0; margin: 8px 0 8px 8px; }
  /* The controls keep their room; the notes and cards above them shrink and scroll. */
  .side { display: flex; flex-direction: column; min-height: 0; overflow: hidden; }
  .side > .note, .side > .offer-card, .side > .tray-box, .side > .toast { margin: 8px 8px 0; flex: 0 1 auto; min-height: 44px; overflow-y: auto; }
  .side > .offer-card { padding: 10px; }
  .side .controls { flex: none; margin-top: auto; padding: 8px 6px 8px; gap: 2px; }
  .side .ctl { min-width: 52px; }
  .side .ctl button { width: 48px; height: 48px; }
  .side .footer-note { display: none; }
  .note { padding: 6px 6px 6px 10px; font-size: 12.5px; }
  .note .n-text small { font-size: 12px; }
  .avatar { width: 64px; height: 64px; font-size: 22px; margin-bottom: 8px; }
  .presence h3 { font-size: 18px; }
  .notice { padding: 12px 20px; }
  .notice .big-ico { width: 52px; height: 52px; margin-bottom: 8px; }
}
@media (prefers-reduced-motion: reduce) { *, *::before, *::after { animation: none !important; transition: none !important; } }
`;
