"""Media while a call rings, in real Chromium: the console's peer connection for a ringing call connects before the
agent answers, receives nothing of the caller until Accept, and is closed with its gateway leg when the agent
declines; Accept then only opens the gate (the first frame follows the accept's round trip, with no ICE or DTLS
after it). The same with real aiortc peers, content-checked: tests/integration/test_ringing_media.py."""

from __future__ import annotations

import pytest

from tests.e2e.browser import DESKTOP, PHONE, POSITION, eventually, new_page, open_console, open_demo, open_widget
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser

INBOUND = """(async () => {
  const pc = callinConsole.ringingPeerConnection;
  if (!pc) return null;
  let packets = 0;
  (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp") packets += r.packetsReceived ?? 0; });
  return { state: pc.connectionState, packets };
})()"""
FIRST_FRAME = """window.__frames = [];
window.addEventListener("callin:firstframe", (e) => window.__frames.push(e.detail));"""


async def test_the_console_connects_while_it_rings_gets_nothing_before_accept_and_declining_closes_it(browser):
    async with running_gateway(reoffer_after_decline_s=1.0) as gateway:
        agent_ctx, agent = await new_page(browser, gateway.base_url, viewport=DESKTOP)
        await agent.add_init_script(FIRST_FRAME)
        await open_console(agent)
        caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, geolocation=POSITION)
        await open_demo(caller)
        await open_widget(caller)
        await caller.locator('callin-widget .option[data-call-type="video"]').click()
        await agent.wait_for_selector("#view-ringing:not([hidden])")
        call_id = await eventually(lambda: agent.evaluate("callinConsole.state.ringing"), what="the ring")
        relay = gateway.board.relays[call_id]

        # Connected while it rings, at the gateway and in the browser, while the caller's video flows in.
        await eventually(lambda: "alice" in relay.legs and relay.legs["alice"].connected.is_set(), what="alice's leg")
        await eventually(lambda: relay.caller is not None and relay.caller.connected.is_set(), what="the caller's leg")
        first = relay.caller.producers["video"].frames
        await eventually(lambda: relay.caller.producers["video"].frames >= first + 30, what="the caller's video")
        seen = await eventually(lambda: agent.evaluate(INBOUND), what="the ringing peer connection")
        assert seen["state"] == "connected", seen
        # Nothing of the caller reached the console that has not accepted.
        assert seen["packets"] == 0, seen
        assert await agent.evaluate("document.getElementById('remote-video').srcObject") is None
        leg = relay.legs["alice"]
        assert sum(c.stats.frames_out for c in leg.consumers.values()) == 0

        # Declined: the console closes its peer connection and the gateway the leg; none is left behind.
        await agent.click("#decline-button")
        await eventually(lambda: "alice" not in relay.legs and leg.closed, what="alice's leg closed")
        assert gateway.board.live.leg_of(call_id, "alice") is None
        assert await agent.evaluate("callinConsole.ringingPeerConnection") is None

        # It rings again (the only agent, after the pause): Accept opens the gate on a connection already up.
        await agent.wait_for_selector("#view-ringing:not([hidden])", timeout=20000)
        await eventually(lambda: "alice" in relay.legs and relay.legs["alice"].connected.is_set(), what="alice's leg again")
        await agent.click("#accept-button")
        frame = await eventually(lambda: agent.evaluate("window.__frames[0] ?? null"), what="the first frame")
        assert frame["callId"] == call_id
        assert frame["timings"]["connected"] < 0, frame  # ICE and DTLS were done before the accept
        # The tracks that arrived while it rang are on screen and heard once accepted.
        await eventually(lambda: agent.evaluate("document.getElementById('remote-video').videoWidth > 0"),
                         what="the caller's video on screen")
        assert await agent.evaluate("Boolean(document.getElementById('remote-audio')?.srcObject)")
        assert set(relay.legs) == {"caller", "alice"}
        await caller.locator('callin-widget [data-action="hangup"]').click()
        await agent.wait_for_selector("#view-ended:not([hidden])")
        await eventually(lambda: call_id not in gateway.board.relays, what="the call's media closed")
        await caller_ctx.close()
        await agent_ctx.close()
