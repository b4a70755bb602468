"""Issue 18, the caller's side in real Chromium: what a caller on a phone sees in each state, and that it is true.

A blocked camera on a video call (told to the caller with how to allow it, and to the agent), the waiting screen
(no "no one is available" while an agent is rung: "Connecting you to Alice…", and back to the line when the ring
ends), no "Weak connection" on hold, a network drop that says how long the call is held, the launcher's count of
what arrived while minimized and the collapsed tray of shared content, a phone on its side (844 x 390) with End and
Mute on screen, screen sharing (a banner with Stop, back to the camera), a supervisor barging in, and a gateway that
cannot be reached before any call.

Screenshots (phone portrait 390 x 844 and landscape 844 x 390) land in artifacts/screenshots/caller-ux-*.png.
Run inside a loopback-only network namespace (scripts/test.sh), one browser call at a time.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, async_playwright, expect

from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    console_stats,
    eventually,
    new_page,
    open_console,
    open_demo,
    open_widget,
    shot,
    widget,
)
from tests.support.clients import Agent
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser

PORTRAIT = {"width": 390, "height": 844}
LANDSCAPE = {"width": 844, "height": 390}


# Chromium that asks before the camera and microphone (no --use-fake-ui-for-media-stream, which allows everything):
# a permission the context was not granted is refused, as when a user taps "Block".
ASKING_ARGS = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]


async def phone(browser, base_url: str, *, permissions: list[str] | None = None) -> tuple[Any, Page]:
    """A phone-sized page; with `permissions`, only those are granted (in a browser that asks, the rest is refused)."""
    options: dict[str, Any] = {"viewport": PORTRAIT, "base_url": base_url, "device_scale_factor": 2, "has_touch": True}
    if permissions is not None:
        options["permissions"] = permissions
    ctx = await browser.new_context(**options)
    page = await ctx.new_page()
    page.set_default_timeout(15000)
    page.on("pageerror", lambda exc: print(f"[phone page error] {exc}"))
    return ctx, page


async def on_screen(page: Page, selector: str) -> bool:
    """The element is laid out entirely inside the viewport (not pushed off by the layout)."""
    box = await widget(page, selector).bounding_box()
    size = page.viewport_size
    return bool(box) and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5 \
        and box["y"] + box["height"] <= size["height"] + 0.5


async def no_overlap(page: Page, first: str, second: str) -> bool:
    a = await widget(page, first).bounding_box()
    b = await widget(page, second).bounding_box()
    assert a and b, (first, second, a, b)
    return a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"] or \
        a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]


async def both_orientations(page: Page, name: str) -> None:
    """Screenshots of the state in portrait and landscape; End and Mute stay on screen in both."""
    for label, size in (("portrait", PORTRAIT), ("landscape", LANDSCAPE)):
        await page.set_viewport_size(size)
        await expect(widget(page, '[data-action="hangup"]')).to_be_visible()
        await shot(page, f"caller-ux-{name}-{label}")
        await eventually(lambda: on_screen(page, '[data-action="hangup"]'), what=f"End on screen ({label})")
        await eventually(lambda: on_screen(page, '[data-action="mute"]'), what=f"Mute on screen ({label})")
    await page.set_viewport_size(PORTRAIT)


async def agent_frames(agent: Page) -> int:
    stats = await console_stats(agent)
    return ((stats or {}).get("videoIn") or {}).get("framesDecoded", 0)


async def test_blocked_camera_waiting_ringing_hold_and_landscape():
    async with running_gateway(reoffer_after_decline_s=1.0) as gw, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ASKING_ARGS)
        # The camera is refused (only the microphone is allowed): the video call goes on as a voice call, and the
        # caller is told so, with how to allow the camera.
        caller_ctx, caller = await phone(browser, gw.base_url, permissions=["microphone"])
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="video"]').click()
        note = widget(caller, ".cam-note")
        await expect(note).to_be_visible()
        await expect(note.locator(".cam-title")).to_have_text("Your camera is blocked: this is a voice call")
        await expect(note.locator(".cam-text")).to_contain_text("allow Camera")
        assert await caller.evaluate("Callin.widgets[0].client.videoSource") is None
        call_id = await eventually(lambda: caller.evaluate("Callin.widgets[0].client.callId"), what="the call id")
        # The gateway knows, so the agent will: "voice — caller's camera blocked".
        await eventually(lambda: gw.board.calls[call_id].card()["media_source_reason"] == "camera_blocked",
                         what="the card's media_source_reason")

        # Nobody is signed in: the waiting screen says so, and that is true.
        await expect(widget(caller, ".presence .who")).to_have_text("You are number 1 in line")
        await expect(widget(caller, ".offer-card")).to_be_visible()
        await expect(widget(caller, ".offer-card .oc-body b")).to_have_text("No one is available right now")
        assert await no_overlap(caller, ".offer-card", ".presence .sub")
        await both_orientations(caller, "waiting-nobody-signed-in")

        # Alice signs in: the call rings at her console. The caller sees who is being rung, not "no one is
        # available"; the console's chip says the caller's camera is blocked.
        agent_ctx = await browser.new_context(viewport=DESKTOP, base_url=gw.base_url,
                                              permissions=["microphone", "camera"])
        agent = await agent_ctx.new_page()
        await open_console(agent, available=False)
        await agent.click("#go-available")
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await expect(widget(caller, ".presence .who")).to_have_text("Connecting you to Alice (demo agent)…")
        await expect(widget(caller, ".presence .status")).to_have_text("Their phone is ringing")
        await expect(widget(caller, ".offer-card")).to_be_hidden()
        await both_orientations(caller, "ringing")

        # She declines: the caller is back in line (place and wait, no stale "connecting"); then it rings again.
        await agent.click("#decline-button")
        await expect(widget(caller, ".presence .who")).to_have_text("You are number 1 in line")
        await expect(widget(caller, ".presence .status")).not_to_have_text("Their phone is ringing")
        await expect(agent.locator("#view-ringing")).to_be_visible(timeout=10000)
        await expect(widget(caller, ".presence .who")).to_have_text("Connecting you to Alice (demo agent)…")
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()
        await expect(agent.locator("#call-type")).to_have_text("Voice — caller's camera blocked")
        await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")
        await expect(widget(caller, ".cam-note")).to_be_visible()  # still true: the camera is still blocked
        await shot(agent, "caller-ux-console-camera-blocked")
        await both_orientations(caller, "connected-camera-blocked")

        # Hold: nothing flows, and that is not a weak connection. The widget has seen nothing arrive for longer
        # than it takes to call a connection weak, and says "on hold", not "weak connection".
        await agent.click("#hold-button")
        await expect(widget(caller, ".overlay .ov-title")).to_have_text("You're on hold")
        await eventually(lambda: caller.evaluate(
            "Number(document.querySelector('callin-widget').shadowRoot.querySelector('.panel').dataset.silentFor) >= 4"),
            timeout=20, what="four seconds of silence on hold")
        await expect(widget(caller, ".net-chip")).to_be_hidden()
        await shot(caller, "caller-ux-hold-no-weak-connection-portrait")
        await agent.click("#hold-button")
        await expect(widget(caller, ".overlay")).to_be_hidden()
        await eventually(lambda: caller.evaluate(
            "document.querySelector('callin-widget').shadowRoot.querySelector('.panel').dataset.inbound === 'flowing'"),
            what="the agent's audio flowing again")
        await expect(widget(caller, ".net-chip")).to_be_hidden()
        await widget(caller, '[data-action="hangup"]').click()
        await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")
        await agent_ctx.close()
        await caller_ctx.close()
        await browser.close()


async def test_screen_share_banner_barge_notice_launcher_count_and_tray(browser):
    async with running_gateway() as gw:
        agent_ctx, agent = await new_page(browser, gw.base_url, viewport=DESKTOP)
        caller_ctx, caller = await phone(browser, gw.base_url)
        await open_console(agent)
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="video"]').click()
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await agent.click("#accept-button")
        await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")
        await eventually(lambda: agent_frames(agent), what="the caller's camera at the agent")
        await expect(widget(caller, ".presence .sub")).to_have_text("Alice can see your camera")
        call_id = (await agent.evaluate("callinConsole.state"))["callId"]

        # Share the screen: a banner that stays, says so, and stops it; the text says "screen", not "camera".
        await widget(caller, '[data-action="screen"]').click()
        await expect(widget(caller, ".share-note")).to_be_visible()
        await expect(widget(caller, ".share-note")).to_contain_text("You're sharing your screen")
        await expect(widget(caller, ".presence .sub")).to_have_text("Alice can see your screen")
        await expect(agent.locator("#call-type")).to_contain_text(re.compile("sharing the screen", re.I))  # the chip: "Sharing the screen · was a video call"
        await both_orientations(caller, "sharing-screen")
        # Stop in the banner: back to the camera (not to no video), and the agent gets frames again.
        await widget(caller, '.share-note [data-action="stop-share"]').click()
        await eventually(lambda: caller.evaluate("Callin.widgets[0].client.videoSource === 'camera'"),
                         what="the camera back after the share")
        await expect(widget(caller, ".share-note")).to_be_hidden()
        await expect(widget(caller, ".presence .sub")).to_have_text("Alice can see your camera")
        await expect(widget(caller, ".self")).to_be_visible()
        assert gw.board.calls[call_id].media_source == "camera"
        before = await agent_frames(agent)
        await eventually(lambda: _more(agent_frames(agent), before + 30), what="the camera's frames at the agent")
        # The Screen button's "Stop share" does the same.
        await widget(caller, '[data-action="screen"]').click()
        await expect(widget(caller, ".share-note")).to_be_visible()
        await widget(caller, '[data-action="screen"]').click()
        await eventually(lambda: caller.evaluate("Callin.widgets[0].client.videoSource === 'camera'"),
                         what="the camera back after Stop share")
        await expect(widget(caller, ".share-note")).to_be_hidden()

        # A supervisor barges in: the caller hears a new voice and is told who it is; told again when they go.
        sam = Agent(gw.base_url, "sam", "sam-demo")
        await sam.connect(available=False)
        await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
        await sam.ws.request({"type": "ping"})
        await expect(widget(caller, ".barge-note")).to_be_hidden()  # listening in silently is not told
        await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
        note = widget(caller, ".barge-note")
        await expect(note).to_be_visible()
        await expect(note.locator(".barge-title")).to_have_text("A supervisor joined the call")
        await expect(note.locator(".barge-text")).to_have_text(
            "You can hear Sam (demo supervisor) and they can hear you.")
        await both_orientations(caller, "supervisor-barged-in")
        await sam.ws.request({"type": "supervise.stop", "call_id": call_id})
        await expect(note).to_be_hidden()
        await sam.close()

        # Minimized: what the agent shares or writes meanwhile is counted on the button.
        await widget(caller, '.bar [data-action="minimize"]').click()
        await expect(widget(caller, ".panel")).to_be_hidden()
        await expect(widget(caller, ".launch-count")).to_be_hidden()
        await agent.click("#stab-share")
        for title, url in (("Reset your PIN", "https://bank.example/pin"), ("Card limits", "https://bank.example/limits")):
            await agent.fill("#share-title", title)
            await agent.fill("#share-url", url)
            await agent.click("#share-send")
            await expect(agent.locator("#pushed-list .pushed-item", has_text=title)).to_be_visible()
        await agent.click("#stab-chat")
        await agent.fill("#chat-input", "I've sent you two links.")
        await agent.click("#chat-send")
        count = widget(caller, ".launch-count")
        await expect(count).to_have_text("3")
        await expect(widget(caller, ".launcher")).to_have_attribute("aria-label", "Return to your call (3 new)")
        await shot(caller, "caller-ux-minimized-count-portrait")
        await widget(caller, ".launcher").click()
        await expect(count).to_be_hidden()

        # The shared cards collapse to the newest one and a count: the video keeps its room.
        await expect(widget(caller, ".tray .pushed")).to_have_count(2)
        await expect(widget(caller, ".tray .pushed").first.locator(".p-title")).to_have_text("Card limits")
        await expect(widget(caller, ".tray .pushed").nth(1)).to_be_hidden()
        await expect(widget(caller, ".tray-toggle")).to_have_text("Shared by the agent (2) · show all")
        stage = await widget(caller, ".stage").bounding_box()
        assert stage["height"] >= 0.4 * PORTRAIT["height"], stage
        await both_orientations(caller, "shared-tray-collapsed")
        await widget(caller, ".tray-toggle").click()
        await expect(widget(caller, ".tray .pushed").nth(1)).to_be_visible()
        await expect(widget(caller, ".tray-toggle")).to_have_attribute("aria-expanded", "true")
        await shot(caller, "caller-ux-shared-tray-expanded-portrait")
        await widget(caller, '[data-action="hangup"]').click()
        await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")
        await agent_ctx.close()
        await caller_ctx.close()


async def _more(read, threshold: int) -> bool:
    return (await read) >= threshold


async def test_network_drop_says_how_long_the_call_is_held_and_comes_back(browser):
    async with running_gateway(resume_grace_s=30) as gw:
        caller_ctx, caller = await phone(browser, gw.base_url)
        # Every caller socket of the page goes through this relay; while `cut`, new sockets are closed at once
        # (the network is down), so the widget keeps trying within the grace.
        cut = {"on": False}
        sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []

        async def relay(page_side: WebSocketRoute) -> None:
            if cut["on"]:
                await page_side.close(code=4000, reason="test: network down")
                return
            server_side = page_side.connect_to_server()
            sockets.append((page_side, server_side))
            server_side.on_message(lambda m: page_side.send(m))
            page_side.on_message(lambda m: server_side.send(m))

        await caller.route_web_socket("**/ws/caller", relay)
        agent = Agent(gw.base_url)
        await agent.connect()
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="voice"]').click()
        offer = await agent.wait_offer(timeout=15)
        await agent.accept(offer["call_id"])
        await expect(widget(caller, ".presence .status")).to_have_text("Connected")
        # The media is up (a drop while the call is still being set up is another story: see the report).
        await eventually(lambda: caller.evaluate("Callin.widgets[0].client.peerConnection?.connectionState === 'connected'"),
                         what="the caller's media connected")

        # The network drops: one message, how long the call is held (the gateway's resume_grace_s), counting
        # down, and no "Connected" left under it.
        cut["on"] = True
        page_side, server_side = sockets[-1]
        await server_side.close()
        await page_side.close(code=4000, reason="test: network down")
        banner = widget(caller, ".banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_have_text(_held_text())
        await expect(widget(caller, ".presence .status")).to_be_hidden()
        await expect(widget(caller, ".presence .sub")).to_be_hidden()
        for size in (PORTRAIT, LANDSCAPE):
            await caller.set_viewport_size(size)
            assert await no_overlap(caller, ".banner", ".presence h3")
        await both_orientations(caller, "reconnecting")
        first = int((await banner.text_content()).split("held for ")[1].split(" ")[0])
        await eventually(lambda: _counts_down(banner, first), what="the grace counting down")

        # The network is back: the call resumes, the banner goes, "Connected" is back.
        cut["on"] = False
        await expect(banner).to_be_hidden(timeout=15000)
        await expect(widget(caller, ".presence .status")).to_be_visible()
        await expect(widget(caller, ".presence .status")).to_have_text("Connected")
        assert await caller.evaluate("Callin.widgets[0].client.state") == "connected"
        await widget(caller, '[data-action="hangup"]').click()
        await expect(widget(caller, ".ended-text")).to_have_text("You ended the call.")
        await agent.close()
        await caller_ctx.close()


def _held_text():
    import re

    return re.compile(r"^Reconnecting… your call is held for (30|[12]\d) s$")


async def _counts_down(banner, first: int) -> bool:
    text = await banner.text_content()
    return "held for" in text and int(text.split("held for ")[1].split(" ")[0]) < first


async def test_unreachable_gateway_before_a_call_says_so_and_retries(browser, gateway):
    caller_ctx, caller = await phone(browser, gateway.base_url)
    await open_demo(caller)
    # A widget pointed at a gateway that does not answer (nothing listens on that loopback port).
    await caller.evaluate("""() => {
        const w = Callin.mount({ gateway: "http://127.0.0.1:9", getToken: async () => "unused", label: "Call support" });
        w.open();
    }""")
    lost = caller.locator("callin-widget").nth(1)
    await expect(lost.locator(".err-title")).to_have_text("We can't reach the service")
    await expect(lost.locator(".err-text")).to_contain_text("Your call hasn't started")
    assert "keep the call connected" not in await lost.locator(".err-text").text_content()
    await expect(lost.locator(".panel")).to_have_attribute("data-error", "network_error")
    retry = lost.locator('[data-action="retry"]')
    await expect(retry).to_be_visible()
    for label, size in (("portrait", PORTRAIT), ("landscape", LANDSCAPE)):
        await caller.set_viewport_size(size)
        await expect(retry).to_be_in_viewport(ratio=1)
        await shot(caller, f"caller-ux-unreachable-{label}")
    await caller.set_viewport_size(PORTRAIT)
    # The service is reachable again (here: the right address): Try again gets the caller to the choice.
    await caller.evaluate("""() => Callin.widgets[1].configure({ gateway: location.origin,
        getToken: Callin.widgets[0].options.getToken })""")
    await retry.click()
    await expect(lost.locator('.option[data-call-type="voice"]')).to_be_visible()
    await expect(lost.locator(".err-title")).to_be_hidden()
    await caller_ctx.close()
