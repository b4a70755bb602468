"""The agent session module (web/caller/callin-agent.js, what the console is built on) in real Chromium against the
real gateway: a socket dropped mid-call is resumed with every event handled once and in order, and a session ended
on the server ends the module's session with the reason "session_ended"."""

from __future__ import annotations

import pytest

from tests.e2e.browser import DESKTOP, eventually, new_page
from tests.support.clients import Agent, Caller

pytestmark = pytest.mark.browser

SETUP = """async (token) => {
  const { CallinAgentSession } = await import("/static/caller/callin-agent.js");
  window.log = [];
  window.outcomes = [];
  const s = new CallinAgentSession({ token });
  s.addEventListener("message", (e) => window.log.push(e.detail));
  for (const name of ["reconnecting", "reconnected", "disconnected"]) {
    s.addEventListener(name, (e) => window.outcomes.push({ name, reason: e.detail.reason ?? null }));
  }
  window.session = s;
  const welcome = await s.connect();
  const status = await s.request({ type: "agent.status", status: "available" });
  return { resumed: welcome.resumed, status: status.status, agent: welcome.agent.username };
}"""


async def test_the_agent_module_resumes_a_dropped_socket_and_handles_each_event_once(gateway, browser, caller_token):
    login = Agent(gateway.base_url)  # only for its REST sign-in: the browser page holds the agent's socket
    token = await login.login()
    context, page = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    caller = Caller(gateway.base_url, caller_token(sub="cust-77"))
    try:
        await page.goto("/healthz")  # any page of the gateway's origin
        ready = await page.evaluate(SETUP, token)
        assert ready == {"resumed": False, "status": "available", "agent": "alice"}

        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        call_id = queued["call_id"]
        await eventually(lambda: page.evaluate("window.log.some((m) => m.type === 'call.offered')"),
                         what="the offer at the module")
        accepted = await page.evaluate("(id) => session.request({ type: 'call.accept', call_id: id })", call_id)
        assert accepted["type"] == "call.accepted"
        seq_before = await page.evaluate("session.lastSeq")

        # The server drops the agent's socket without a goodbye; the caller chats while the agent is away.
        session = gateway.board.sessions.get(gateway.board.agents["alice"].session_id)
        await session.sink.__self__.ws.close(code=1001, message=b"test: connection dropped")
        await caller.ws.request({"type": "chat.send", "text": "hello? are you there?"})
        await eventually(lambda: page.evaluate("window.outcomes.some((o) => o.name === 'reconnected')"),
                         what="the module's resume")
        await caller.ws.request({"type": "chat.send", "text": "ah, there you are"})
        await eventually(lambda: page.evaluate("window.log.filter((m) => m.type === 'chat.message').length === 2"),
                         what="both chat lines at the module")
        log = await page.evaluate("window.log")
        lines = [m["message"]["text"] for m in log if m["type"] == "chat.message"]
        assert lines == ["hello? are you there?", "ah, there you are"]  # once each, in order
        seqs = [m["seq"] for m in log if m.get("seq") is not None]
        assert seqs == sorted(set(seqs)) and seqs[-1] > seq_before
        assert await page.evaluate("session.lastSeq") == seqs[-1]
        assert await page.evaluate("session.welcome.resumed") is True
        reply = await page.evaluate("(id) => session.request({ type: 'call.hangup', call_id: id })", call_id)
        assert reply["type"] == "ack"

        # Signed out on the server: the live socket is revoked, the module cannot resume and says why.
        await page.request.post("/api/v1/agent/logout", headers={"Authorization": f"Bearer {token}"})
        await eventually(lambda: page.evaluate("window.outcomes.some((o) => o.name === 'disconnected')"),
                         what="the module giving up")
        outcomes = await page.evaluate("window.outcomes")
        assert outcomes[-1] == {"name": "disconnected", "reason": "session_ended"}, outcomes
        assert await page.evaluate("session.open") is False
    finally:
        await caller.close()
        await context.close()
