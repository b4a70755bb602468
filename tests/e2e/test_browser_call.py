"""Real calls in real Chromium: the demo app's widget calls, the agent console answers.

Run inside a loopback-only network namespace, one browser call at a time:
    unshare -rn sh -c 'ip link set lo up; python -m pytest tests/e2e -x -q'
Screenshots land in artifacts/screenshots/ (phone size for the caller, desktop for the console).
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from tests.e2e.browser import (
    DESKTOP,
    PHONE,
    POSITION,
    caller_state,
    caller_stats,
    console_state,
    console_stats,
    eventually,
    new_page,
    open_console,
    open_demo,
    open_widget,
    shot,
    widget,
)

pytestmark = pytest.mark.browser


async def rising(read, key: str, what: str, by: int = 10, timeout: float = 10) -> tuple[int, int]:
    """Two readings of a counter at least `by` apart (media keeps flowing), returned as (first, later)."""
    first = await read()
    assert first is not None, f"no stats for {what}"
    start = key_of(first, key)
    later = await eventually(lambda: _above(read, key, start + by), timeout=timeout, what=f"{what} rising past {start + by}")
    return start, later


async def _above(read, key: str, threshold: int):
    stats = await read()
    value = key_of(stats, key) if stats else 0
    return value if value >= threshold else None


def key_of(stats: dict, path: str) -> int:
    node = stats
    for part in path.split("."):
        node = (node or {}).get(part)
    return node or 0


async def agent_video(page: Page) -> dict:
    stats = await console_stats(page)
    size = await page.evaluate("(() => { const v = document.getElementById('remote-video'); return [v.videoWidth, v.videoHeight]; })()")
    video = (stats or {}).get("videoIn") or {}
    return {"frames": video.get("framesDecoded", 0), "width": video.get("frameWidth", 0),
            "height": video.get("frameHeight", 0), "element": size}


async def test_video_call_card_media_screen_switch_and_caller_hangup(gateway, browser):
    agent_ctx, agent = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, geolocation=POSITION, is_mobile=True)
    await open_console(agent)
    await open_demo(caller, "Dana Whitfield")
    await open_widget(caller)
    await expect(widget(caller, ".who-name")).to_have_text("Dana Whitfield")

    await widget(caller, '.option[data-call-type="video"]').click()

    # The agent's console rings, with the caller's card.
    await expect(agent.locator("#view-ringing")).to_be_visible()
    await expect(agent.locator("#ring-name")).to_contain_text("Dana Whitfield")
    card = agent.locator("#card")
    await expect(card.locator('[data-testid="caller-name"]')).to_have_text("Dana Whitfield")
    await expect(card).to_contain_text("Verified by integrator signature")
    await expect(card).to_contain_text("nw-cust-1187")
    await expect(card).to_contain_text("Premier")
    location = card.locator('[data-testid="location"]')
    await expect(location).to_contain_text("52.52192, 13.41321")
    await expect(location).to_contain_text("±18 m accuracy")
    href = await location.locator("a").get_attribute("href")
    assert href.startswith("https://www.openstreetmap.org/?mlat=52.52192&mlon=13.41321"), href
    await expect(card).to_contain_text("Cards › Visa Debit •••• 4821 (blocked)")
    await expect(card).to_contain_text("NW-2048-1187")
    await expect(card.locator(".steps li").last).to_have_text("Tapped “Call us”")
    await expect(agent.locator("#status-pill")).to_have_attribute("data-status", "ringing")
    # The caller sees who its call rings at (issue 18), not just its place in line.
    await expect(widget(caller, ".presence .who")).to_have_text("Connecting you to Alice (demo agent)…")
    await shot(agent, "console-ring")
    await shot(caller, "caller-ring")

    # Accept with the keyboard shortcut.
    await agent.keyboard.press("a")
    await expect(agent.locator("#view-call")).to_be_visible()
    await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")
    call_id = (await console_state(agent))["callId"]
    assert call_id and list(gateway.board.calls) == [call_id]

    # The agent's video element plays the caller's camera; the caller hears the agent.
    await eventually(lambda: _playing(agent), what="the caller's video at the agent")
    await rising(lambda: agent_video(agent), "frames", "the caller's video frames at the agent", by=20)
    after = await agent_video(agent)
    assert after["width"] > 0 and after["height"] > 0 and after["element"][0] > 0, after
    assert after["width"] * 3 == pytest.approx(after["height"] * 4, rel=0.05), after  # the 4:3 fake camera
    await rising(lambda: caller_stats(caller), "audioIn.packetsReceived", "agent audio at the caller", by=50)
    await rising(lambda: console_stats(agent), "audioIn.packetsReceived", "caller audio at the agent", by=50)
    await expect(agent.locator("#quality")).not_to_have_attribute("data-quality", "unknown")
    await shot(agent, "console-in-call")
    await shot(caller, "caller-in-call")

    # The caller switches to screen sharing: same call, video keeps playing, at the screen's size.
    await widget(caller, '[data-action="screen"]').click()
    await eventually(lambda: caller.evaluate("Callin.widgets[0].client.videoSource === 'screen'"), what="screen share")
    await expect(widget(caller, '[data-action="screen"]')).to_have_attribute("aria-pressed", "true")
    # The screen is 16:9 (the fake camera 4:3): the agent's decoder gets the screen's picture.
    switched = await eventually(lambda: _wide(agent), timeout=15, what="the screen's 16:9 frames at the agent")
    await rising(lambda: console_stats(agent), "videoIn.framesDecoded", "frames after the switch", by=20)
    assert (await console_state(agent))["callId"] == call_id
    assert list(gateway.board.calls) == [call_id], "switching to the screen must not start a new call"
    assert await caller_state(caller) == "connected"
    # The widget told the gateway (media.source): the console's call-type chip says what the agent now sees.
    await expect(agent.locator("#call-type")).to_have_text("Sharing the screen · was a video call")
    assert gateway.board.calls[call_id].media_source == "screen"
    await asyncio.sleep(1)  # let the stage show the new picture for the screenshot
    await shot(agent, "console-screen-share")
    await shot(caller, "caller-screen-share")
    assert switched["element"][0] * 9 == pytest.approx(switched["element"][1] * 16, rel=0.05), switched

    # The caller hangs up: both pages end the call.
    await widget(caller, '[data-action="hangup"]').click()
    await expect(agent.locator("#view-ended")).to_be_visible()
    await expect(agent.locator("#ended-text")).to_have_text("The caller hung up.")
    await expect(widget(caller, '.view[data-view="ended"]')).to_be_visible()
    await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")
    await expect(agent.locator("#status-pill")).to_have_attribute("data-status", "available")
    await expect(agent.locator("#history li")).to_have_count(1)
    assert await caller_state(caller) == "ended"
    await eventually(lambda: not gateway.board.relays, what="the relay closed")
    await shot(agent, "console-ended")
    await shot(caller, "caller-ended")
    await caller_ctx.close()
    await agent_ctx.close()


async def _playing(agent: Page):
    video = await agent_video(agent)
    return video if video["frames"] > 0 and video["width"] > 0 and video["element"][0] > 0 else None


async def _wide(agent: Page):
    video = await agent_video(agent)
    wide = video["height"] and abs(video["width"] / video["height"] - 16 / 9) < 0.05
    return video if wide and video["element"][1] and abs(video["element"][0] / video["element"][1] - 16 / 9) < 0.05 else None


async def test_refused_location_still_connects_and_agent_hangup_ends_both(gateway, browser):
    agent_ctx, agent = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, is_mobile=True)  # no geolocation
    await open_console(agent, "bob", "bob-demo")
    await open_demo(caller, "Sam Okafor")
    await open_widget(caller)
    await widget(caller, '.option[data-call-type="voice"]').click()

    await expect(agent.locator("#view-ringing")).to_be_visible()
    await expect(agent.locator('#card [data-testid="caller-name"]')).to_have_text("Sam Okafor")
    await expect(agent.locator('#card [data-testid="location"]')).to_have_text("Location not shared")
    await expect(agent.locator("#ring-sub")).to_contain_text("location not shared")
    await expect(widget(caller, ".loc-chip")).to_have_text("Location not shared")
    await shot(agent, "console-ring-no-location")

    await agent.click("#accept-button")
    await expect(widget(caller, ".presence .who")).to_have_text("Bob (demo agent)")
    await rising(lambda: caller_stats(caller), "audioIn.packetsReceived", "agent audio at the caller", by=50)
    await rising(lambda: console_stats(agent), "audioIn.packetsReceived", "caller audio at the agent", by=50)
    await expect(agent.locator("#ph-text")).to_have_text("Voice call")
    call_id = (await console_state(agent))["callId"]

    # Both sockets drop (as on a network change): each page resumes its session with its resume token and
    # keeps the same call; the peer connections never depended on the sockets.
    # Counted by the client's own events (a resume on loopback can be over before a poll sees it reconnecting).
    await caller.evaluate("""() => { window.__resumes = 0; Callin.widgets[0].client.addEventListener(
        'reconnected', (e) => { if (e.detail.resumed) window.__resumes += 1; }); }""")
    await drop_socket(gateway, gateway.board.calls[call_id].caller_session)
    await drop_socket(gateway, gateway.board.agents["bob"].session_id)
    await eventually(lambda: caller.evaluate("window.__resumes >= 1"), what="the widget's session resumed")
    await eventually(lambda: _resumed(caller), what="the widget connected again")
    await expect(agent.locator("#toasts")).to_contain_text("Reconnected.")
    await expect(widget(caller, ".banner")).to_be_hidden()
    assert await caller.evaluate("Callin.widgets[0].client.callId") == call_id
    assert (await console_state(agent))["callId"] == call_id
    await rising(lambda: caller_stats(caller), "audioIn.packetsReceived", "agent audio after the resume", by=25)

    # Mute on both sides (the buttons say so), then the agent hangs up with the H shortcut.
    await agent.keyboard.press("m")
    await expect(agent.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
    await widget(caller, '[data-action="mute"]').click()
    await expect(widget(caller, '[data-action="mute"]')).to_have_attribute("aria-label", "Unmute microphone")
    await shot(agent, "console-voice-in-call")
    await shot(caller, "caller-voice-in-call")
    await agent.keyboard.press("h")
    await expect(agent.locator("#view-ended")).to_be_visible()
    await expect(agent.locator("#ended-text")).to_have_text("You hung up.")
    await expect(widget(caller, '.view[data-view="ended"]')).to_be_visible()
    await expect(widget(caller, ".ended-text")).to_have_text("Bob (demo agent) ended the call.")
    assert await caller_state(caller) == "ended"
    await eventually(lambda: not gateway.board.relays, what="the relay closed")
    await shot(caller, "caller-ended-by-agent")

    # The widget calls again from the same page, with a fresh call and peer connection.
    await widget(caller, '[data-action="again"]').click()
    await widget(caller, '.option[data-call-type="voice"]').click()
    await expect(agent.locator("#view-ringing")).to_be_visible()
    first_ring = (await console_state(agent))["ringing"]
    await agent.click("#decline-button")
    # Bob is the only agent online, so the gateway starts a new round and rings him again.
    # (the new round comes reoffer_after_decline_s = 15 s after the decline: wait longer than that)
    await eventually(lambda: _rings_again(agent, first_ring), timeout=25, what="the call ringing again")
    # The caller gives up while it rings: the ring stops (call.offer_withdrawn).
    await widget(caller, '[data-action="hangup"]').click()
    await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")
    await expect(agent.locator("#view-idle")).to_be_visible()
    assert (await console_state(agent))["ringing"] is None
    await expect(agent.locator("#status-pill")).to_have_attribute("data-status", "available")
    await caller_ctx.close()
    await agent_ctx.close()


async def drop_socket(gateway, session_id: str) -> None:
    """Close a session's WebSocket from the server side, without a goodbye: the client sees a dropped socket."""
    session = gateway.board.sessions.get(session_id)
    assert session is not None and session.sink is not None, "no live socket for this session"
    await session.sink.__self__.ws.close(code=1001, message=b"test: connection dropped")


