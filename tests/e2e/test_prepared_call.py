"""Issue 18 item 21, the caller's side prepared before the click, in real Chromium (the widget on the demo page).

When the widget opens, its client makes the next call's peer connection (transceivers, offer, ICE candidates) with no
device and nothing sent to the gateway; the click then sends call.start and that offer at once. Where the camera and
microphone are allowed already, the call starts while they start and they join it when up; where the browser may
ask, nothing reaches the gateway before the answer (a refused prompt never rings an agent). A prepared peer
connection is replaced when the network changes; devices that come up after a hang-up are stopped (no camera light),
and a device that fails after the call started ends the call.

The page's getUserMedia is wrapped so that a test can hold the devices back until it lets them go: what happens
meanwhile shows the order of events without any timing. Run inside a loopback-only network namespace.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.e2e.browser import (CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE, POSITION, eventually, new_page, open_console,
                               open_demo, open_widget, shot, widget)
from tests.support.clients import Agent
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser

# What the page does, in order: the types of the messages its WebSockets send, and "media" when getUserMedia hands
# its devices over; every RTCPeerConnection it makes; the devices it got. holdMedia() keeps getUserMedia's answer back
# until releaseMedia(error name or null), holdLocation() the position until releaseLocation() ("position" once the
# page has it).
PROBE = """
window.__events = []; window.__pcs = []; window.__tracks = [];
const NativePeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePeerConnection {
  constructor(...args) { super(...args); window.__pcs.push(this); }
};
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try { window.__events.push(JSON.parse(data).type); } catch { /* not ours */ }
  return send.call(this, data);
};
let held = null;
window.holdMedia = () => { let release; held = new Promise((r) => (release = r)); window.releaseMedia = release; };
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  window.__events.push("getUserMedia");
  const stream = await getUserMedia(constraints);
  window.__tracks.push(...stream.getTracks());
  const failure = held ? await held : null;
  if (failure) {
    stream.getTracks().forEach((t) => t.stop());
    window.__events.push("media failed");
    throw new DOMException("the device is in use", failure);
  }
  window.__events.push("media");
  return stream;
};
let located = null;
window.holdLocation = () => { let release; located = new Promise((r) => (release = r)); window.releaseLocation = release; };
const getCurrentPosition = navigator.geolocation.getCurrentPosition.bind(navigator.geolocation);
navigator.geolocation.getCurrentPosition = (ok, fail, options) => {
  const answered = (pos) => { window.__events.push("position"); ok(pos); };
  (located ?? Promise.resolve()).then(() => getCurrentPosition(answered, fail, options));
};
"""
PREPARED = "performance.getEntriesByName('callin:prepared').length > 0"
# Chromium that asks before the camera and microphone (without --use-fake-ui-for-media-stream, which allows all): a
# permission its context was not granted is refused, as when a user taps "Block".
ASKING_ARGS = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]


async def caller_page(browser, base_url: str, *, permissions: list[str] | None = None) -> tuple[Any, Page]:
    """The demo page on a phone, its widget open and its call prepared. `permissions`: what the site is allowed
    (default: camera, microphone and location)."""
    if permissions is None:
        ctx, page = await new_page(browser, base_url, viewport=PHONE, geolocation=POSITION, is_mobile=True)
    else:
        ctx = await browser.new_context(viewport=PHONE, base_url=base_url, permissions=permissions)
        page = await ctx.new_page()
        page.set_default_timeout(15000)
    await page.add_init_script(PROBE)
    await prepared_widget(page)
    return ctx, page


async def prepared_widget(page: Page) -> None:
    """A fresh demo page, its widget open and its call prepared."""
    await open_demo(page)
    await open_widget(page)
    await eventually(lambda: page.evaluate(PREPARED), what="the call prepared")


async def events(page: Page) -> list[str]:
    return await page.evaluate("window.__events")


def only_call(gateway) -> Any:
    calls = list(gateway.board.calls.values())
    return calls[0] if len(calls) == 1 else None


async def test_the_click_sends_the_prepared_offer_while_the_devices_start(browser):
    async with running_gateway() as gateway:
        agent = Agent(gateway.base_url)
        await agent.connect()
        ctx, page = await caller_page(browser, gateway.base_url)
        try:
            # Before the click: one peer connection with its offer, no device asked for, nothing but the hello sent.
            assert await page.evaluate("window.__pcs.length") == 1
            assert await page.evaluate("window.__pcs[0].signalingState") == "have-local-offer"
            assert await events(page) == ["hello"]
            assert gateway.board.calls == {}

            # The click, the devices held back: the call starts and its offer is answered all the same.
            await page.evaluate("holdMedia()")
            await widget(page, '.option[data-call-type="video"]').click()
            await expect(widget(page, '.view[data-view="call"]')).to_be_visible()
            call = await eventually(lambda: only_call(gateway), what="the call at the gateway")
            await eventually(lambda: page.evaluate("Callin.widgets[0].client.state === 'queued'"), what="queued")
            await eventually(lambda: (relay := gateway.board.relays.get(call.id)) and relay.caller, what="the leg")
            sent = await events(page)
            assert sent[:4] == ["hello", "getUserMedia", "call.start", "sdp.offer"], sent
            assert "media" not in sent
            # The click made no peer connection: the prepared one carries the call.
            assert await page.evaluate("window.__pcs.length === 1 && Callin.widgets[0].client.peerConnection === window.__pcs[0]")

            # The devices come up and join the call: the agent sees the caller's camera.
            await page.evaluate("releaseMedia(null)")
            offer = await agent.wait_offer(timeout=15)
            await agent.accept(offer["call_id"])
            await eventually(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) > 5,
                             timeout=20, what="the caller's video at the agent")
            assert await page.evaluate("Callin.widgets[0].client.videoSource") == "camera"
            assert await page.evaluate("window.__pcs.length") == 1
        finally:
            await ctx.close()
            await agent.close()


async def test_the_call_starts_before_the_location_and_the_console_shows_it_once_granted(browser):
    """Issue 18: the device's position (its consent prompt, then the device: up to 8 s on a phone) no longer holds
    the call back. call.start goes on the click; call.location follows when the browser answers, and the console's
    card (ringing, then in the call) shows it, device-reported with its accuracy."""
    async with running_gateway() as gateway:
        console_ctx, console = await new_page(browser, gateway.base_url, viewport=DESKTOP)
        ctx, page = await caller_page(browser, gateway.base_url)
        try:
            await open_console(console)
            await page.evaluate("holdLocation()")
            await widget(page, '.option[data-call-type="voice"]').click()
            call = await eventually(lambda: only_call(gateway), what="the call at the gateway")
            await console.wait_for_selector("#view-ringing:not([hidden])")
            card = console.locator('#card [data-testid="location"]')
            await expect(card).to_have_text("Location not shared")
            await expect(console.locator("#ring-sub")).to_contain_text("location not shared")
            sent = await events(page)
            assert "call.start" in sent and "call.location" not in sent and "position" not in sent, sent
            assert call.location is None

            await console.click("#accept-button")
            await eventually(lambda: call.state.value == "connected", what="the call answered")
            await expect(card).to_have_text("Location not shared")

            # The user allows the location: it follows the call, and the agent's card shows it in place.
            await page.evaluate("releaseLocation()")
            await expect(card).to_contain_text("52.52192, 13.41321", timeout=15_000)
            await expect(card).to_contain_text("±18 m accuracy")
            await expect(console.locator("#card-location .tag")).to_have_text("device-reported")
            await expect(widget(page, ".loc-chip")).to_have_text("Location shared")
            sent = await events(page)
            assert sent.index("call.start") < sent.index("position") < sent.index("call.location"), sent
            assert sent.count("call.location") == 1
            assert call.location is not None and call.location.accuracy_m == 18
            await shot(console, "console-late-location")
        finally:
            await ctx.close()
            await console_ctx.close()


async def test_where_the_browser_may_ask_the_devices_come_before_the_call():
    async with running_gateway() as gateway, async_playwright() as pw:
        asking = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ASKING_ARGS)
        try:
            # Only the microphone is allowed: a video call waits for the browser's answer about the camera (refused:
            # it goes on as a voice call) before the gateway hears of it.
            ctx, page = await caller_page(asking, gateway.base_url, permissions=["microphone"])
            client = "Callin.widgets[0].client"
            assert await page.evaluate(f"[{client}.startsBeforeMedia('voice'), {client}.startsBeforeMedia('video')]") == [True, False]
            await widget(page, '.option[data-call-type="video"]').click()
            await eventually(lambda: page.evaluate(f"{client}.state === 'queued'"), what="queued")
            sent = await events(page)
            assert sent.index("media") < sent.index("call.start") < sent.index("sdp.offer"), sent
            await ctx.close()

            # Nothing allowed: the refused prompt is the end of it, and no agent is rung for a call that has no sound.
            ctx, page = await caller_page(asking, gateway.base_url, permissions=[])
            await widget(page, '.option[data-call-type="voice"]').click()
            await expect(widget(page, '.view[data-view="error"]')).to_be_visible()
            assert "call.start" not in await events(page)
            assert len(gateway.board.calls) == 1  # the first one only
            await ctx.close()
        finally:
            await asking.close()


async def test_a_prepared_peer_connection_is_replaced_when_the_network_changes(browser):
    async with running_gateway() as gateway:
        ctx, page = await caller_page(browser, gateway.base_url)
        try:
            await page.evaluate("window.dispatchEvent(new Event('online'))")  # what the browser says on a new network
            await eventually(lambda: page.evaluate("window.__pcs.length === 2 && window.__pcs[1].signalingState === 'have-local-offer'"),
                             what="a new prepared peer connection")
            assert await page.evaluate("window.__pcs[0].signalingState") == "closed"
            await widget(page, '.option[data-call-type="voice"]').click()
            await eventually(lambda: page.evaluate("Callin.widgets[0].client.state === 'queued'"), what="queued")
            assert await page.evaluate("window.__pcs.length === 2 && Callin.widgets[0].client.peerConnection === window.__pcs[1]")
        finally:
            await ctx.close()


async def test_devices_that_come_up_after_a_hang_up_are_stopped_and_a_failing_one_ends_the_call(browser):
    async with running_gateway() as gateway:
        ctx, page = await caller_page(browser, gateway.base_url)
        try:
            # Hung up while the camera starts: the call ends, and the camera it then gets is turned off at once.
            await page.evaluate("holdMedia()")
            await widget(page, '.option[data-call-type="video"]').click()
            first = await eventually(lambda: only_call(gateway), what="the call at the gateway")
            await eventually(lambda: page.evaluate("Callin.widgets[0].client.state === 'queued'"), what="queued")
            await widget(page, '[data-action="hangup"]').click()
            await eventually(lambda: first.state.value == "ended", what="the call ended at the gateway")
            await page.evaluate("releaseMedia(null)")
            await eventually(lambda: page.evaluate("window.__tracks.length === 2 && window.__tracks.every((t) => t.readyState === 'ended')"),
                             what="the camera and microphone stopped")
            assert await page.evaluate("Callin.widgets[0].client.localStream.getTracks().length") == 0

            # The position still being read does not hold the call back; a device that fails then ends the call, and
            # the position that comes after it is not sent (a location only ever goes with a call).
            await prepared_widget(page)
            await page.evaluate("window.__events = []; holdMedia(); holdLocation()")
            await widget(page, '.option[data-call-type="voice"]').click()
            located = await eventually(lambda: next((c for c in gateway.board.calls.values() if c is not first), None),
                                       what="the call at the gateway, the position not read yet")
            await page.evaluate("releaseMedia('NotReadableError')")
            await eventually(lambda: located.state.value == "ended", what="the failed call ended at the gateway")
            await expect(widget(page, '.view[data-view="error"]')).to_contain_text("Your microphone is busy")
            await page.evaluate("releaseLocation()")
            await eventually(lambda: page.evaluate("window.__events.includes('position')"), what="the position read")
            await page.evaluate("new Promise((r) => setTimeout(r, 0))")  # the widget's handling of it has run
            assert "call.location" not in await events(page) and located.location is None
            first = located  # the next call is the one after this one

            # A device that fails once the call started (in use elsewhere): the call ends, and the caller is told.
            await prepared_widget(page)
            await page.evaluate("holdMedia()")
            await widget(page, '.option[data-call-type="voice"]').click()
            second = await eventually(lambda: next((c for c in gateway.board.calls.values() if c is not first), None),
                                      what="the second call at the gateway")
            await page.evaluate("releaseMedia('NotReadableError')")
            await eventually(lambda: second.state.value == "ended", what="the failed call ended at the gateway")
            await expect(widget(page, '.view[data-view="error"]')).to_contain_text("Your microphone is busy")
        finally:
            await ctx.close()
