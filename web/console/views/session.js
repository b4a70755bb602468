/**
 * Signing in and out, the agent's signaling session (callin-agent.js's CallinAgentSession: hello, resume,
 * pings, back-off) and what this page shows when it is lost, the availability the agent asks for, and keeping the
 * HttpOnly session cookie fresh.
 */

import { icon } from "../../caller/icons.js";
import { CallinAgentSession, SESSION_ENDED, agentSocketUrl } from "../../caller/callin-agent.js";
import { CallinError } from "../../caller/callin-client.js";
import { $, toast, banner } from "../lib/dom.js";
import { sleep } from "../lib/format.js";

export function createSession(app) {
  const { state, views, ringer } = app;

  function showSignin(message = null) {
    $("app").hidden = true;
    $("signin").hidden = false;
    const err = $("signin-error");
    err.hidden = !message;
    err.textContent = message ?? "";
    document.title = "Sign in · Callin agent console";
    $("username").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    ringer.unlock(); // a user gesture: the ring can play later
    const username = $("username").value.trim();
    const password = $("password").value;
    const err = $("signin-error");
    if (!username || !password) {
      err.hidden = false;
      err.textContent = "Enter your username and password.";
      return;
    }
    const button = $("signin-button");
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const response = await fetch("/api/v1/agent/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password, cookie_only: true }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new CallinError(body.code || "login_failed", body.code === "bad_credentials" ? "Wrong username or password." : body.reason || `Sign-in failed (${response.status}).`);
      }
      state.account = body.agent;
      keepSessionAlive(body.expires_in);
      $("password").value = "";
      await start();
    } catch (e) {
      err.hidden = false;
      err.textContent = e instanceof CallinError ? e.reason : "Can't reach the gateway. Check your connection.";
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  }

  async function signOut() {
    state.closing = true;
    if (state.call) await views.call.hangup();
    await views.supervise.stopSupervising(true);
    await state.signal?.bye(2000);
    state.signal = null;
    try {
      await fetch("/api/v1/agent/logout", { method: "POST" }); // ends the session on the server too
    } catch {
      /* the session ends on its own */
    }
    clearInterval(state.refreshTimer);
    state.account = null;
    views.call.dropSpare();
    ringer.stop();
    showSignin();
  }

  // ------------------------------------------------------------------------------------------------ connection
  /** A new agent session (callin-agent.js keeps it: hello, resume with last_seq, pings, back-off); this page shows
   * what happens to it. */
  function openSession() {
    state.signal?.close();
    const session = new CallinAgentSession({ url: agentSocketUrl(location.href) });
    session.addEventListener("message", (e) => views.messages.onMessage(e.detail));
    session.addEventListener("reconnecting", (e) => {
      if (session !== state.signal || state.closing) return;
      views.status.setStatus("offline");
      banner(`Connection lost. Reconnecting${e.detail.attempt > 1 ? ` (attempt ${e.detail.attempt})` : ""}…`);
    });
    session.addEventListener("reconnected", (e) => {
      if (session !== state.signal) return;
      state.welcome = e.detail.welcome;
      banner(null);
      views.status.setStatus(e.detail.welcome.agent?.status ?? "away");
      toast("Reconnected.");
      if (state.tab === "wallboard") views.wallboard.subscribeWallboard();
    });
    session.addEventListener("disconnected", (e) => onSessionLost(session, e.detail));
    state.signal = session;
    return session;
  }

  async function start() {
    state.closing = false;
    $("signin").hidden = true;
    $("app").hidden = false;
    views.shell.renderMe();
    let welcome;
    try {
      welcome = await openSession().connect();
    } catch (e) {
      if (SESSION_ENDED.includes(e.code)) {
        showSignin("Your session has expired. Please sign in again.");
        return;
      }
      if (e.code === "shutting_down") {
        // This node is draining (the load balancer has not taken it out yet): the next attempt reaches another.
        banner("The gateway is restarting. Reconnecting shortly…", { bad: true });
        views.status.setStatus("offline");
        await sleep(1000 + Math.random() * 1000);
        if (!state.closing) start();
        return;
      }
      banner("Can't reach the gateway.", { bad: true, action: { label: "Retry", run: () => start() } });
      views.status.setStatus("offline");
      return;
    }
    state.welcome = welcome;
    banner(null);
    views.status.setStatus(welcome.agent?.status ?? "away");
    if (welcome.call && welcome.call.state === "connected") {
      // A reload during a call: the gateway kept the call, this page's media is gone: set it up again.
      await views.call.rejoinCall(welcome.call);
    } else if (welcome.call && welcome.call.state === "offered") {
      views.ringing.onOffered({ call_id: welcome.call.call_id, card: welcome.call.card, ring_timeout_s: 15 });
    } else {
      views.shell.show("idle");
    }
    ringer.unlock(); // without a click since the page loaded the browser may keep it suspended: then the console says so
    views.alerts.renderSoundBlocked();
    views.devices.checkMicPermission();
    views.inbox.loadInbox();
  }

  /** The session could not go on over this socket (see callin-agent.js "disconnected"). */
  async function onSessionLost(session, { reason, retryAfterS }) {
    if (session !== state.signal || state.closing) return;
    views.status.setStatus("offline");
    if (reason === "shutdown") {
      // The gateway is restarting: nothing to resume; sign in to the new process after its retry-after hint.
      if (state.call) views.wrapup.endCallView({ reason: "shutdown", by: "system" });
      banner("The gateway is restarting. Reconnecting shortly…", { bad: true });
      await sleep(Math.max(1000, (retryAfterS ?? 5) * 1000));
      if (!state.closing && session === state.signal) start();
      return;
    }
    if (reason === "session_ended") {
      showSignin("Your session has expired. Please sign in again.");
      return;
    }
    if (reason === "replaced") {
      banner("This session continues on another connection.", { bad: true, action: { label: "Use this console", run: () => start() } });
      return;
    }
    if (state.call) views.wrapup.endCallView({ reason: "agent_disconnected", by: "system" });
    banner("Disconnected from the gateway.", { bad: true, action: { label: "Reconnect", run: () => start() } });
  }

  /** A reload keeps the sign-in: the cookie is still there; ask the gateway whose it is. */
  async function resumeSignedIn() {
    try {
      const response = await fetch("/api/v1/agent/session");
      if (response.ok) {
        const session = await response.json();
        state.account = session.agent;
        keepSessionAlive(session.expires_in);
        start();
        return;
      }
    } catch {
      /* gateway unreachable: sign in again */
    }
    showSignin();
  }

  /** Sessions end a while after their last refresh: refresh while the console is open. */
  function keepSessionAlive(expiresIn) {
    clearInterval(state.refreshTimer);
    const every = Math.max(20, Math.floor((expiresIn || 1800) / 3)) * 1000;
    state.refreshTimer = setInterval(async () => {
      try {
        const response = await fetch("/api/v1/agent/refresh", { method: "POST" });
        if (response.status === 401) {
          clearInterval(state.refreshTimer);
          state.signal?.close();
          showSignin("Your session has ended. Please sign in again.");
        }
      } catch {
        /* offline for a moment: the next refresh will tell */
      }
    }, every);
  }

  /** Wire this view's controls (once, at start). */
  function mount() {
    $("signin-form").addEventListener("submit", signIn);
    $("signout-button").innerHTML = icon("log-out", { size: 18 });
    $("signout-button").addEventListener("click", signOut);
    window.addEventListener("beforeunload", () => {
      if (state.signal?.open && !state.call) {
        state.closing = true;
        state.signal.send({ type: "bye", id: "unload" });
      }
    });
  }

  return { showSignin, signIn, signOut, openSession, start, onSessionLost, resumeSignedIn, keepSessionAlive, mount };
}
