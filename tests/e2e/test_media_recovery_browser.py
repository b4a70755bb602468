"""Media recovery in real Chromium (issue 12): the caller widget whose peer connection is torn down sets its media up
again by itself in the same call, and an agent console reloaded mid-call re-attaches its media to the live call.
Media is checked where it arrives: frames and tones at the aiortc peer, getStats in the browser."""

from __future__ import annotations

import time

import pytest
from playwright.async_api import expect

from tests.e2e.browser import DESKTOP, PHONE, console_stats, eventually, new_page, open_console, open_demo, \
    open_widget, shot, widget
from tests.support.clients import Agent, Caller, wait_until

pytestmark = pytest.mark.browser


async def test_a_widget_whose_peer_connection_is_torn_down_recovers_by_itself_in_the_same_call(gateway, browser):
    caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, is_mobile=True)
    agent = Agent(gateway.base_url)
    await agent.connect()
    try:
        await open_demo(caller, "Dana Whitfield")
        await open_widget(caller)
        await caller.evaluate("""(() => {
            const c = Callin.widgets[0].client;
            window.seen = {recovering: [], recovered: []};
            // What the caller reads at each step (the widget's own listeners ran first: they were added with the client).
            const banner = () => {
              const b = Callin.widgets[0].shadowRoot.querySelector('.banner');
              return b.hidden ? null : b.textContent.trim();
            };
            c.addEventListener('mediarecovering', (e) => window.seen.recovering.push({...e.detail, banner: banner()}));
            c.addEventListener('mediarecovered', (e) => window.seen.recovered.push({...e.detail, banner: banner()}));
        })()""")
        await widget(caller, '.option[data-call-type="video"]').click()
        offer = await agent.wait_offer(timeout=15)
        call_id = offer["call_id"]
        await agent.accept(call_id, tone_hz=440)
        assert agent.peer is not None
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].arrivals) >= 15, 15)
        video = agent.peer.sinks["video"]
        mark = len(agent.ws.messages)

        # The page's peer connection goes away under the client (as a crashed media stack would): no event fires.
        await caller.evaluate("Callin.widgets[0].client.peerConnection.close()")
        torn_at = time.monotonic()

        await eventually(lambda: caller.evaluate("window.seen.recovered.length > 0"), timeout=10,
                         what="the widget's media recovery")
        seen = await caller.evaluate("window.seen")
        assert seen["recovering"][0]["banner"] == "Restoring sound and video…", seen
        assert seen["recovered"][-1]["banner"] is None, seen  # nothing left on the picture once it is back
        await wait_until(lambda: any(at > torn_at + 0.05 for at in video.arrivals), 10)
        took = next(at for at in video.arrivals if at > torn_at + 0.05) - torn_at
        assert took < 3.0, f"the caller's video came back at the agent after {took:.2f} s"
        await wait_until(lambda: sum(at > torn_at + 0.05 for at in video.arrivals) >= 20, 10)
        sink = agent.peer.slots["audio"]
        audio_mark = sink.mark()
        await wait_until(lambda: sink.audio_since(audio_mark) >= 25, 5)

        # The agent's tone reaches the page over the new peer connection.
        async def audio_in() -> int:
            stats = await caller.evaluate("Callin.widgets[0].client.getStats()")
            return ((stats or {}).get("audioIn") or {}).get("packetsReceived", 0)

        first = await audio_in()
        await eventually(lambda: _grew(audio_in, first + 25), timeout=10, what="the agent's audio at the caller")

        state = await caller.evaluate("({id: Callin.widgets[0].client.callId, state: Callin.widgets[0].client.state,"
                                      " pc: Callin.widgets[0].client.peerConnection.connectionState})")
        assert state == {"id": call_id, "state": "connected", "pc": "connected"}, state
        assert gateway.board.calls[call_id].state.value == "connected"
        told = [(m["type"], m["cause"]) for m in agent.ws.messages[mark:] if m.get("type", "").startswith("participant.")]
        assert ("participant.reconnected", "media") in told, told
        await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")
        await shot(caller, "recovery-widget-after-teardown")
    finally:
        await agent.close()
        await caller_ctx.close()


async def _grew(read, threshold: int) -> bool:
    return await read() >= threshold


async def test_a_console_reloaded_mid_call_reattaches_its_media_to_the_live_call(gateway, browser, caller_token):
    agent_ctx, agent = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    caller = Caller(gateway.base_url, caller_token(sub="patient"))
    try:
        await open_console(agent)
        await caller.connect()
        await caller.start("video", tone_hz=880, receive_video=False)
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await agent.click("#accept-button")
        await wait_until(lambda: "audio" in caller.peer.slots, 15)
        heard = caller.peer.slots["audio"]
        await wait_until(lambda: heard.audio_since(0) >= 25, 10)
        call_id = caller.call_id
        answered_at = gateway.board.calls[call_id].answered_at
        await wait_until(lambda: time.time() - answered_at >= 4, 10)  # old enough that a timer from 0:00 shows

        await agent.reload()
        reloaded_at = time.monotonic()
        await agent.wait_for_selector("#app:not([hidden])")
        await expect(agent.locator("#view-call")).to_be_visible()
        # The call timer goes on from the gateway's count (it used to start again at 0:00).
        minutes, seconds = (await agent.locator("#call-timer").text_content()).split(":")
        shown = int(minutes) * 60 + int(seconds)
        assert shown >= time.time() - answered_at - 2, (shown, time.time() - answered_at)
        # The console's microphone reaches the caller again, the caller's video the console.
        mark = heard.mark()
        await wait_until(lambda: heard.audio_since(mark) >= 25, 15)

        async def frames() -> int:
            stats = await console_stats(agent)
            return ((stats or {}).get("videoIn") or {}).get("framesDecoded", 0)

        await eventually(lambda: _grew(frames, 10), timeout=15, what="the caller's video in the reloaded console")
        assert time.monotonic() - reloaded_at < 15
        assert gateway.board.calls[call_id].state.value == "connected"
        relay = gateway.board.relays[call_id]
        assert relay.replaced.get("alice") == 1, relay.replaced
        await expect(agent.locator("#view-stale")).to_be_hidden()
        await shot(agent, "recovery-console-after-reload")
        await agent.click("#hangup-button")
        ended = await caller.ws.wait("call.ended", timeout=10)
        assert ended["reason"] == "agent_hangup"
    finally:
        await caller.close()
        await agent_ctx.close()