async def _resumed(caller: Page):
    return await caller.evaluate("(() => { const c = Callin.widgets[0].client; return !c.reconnecting && c.state === 'connected'; })()")


async def _rings_again(agent: Page, first_ring: str):
    state = await console_state(agent)
    visible = await agent.locator("#view-ringing").is_visible()
    return visible and state["ringing"] == first_ring and state["callId"] is None


async def test_error_and_waiting_states(gateway, browser):
    caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, is_mobile=True)

    # No agent is signed in: the caller waits, told its position but no minutes (no estimate).
    # All by keyboard: Enter opens the panel, focus lands on the first way to call, Enter starts it.
    await open_demo(caller)
    await widget(caller, ".launcher").focus()
    await caller.keyboard.press("Enter")
    await expect(widget(caller, '.option[data-call-type="voice"]')).to_be_focused()
    await caller.keyboard.press("Enter")
    await expect(widget(caller, ".presence .who")).to_have_text("You are number 1 in line")
    await expect(widget(caller, '[data-action="mute"]')).to_be_focused()
    await expect(widget(caller, ".presence .sub")).to_contain_text("No agent is free right now")
    assert "minute" not in (await widget(caller, ".presence .status").text_content())
    await shot(caller, "caller-waiting-no-agents")
    # Escape minimizes (the call goes on, the button says so); Enter brings it back.
    await caller.keyboard.press("Escape")
    await expect(widget(caller, ".panel")).to_be_hidden()
    await expect(widget(caller, ".launcher")).to_be_focused()
    await expect(widget(caller, ".launch-label")).to_have_text("Waiting for an agent…")
    await caller.keyboard.press("Enter")
    await expect(widget(caller, ".panel")).to_be_visible()
    await widget(caller, '[data-action="hangup"]').click()
    await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")

    # A token the gateway refuses: a clear "session expired" state, not a broken call.
    await caller.evaluate("""() => {
        const w = Callin.mount({ getToken: async () => "not-a-token", label: "Call support" });
        w.open();
    }""")
    bad = caller.locator("callin-widget").nth(1)
    await expect(bad.locator(".err-title")).to_have_text("Your session has expired")
    await expect(bad.locator(".panel")).to_have_attribute("data-error", "invalid_token")
    await shot(caller, "caller-error-token")

    # The console: a wrong password is explained.
    console_ctx, console = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    await console.goto("/console/")
    await console.fill("#username", "alice")
    await console.fill("#password", "wrong")
    await console.click("#signin-button")
    await expect(console.locator("#signin-error")).to_have_text("Wrong username or password.")
    await shot(console, "console-signin-error")
    await console_ctx.close()
    await caller_ctx.close()
