"""Issue 6 in real Chromium: pushed content, chat with files, hold, snapshot drawing, transfer dialog, wrap-up,
closed queues with messages, callbacks with rejoin, and the supervisor's wallboard with whisper.

Run inside a loopback-only network namespace, one browser call at a time:
    unshare -rn sh -c 'ip link set lo up; python -m pytest tests/e2e -x -q'
Screenshots land in artifacts/screenshots/ (phone size for the caller, desktop for the console).
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from datetime import date, timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.browser import (
    DESKTOP,
    PHONE,
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
from tests.support.api import Api
from tests.support.clients import Caller
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser


def png(width: int = 96, height: int = 64, rgb: tuple[int, int, int] = (14, 116, 144)) -> bytes:
    """A small valid PNG (a coloured rectangle with a white stripe) that browsers can decode."""
    rows = b""
    for y in range(height):
        colour = bytes((255, 255, 255)) if height // 3 <= y < height // 3 + 6 else bytes(rgb)
        rows += b"\x00" + colour * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def rising(read, what: str, by: int = 25, timeout: float = 10) -> int:
    first = await read()
    start = first or 0
    return await eventually(lambda: _above(read, start + by), timeout=timeout, what=f"{what} rising past {start + by}")


async def _above(read, threshold: int):
    value = await read()
    return value if (value or 0) >= threshold else None


async def caller_audio_in(page: Page) -> int:
    stats = await caller_stats(page)
    return ((stats or {}).get("audioIn") or {}).get("packetsReceived", 0)


async def agent_audio_in(page: Page) -> int:
    stats = await console_stats(page)
    return ((stats or {}).get("audioIn") or {}).get("packetsReceived", 0)


async def connected_video_call(gateway_url: str, browser: Browser, *, agent_user=("alice", "alice-demo"),
                               caller_name: str = "Dana Whitfield"):
    agent_ctx, agent = await new_page(browser, gateway_url, viewport=DESKTOP)
    caller_ctx, caller = await new_page(browser, gateway_url, viewport=PHONE, is_mobile=True)
    await open_console(agent, *agent_user)
    await open_demo(caller, caller_name)
    await open_widget(caller)
    await widget(caller, '.option[data-call-type="video"]').click()
    await expect(agent.locator("#view-ringing")).to_be_visible()
    await agent.click("#accept-button")
    await expect(agent.locator("#view-call")).to_be_visible()
    await expect(widget(caller, ".presence .who")).to_contain_text("(demo agent)")
    await eventually(lambda: _frames(agent), what="the caller's video at the agent")
    return agent_ctx, agent, caller_ctx, caller


async def _frames(agent: Page):
    stats = await console_stats(agent)
    return ((stats or {}).get("videoIn") or {}).get("framesDecoded", 0) > 5


async def test_content_chat_hold_snapshot_transfer_dialog_and_wrap_up(browser, tmp_path):
    async with running_gateway(wrap_up_s=60) as gw:
        agent_ctx, agent, caller_ctx, caller = await connected_video_call(gw.base_url, browser)
        call_id = (await console_state(agent))["callId"]

        # Push a link: the caller sees a card, opening it reports "opened" to the agent.
        await expect(agent.locator("#side-tabs")).to_be_visible()
        await agent.click("#stab-share")
        await agent.fill("#share-title", "Reset your PIN")
        await agent.fill("#share-url", "https://bank.example/pin")
        await agent.click("#share-send")
        card = widget(caller, ".tray .pushed.link")
        await expect(card).to_be_visible()
        await expect(card.locator(".p-title")).to_have_text("Reset your PIN")
        await expect(card.locator(".p-host")).to_have_text("bank.example")
        status = agent.locator('#pushed-list [data-testid="content-status"]').first
        await expect(status).to_have_text("Seen")
        # A text card too.
        await agent.click('#share-kinds [data-kind="text"]')
        await agent.fill("#share-title", "Your reference")
        await agent.fill("#share-text", "Ticket #48213: card unblock after identity check")
        await agent.click("#share-send")
        await expect(widget(caller, ".tray .pushed.text .p-text")).to_have_text("Ticket #48213: card unblock after identity check")
        await shot(caller, "caller-pushed-content")
        # Two cards collapse to the newest one and a count (issue 18): show all, then open the link.
        await expect(card).to_be_hidden()
        await widget(caller, ".tray-toggle").click()
        await expect(card).to_be_visible()
        # The link opens in a new tab (served here by the test: nothing leaves the machine).
        await caller_ctx.route("https://bank.example/**", lambda route: route.fulfill(
            body="<!doctype html><title>Reset your PIN</title><h1>Reset your PIN</h1>", content_type="text/html"))
        async with caller_ctx.expect_page() as popup_info:
            await card.locator('[data-action="open-link"]').click()
        popup = await popup_info.value
        await popup.wait_for_load_state()
        assert popup.url == "https://bank.example/pin"
        await popup.close()
        link_status = agent.locator('#pushed-list .pushed-item', has_text="Reset your PIN").locator('[data-testid="content-status"]')
        await expect(link_status).to_have_text("Opened")
        await shot(agent, "console-push-panel")
        # Dismissing the text card tells the agent too.
        await widget(caller, '.tray .pushed.text [data-action="dismiss-content"]').click()
        text_status = agent.locator('#pushed-list .pushed-item', has_text="Your reference").locator('[data-testid="content-status"]')
        await expect(text_status).to_have_text("Dismissed")

        # Chat: the caller attaches a photo; the agent sees it and downloads it; the agent replies.
        await widget(caller, '[data-action="chat"]').click()
        await expect(widget(caller, ".sheet")).to_be_visible()
        photo = png()
        path = tmp_path / "receipt.png"
        path.write_bytes(photo)
        await widget(caller, ".chat-input").fill("Here is the receipt")
        await widget(caller, ".composer .send").click()
        await widget(caller, ".file-input").set_input_files(str(path))
        await agent.click("#stab-chat")
        await expect(agent.locator("#chat-log .chat-msg.caller").first).to_contain_text("Here is the receipt")
        attachment = agent.locator('#chat-log [data-testid="chat-attachment"]').first
        await expect(attachment).to_be_visible()
        await eventually(lambda: attachment.locator("img").evaluate("img => img.complete && img.naturalWidth === 96"),
                         what="the caller's photo displayed at the agent")
        async with agent.expect_download() as download_info:
            await attachment.click()
        download = await download_info.value
        assert download.suggested_filename == "receipt.png"
        assert (await download.path()).read_bytes() == photo
        await agent.fill("#chat-input", "Thanks, I can see it. Unblocking now.")
        await agent.click("#chat-send")
        reply = widget(caller, ".messages .msg.theirs").last
        await expect(reply).to_contain_text("Thanks, I can see it. Unblocking now.")
        await expect(reply.locator(".from")).to_have_text("Alice (demo agent)")
        await eventually(lambda: widget(caller, ".messages .msg.mine .att-img img").evaluate(
            "img => img.complete && img.naturalWidth === 96"), what="the caller's own photo in its chat")
        # A screenshot of the app (the demo draws its own card on a canvas), previewed before it is sent.
        await widget(caller, '[data-action="app-shot"]').click()
        await expect(widget(caller, ".pending")).to_be_visible()
        await widget(caller, '[data-action="pending-send"]').click()
        shot_msg = agent.locator("#chat-log .chat-msg.caller img[alt='app-screenshot.png']")
        await expect(shot_msg).to_be_visible()
        await eventually(lambda: shot_msg.evaluate("img => img.naturalWidth === 780"), what="the app screenshot")
        # A file type the gateway refuses: the caller is told clearly.
        bad = tmp_path / "tool.bin"
        bad.write_bytes(b"\x00\x01\x02binary\x00")
        await widget(caller, ".file-input").set_input_files(str(bad))
        await expect(widget(caller, ".chat-error")).to_contain_text("can't be sent")
        await shot(caller, "caller-chat")
        await shot(agent, "console-chat")
        await widget(caller, '[data-action="chat-close"]').click()

        # Hold: the caller sees the notice; resume removes it.
        await agent.click("#hold-button")
        await expect(widget(caller, ".overlay")).to_be_visible()
        await expect(widget(caller, ".overlay .ov-title")).to_have_text("You're on hold")
        await expect(agent.locator("#hold-veil")).to_be_visible()
        await shot(caller, "caller-hold")
        await shot(agent, "console-hold")
        await agent.click("#hold-button")
        await expect(widget(caller, ".overlay")).to_be_hidden()
        await expect(agent.locator("#hold-veil")).to_be_hidden()

        # Snapshot: a still of the caller's video, drawn on, sent back as an image.
        await agent.click("#snapshot-button")
        await expect(agent.locator("#snapshot-dialog")).to_be_visible()
        await expect(agent.locator("#snap-loading")).to_be_hidden(timeout=15000)
        canvas = agent.locator("#snap-canvas")
        box = await canvas.bounding_box()
        await agent.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        await agent.mouse.down()
        for step in range(12):
            await agent.mouse.move(box["x"] + box["width"] * (0.3 + step * 0.03), box["y"] + box["height"] * (0.3 + step * 0.02))
        await agent.mouse.up()
        await agent.click('#snap-colors [aria-label="Yellow"]')
        await agent.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.7)
        await agent.mouse.down()
        await agent.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.55, steps=8)
        await agent.mouse.up()
        strokes = await agent.evaluate("document.getElementById('snap-canvas').getContext('2d').getImageData(0, 0, 320, 240).data.length")
        assert strokes > 0
        await shot(agent, "console-snapshot-drawing")
        await agent.click("#snap-undo")
        await agent.click("#snap-send")
        await expect(agent.locator("#snapshot-dialog")).to_be_hidden()
        image = widget(caller, ".tray .pushed.image")
        await expect(image).to_be_visible()
        await eventually(lambda: image.locator("img").evaluate("img => img.complete && img.naturalWidth > 0"),
                         what="the drawn snapshot on the caller's screen")
        await image.locator(".p-img").click()
        await expect(widget(caller, ".lightbox")).to_be_visible()
        img_status = agent.locator('#pushed-list .pushed-item', has_text="Tap here").locator('[data-testid="content-status"]')
        await expect(img_status).to_have_text("Opened")
        await shot(caller, "caller-pushed-image")
        await widget(caller, '[data-action="lightbox-close"]').click()

        # The transfer dialog (blind/warm, to a colleague or a queue); cancelled here.
        await agent.click("#transfer-button")
        await expect(agent.locator("#transfer-dialog")).to_be_visible()
        await agent.click('#transfer-modes [data-mode="warm"]')
        await expect(agent.locator("#transfer-queue")).to_be_hidden()
        await agent.click('#transfer-modes [data-mode="blind"]')
        await agent.fill("#transfer-agent", "bob")
        await agent.click("#transfer-go")
        await expect(agent.locator("#transfer-error")).to_have_text("bob is not signed in.")
        await shot(agent, "console-transfer-dialog")
        await agent.click("#transfer-cancel")

        # The agent hangs up: wrap-up with its timer, then the outcome and notes go to the record.
        await agent.click("#hangup-button")
        await expect(agent.locator("#wrapup")).to_be_visible()
        await expect(agent.locator("#status-pill")).to_have_attribute("data-status", "wrap_up")
        await expect(agent.locator("#wrapup-timer")).to_contain_text("left")
        await agent.select_option("#wrapup-disposition", "resolved")
        await agent.fill("#wrapup-notes", "Card unblocked after a video identity check.")
        await shot(agent, "console-wrap-up")
        await agent.click("#wrapup-submit")
        await expect(agent.locator("#view-idle")).to_be_visible()
        await expect(agent.locator("#status-pill")).to_have_attribute("data-status", "available")
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        record = await api.ended_record(call_id)
        assert record["disposition"] == "resolved", record
        assert record["notes"] == "Card unblocked after a video identity check."
        await api.close()
        await caller_ctx.close()
        await agent_ctx.close()


def closed_today() -> dict:
    today = date.today()
    return {"name": "default", "holidays": [str(today + timedelta(days=d)) for d in (-1, 0, 1)],
            "after_hours_message": "Northwind Cards answers 8:00-20:00, Monday to Saturday."}


async def test_after_hours_caller_leaves_a_message(browser):
    async with running_gateway(queues=[closed_today()]) as gw:
        caller_ctx, caller = await new_page(browser, gw.base_url, viewport=PHONE, is_mobile=True)
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="voice"]').click()
        await expect(widget(caller, '.view[data-view="closed"]')).to_be_visible()
        await expect(widget(caller, ".closed-title")).to_have_text("We're closed right now")
        await expect(widget(caller, ".closed-text")).to_have_text("Northwind Cards answers 8:00-20:00, Monday to Saturday.")
        await expect(widget(caller, ".closed-meta")).to_contain_text("We open again")
        await expect(widget(caller, '.closed-actions [data-action="callback"]')).to_be_visible()
        await expect(widget(caller, '.closed-actions [data-action="keep-waiting"]')).to_be_hidden()
        await shot(caller, "caller-after-hours")
        call_id = await caller.evaluate("Callin.widgets[0].client.callId")
        await widget(caller, '.closed-actions [data-action="leave"]').click()
        await widget(caller, ".leave-text").fill("My card was blocked at the ATM. Please call me back tomorrow morning.")
        await shot(caller, "caller-leave-message")
        await widget(caller, '.leave-form button[type="submit"]').click()
        await expect(widget(caller, '.view[data-view="ended"]')).to_be_visible()
        await expect(widget(caller, '.view[data-view="ended"] h3')).to_have_text("Message sent")
        await expect(widget(caller, ".ended-text")).to_have_text("Your message was sent. The team will get back to you.")
        await shot(caller, "caller-message-sent")
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        record = await api.ended_record(call_id)
        assert record["message"] == "My card was blocked at the ATM. Please call me back tomorrow morning."
        assert record["outcome"] == "after_hours" and record["closed_reason"] == "after_hours"
        await api.close()
        await caller_ctx.close()


async def test_callback_requested_accepted_and_rejoined_with_media(browser, caller_token):
    async with running_gateway(queues=[{"name": "default", "callback_threshold_s": 60}]) as gw:
        agent_ctx, agent = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(agent)
        # Alice is busy with a first caller (a headless client), so the next caller waits: 1 x 180 s > 60 s.
        first = Caller(gw.base_url, caller_token(sub="first-caller", name="Erik First"))
        await first.connect()
        await first.start("voice")
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()

        caller_ctx, caller = await new_page(browser, gw.base_url, viewport=PHONE, is_mobile=True)
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="voice"]').click()
        await expect(widget(caller, ".offer-card")).to_be_visible()
        await expect(widget(caller, ".offer-card .oc-text")).to_contain_text("about 3 minutes")
        await shot(caller, "caller-callback-offer")
        await widget(caller, '.offer-card [data-action="callback"]').click()
        await expect(widget(caller, '.view[data-view="callback"]')).to_be_visible()
        await expect(widget(caller, ".cb-meta")).to_have_text("You're number 1 in line.")
        assert await caller.evaluate("Callin.widgets[0].client.state") == "callback"
        await shot(caller, "caller-callback-requested")

        # Alice finishes the first call; the callback rings her, marked as a callback.
        await first.hangup()
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await expect(agent.locator("#ring-title")).to_contain_text("Callback")
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()
        await expect(widget(caller, '.view[data-view="rejoin"]')).to_be_visible()
        await expect(widget(caller, ".rejoin-title")).to_have_text("Alice (demo agent) is ready for you")
        await shot(caller, "caller-callback-ready")
        await widget(caller, '[data-action="rejoin"]').click()
        await expect(widget(caller, '.view[data-view="call"]')).to_be_visible()
        await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")
        await rising(lambda: caller_audio_in(caller), "agent audio at the rejoined caller", by=50)
        await rising(lambda: agent_audio_in(agent), "rejoined caller's audio at the agent", by=50)
        await shot(caller, "caller-callback-rejoined")
        await agent.click("#hangup-button")
        await expect(widget(caller, '.view[data-view="ended"]')).to_be_visible()
        await first.close()
        await caller_ctx.close()
        await agent_ctx.close()


async def test_supervisor_wallboard_and_whisper(gateway, browser):
    sam_ctx, sam = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    await open_console(sam, "sam", "sam-demo", available=False)
    await expect(sam.locator("#nav-tabs")).to_be_visible()
    await sam.click("#tab-wallboard")
    await expect(sam.locator("#wallboard")).to_be_visible()
    await expect(sam.locator("#wb-agents")).to_contain_text("Sam (demo supervisor)")

    agent_ctx, agent, caller_ctx, caller = await connected_video_call(gateway.base_url, browser)
    call_id = (await console_state(agent))["callId"]
    row = sam.locator(f'#wb-calls tr[data-call-id="{call_id}"]')
    await expect(row).to_contain_text("Dana Whitfield")
    await expect(row).to_contain_text("alice")
    await expect(sam.locator("#wb-agents li", has_text="Alice")).to_contain_text("On a call")
    first = await row.locator(".tick").text_content()
    await expect(row.locator(".tick")).not_to_have_text(first or "", timeout=10_000)  # the call's duration counts up

    await row.locator('[data-supervise="whisper"]').click()
    await expect(sam.locator("#wb-supervise")).to_be_visible()
    await expect(sam.locator("#sv-eyebrow")).to_have_text("Whispering")
    # Sam hears the caller and the agent, and sees the caller's video.
    await rising(lambda: _sv(sam, "caller"), "caller audio at the supervisor", by=50)
    await rising(lambda: _sv(sam, "agent"), "agent audio at the supervisor", by=50)
    await expect(sam.locator("#sv-novideo")).to_be_hidden()  # a frame of the caller's video is shown
    # Alice hears Sam on her console's second audio section; the caller does not.
    await rising(lambda: _aux(agent), "the whisper on the agent's second audio section", by=50)
    await expect(agent.locator("#aux-chip")).to_be_visible()
    await expect(row).to_contain_text("sam · whisper")
    await asyncio.sleep(1)
    await shot(sam, "console-wallboard-whisper")
    await shot(agent, "console-whispered-to")
    await sam.click("#sv-stop")
    await expect(sam.locator("#wb-supervise")).to_be_hidden()
    await agent.click("#hangup-button")
    await expect(sam.locator("#wb-calls")).to_contain_text("No calls in progress.")
    await shot(sam, "console-wallboard")
    await caller_ctx.close()
    await agent_ctx.close()
    await sam_ctx.close()


async def _sv(page: Page, which: str) -> int:
    stats = await page.evaluate("callinConsole.superviseStats()")
    return ((stats or {}).get(which) or {}).get("packetsReceived", 0)


async def _aux(page: Page) -> int:
    stats = await page.evaluate("callinConsole.auxAudio()")
    return (stats or {}).get("packetsReceived", 0)
