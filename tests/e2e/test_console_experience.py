"""Issue 18, the agent console in real Chromium (items 10-17): after-call work that keeps the note and lets no call
ring over it, a live directory for transfers (and the T shortcut), an honest missed-call state, devices tested at
sign-in with the ring sound and desktop notifications, snapshots that say why they cannot be taken, a call-type chip
that follows the caller's video, callbacks and messages an agent can act on, and the caller's earlier contacts.

Callers are real aiortc peers (tests/support/clients.Caller) or signalling-only sockets; the console is Debian's
Chromium. Run inside a loopback-only network namespace (scripts/test.sh). Screenshots: artifacts/screenshots/.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from gateway.models import AgentStatus
from tests.e2e.accessibility import violations
from tests.e2e.browser import DESKTOP, eventually, new_page, open_console, shot
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Caller
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser


async def voice_caller(base_url: str, token: str) -> Caller:
    caller = Caller(base_url, token)
    await caller.connect()
    await caller.start("voice")
    return caller


async def test_after_call_work_keeps_the_note_and_no_call_rings_over_it(browser, caller_token):
    async with running_gateway(wrap_up_s=3.0, wrap_up_max_s=60.0) as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        first = await voice_caller(gw.base_url, caller_token(sub="acw-1", name="Dana Whitfield"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the call")
        await page.keyboard.press("t")  # the transfer dialog is open when the call ends: it closes with it
        await expect(page.locator("#transfer-dialog")).to_be_visible()
        await first.hangup()
        await expect(page.locator("#transfer-dialog")).to_be_hidden()
        await expect(page.locator("#wrapup")).to_be_visible()
        await expect(page.locator("#wrapup-timer")).to_contain_text("left · no calls meanwhile")
        await page.select_option("#wrapup-disposition", "follow_up")
        note = "Card blocked abroad; <b>send</b> a new one"
        await page.fill("#wrapup-notes", note)
        await expect(page.locator("#wrapup-draft")).to_be_visible()
        await shot(page, "console-acw-writing")

        second = await voice_caller(gw.base_url, caller_token(sub="acw-2", name="Sam Second"))
        # The configured wrap-up time (3 s) runs out while the note is unsaved: the console holds wrap-up instead.
        await eventually(lambda: page.evaluate("callinConsole.wrapUp?.extended ?? 0"), timeout=10,
                         what="the console extending wrap-up")
        await expect(page.locator("#wrapup-timer")).to_contain_text("held while you write")
        await eventually(lambda: gw.board.agent("alice").wrap_up_started + 4.0 < gw.board.clock.time(),
                         what="past the configured wrap-up time")
        assert gw.board.agent("alice").status is AgentStatus.WRAP_UP
        assert not [m for m in gw.board.calls.values() if m.offered_to == "alice"], "a call rang over the note"
        await expect(page.locator("#view-ringing")).to_be_hidden()
        assert await page.input_value("#wrapup-notes") == note
        await shot(page, "console-acw-held")
        assert not await violations(page, "console: wrap-up held while writing")

        await page.click("#wrapup-submit")
        await page.wait_for_selector("#view-ringing:not([hidden])")  # the waiting call rings only now
        api = Api(gw.base_url)
        await api.login("alice", "alice-demo")
        record = await api.ended_record(first.call_id)
        assert record["disposition"] == "follow_up" and record["notes"] == note
        await page.click("#decline-button")
        for client in (first, second):
            await client.close()
        await api.close()
        await context.close()


async def test_a_call_ringing_over_a_draft_does_not_wipe_it(browser, caller_token):
    async with running_gateway() as gw:  # no wrap-up time configured: the next call may ring at once
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        first = await voice_caller(gw.base_url, caller_token(sub="draft-1", name="Dana Whitfield"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the call")
        await first.hangup()
        await page.fill("#wrapup-notes", "Half-written note")
        second = await voice_caller(gw.base_url, caller_token(sub="draft-2", name="Rory Ringer"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#decline-button")  # back to the note, as it was
        await expect(page.locator("#view-ended")).to_be_visible()
        assert await page.input_value("#wrapup-notes") == "Half-written note"

        # Taking the next call keeps the draft too: "Finish wrap-up" in the recent calls brings it back.
        await page.click("#ended-dismiss")
        await eventually(lambda: gw.board.call(second.call_id).offered_to == "alice", timeout=25,
                         what="the declined call ringing again")
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the 2nd call")
        await second.hangup()
        await expect(page.locator("#wrapup")).to_be_visible()
        assert await page.input_value("#wrapup-notes") == ""  # the second call's own form
        await page.click("#ended-dismiss")
        button = page.locator("#history [data-finish-wrapup]")
        await expect(button).to_have_count(1)
        await shot(page, "console-draft-kept")
        await button.click()
        assert await page.input_value("#wrapup-notes") == "Half-written note"
        await page.click("#wrapup-submit")
        await expect(page.locator("#history [data-finish-wrapup]")).to_have_count(0)
        api = Api(gw.base_url)
        await api.login("alice", "alice-demo")
        assert (await api.ended_record(first.call_id))["notes"] == "Half-written note"
        for client in (first, second):
            await client.close()
        await api.close()
        await context.close()


async def test_a_missed_ring_says_so_and_two_set_the_agent_away(browser, caller_token):
    async with running_gateway(ring_timeout_s=1.5, reoffer_after_decline_s=4.0) as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="missed", name="Mia Missed"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await expect(page.locator("#view-missed")).to_be_visible(timeout=10000)
        await expect(page.locator("#missed-title")).to_have_text("Missed call from Mia Missed")
        text = page.locator("#missed-text")
        await expect(text).to_contain_text("went back to the queue")
        await expect(text).to_contain_text("You are still available")
        assert "another agent" not in await text.inner_text()
        await shot(page, "console-missed")
        assert not await violations(page, "console: missed call")
        # nobody else can take it: it rings here again, rings out again, and the agent is set away, told so
        await page.wait_for_selector("#view-ringing:not([hidden])", timeout=10000)
        await expect(text).to_contain_text("set to Away", timeout=10000)
        await expect(page.locator("#view-missed")).to_be_visible()
        await expect(page.locator("#status-pill")).to_have_attribute("data-status", "away")
        await expect(page.locator("#missed-available")).to_have_text("Go available")
        await expect(page.locator("#missed-away")).to_be_hidden()
        await shot(page, "console-missed-away")
        await caller.close()  # the caller gives up: going available again rings nothing
        await page.click("#missed-available")
        await expect(page.locator("#status-pill")).to_have_attribute("data-status", "available")
        await expect(page.locator("#view-idle")).to_be_visible()
        await context.close()


async def test_the_transfer_picker_lists_colleagues_and_queues_live(browser, caller_token):
    async with running_gateway() as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        caller = await voice_caller(gw.base_url, caller_token(sub="xfer", name="Tara Transfer"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the call")
        bob = await agent_socket(gw.base_url, "bob", "bob-demo")  # available

        await page.keyboard.press("t")
        colleague = page.locator('#transfer-directory button[data-agent="bob"]')
        await expect(colleague).to_contain_text("Bob (demo agent)")
        await expect(colleague.locator(".status-tag")).to_have_text("Available")
        await expect(page.locator('#transfer-directory button[data-agent="sam"]')).to_be_disabled()  # not signed in
        await expect(page.locator('#transfer-queue-list button[data-queue="default"]')).to_contain_text("1 available")
        await bob.request({"type": "agent.status", "status": "away"})
        await expect(colleague.locator(".status-tag")).to_have_text("Away", timeout=8000)  # the list is live
        await bob.request({"type": "agent.status", "status": "available"})
        await expect(colleague.locator(".status-tag")).to_have_text("Available", timeout=8000)
        await colleague.click()
        assert await page.input_value("#transfer-agent") == "bob"
        await shot(page, "console-transfer-directory")
        assert not await violations(page, "console: transfer directory")
        await page.click("#transfer-go")
        offered = await bob.wait(lambda m: m.get("type") == "call.offered")
        assert offered["call_id"] == caller.call_id and offered["card"]["transferred_from"] == "alice"
        await expect(page.locator("#ended-title")).to_contain_text("transferred")
        for client in (caller, bob):
            await client.close()
        await context.close()


async def test_snapshot_says_why_and_the_chip_follows_the_callers_video(browser, caller_token):
    async with running_gateway() as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        caller = await voice_caller(gw.base_url, caller_token(sub="snap", name="Vic Voice"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the call")
        snapshot = page.locator("#snapshot-button")
        await expect(page.locator("#call-type")).to_have_text("Voice call")
        await expect(snapshot).to_be_disabled()
        await expect(snapshot).to_have_attribute("title", "No snapshot: the caller isn't sending video (voice only).")
        await snapshot.hover(force=True)  # the reason shows by the disabled button
        why = page.locator("#snapshot-why")
        await expect(why).to_be_visible()
        await expect(why).to_have_text("No snapshot: the caller isn't sending video (voice only).")
        await shot(page, "console-snapshot-disabled")
        assert not await violations(page, "console: snapshot unavailable")

        # The caller says its video now carries its camera: the chip and the snapshot follow.
        assert (await caller.ws.request({"type": "media.source", "source": "camera"}))["type"] == "ack"
        await expect(page.locator("#call-type")).to_have_text("Camera on · was a voice call")
        await expect(snapshot).to_be_enabled()
        # ...but no frame ever arrives (this caller has no video section): one quiet retry, then "Try again"
        await snapshot.click()
        await expect(page.locator("#snap-retry")).to_be_visible(timeout=15000)
        await expect(page.locator("#snap-loading-text")).to_contain_text("nothing to take a picture of")
        await shot(page, "console-snapshot-try-again")
        assert not await violations(page, "console: snapshot try again")
        await caller.hangup()
        await expect(page.locator("#snapshot-dialog")).to_be_hidden()  # closed with the call
        await expect(page.locator("#view-ended")).to_be_visible()
        await caller.close()
        await context.close()


async def test_callbacks_and_messages_to_act_on_and_the_callers_earlier_contacts(browser, caller_token):
    async with running_gateway(reoffer_after_decline_s=60) as gw:
        # An earlier call of "repeat", answered and wrapped up by bob.
        bob = await agent_socket(gw.base_url, "bob", "bob-demo")
        earlier, earlier_id = await caller_socket(gw.base_url, caller_token(sub="repeat", name="Rita Repeat"))
        await bob.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == earlier_id)
        await bob.request({"type": "call.accept", "call_id": earlier_id})
        await earlier.request({"type": "call.hangup"})
        bob_api = Api(gw.base_url)
        await bob_api.login("bob", "bob-demo")
        await bob_api.ended_record(earlier_id)
        status, body = await bob_api.post(f"/api/v1/calls/{earlier_id}/wrap-up",
                                          {"disposition": "follow_up", "notes": "Replacement card <i>ordered</i>"})
        assert status == 200, body
        await bob.request({"type": "agent.status", "status": "away"})

        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page, available=False)  # away: nobody is staffed
        message_caller, message_id = await caller_socket(gw.base_url, caller_token(sub="note", name="Nora Note"))
        await message_caller.wait("queue.closed")
        await message_caller.request({"type": "message.leave", "text": "<img src=x onerror=alert(1)> call me back"})
        callback_caller, callback_id = await caller_socket(gw.base_url, caller_token(sub="repeat", name="Rita Repeat"))
        await callback_caller.wait("queue.closed")
        accepted = await callback_caller.request({"type": "callback.request", "phone": "+49 30 5550"})
        assert accepted["type"] == "callback.accepted", accepted

        await page.reload()  # the inbox is read when the console connects (and every 10 s)
        inbox = page.locator("#inbox-section")
        await expect(inbox).to_be_visible()
        message = inbox.locator(f'li[data-message-id="{message_id}"]')
        await expect(message).to_contain_text("<img src=x onerror=alert(1)> call me back")  # as text
        assert await inbox.locator("img").count() == 0
        take = inbox.locator(f'li[data-callback-id="{callback_id}"] button')
        await expect(take).to_have_text("Call back now")
        await expect(take).to_be_disabled()  # away
        await shot(page, "console-inbox")
        assert not await violations(page, "console: callbacks and messages")
        await message.locator("button").click()
        await expect(message).to_have_count(0)
        record = await bob_api.get(f"/api/v1/calls/{message_id}")
        assert record[0] == 404  # not bob's: the message was in the default queue, handled by alice
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        record = (await admin.get(f"/api/v1/calls/{message_id}"))[1]
        assert record["wrapped_up_by"] == "alice" and record["disposition"] == "message_handled"

        # Available: the callback rings here; declined by mistake, it is taken again from the list.
        await page.click("#go-available")
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#decline-button")
        await expect(take).to_be_enabled(timeout=15000)
        await take.click()
        await page.wait_for_selector("#view-ringing:not([hidden])")
        assert gw.board.call(callback_id).offered_to == "alice"
        contacts = page.locator("#card [data-testid=contacts] li")
        await expect(contacts).to_have_count(1)
        await expect(contacts).to_contain_text("Answered · Follow up")
        await expect(contacts).to_contain_text("Replacement card <i>ordered</i>")
        await expect(contacts).to_contain_text("bob")
        await shot(page, "console-contact-history")
        assert not await violations(page, "console: earlier contacts on the card")
        for client in (bob, earlier, message_caller, callback_caller):
            await client.close()
        for api in (bob_api, admin):
            await api.close()
        await context.close()


async def test_devices_are_tested_at_sign_in_the_ring_sound_and_notifications(browser, caller_token):
    async with running_gateway() as gw:
        context = await browser.new_context(
            viewport=DESKTOP, base_url=gw.base_url, permissions=["notifications", "camera", "microphone"])
        # A spy on the real Notification: what the console shows is recorded, and shown as usual.
        await context.add_init_script("""
            window.__notes = [];
            const Real = window.Notification;
            window.Notification = class extends Real {
              constructor(title, options) { super(title, options); window.__notes.push({ title, body: options?.body, closed: false });
                const entry = window.__notes.at(-1); const close = this.close.bind(this); this.close = () => { entry.closed = true; close(); }; }
              static get permission() { return Real.permission; }
              static requestPermission(...a) { return Real.requestPermission(...a); }
            };""")
        page = await context.new_page()
        page.set_default_timeout(15000)
        await open_console(page, available=False)
        # devices: listed, and a microphone and camera test that really open them
        await expect(page.locator("#dev-mic option")).not_to_have_count(0)
        await page.click("#dev-test-mic")
        await expect(page.locator("#dev-status")).to_contain_text("the bar moves when it hears you")
        await eventually(lambda: page.evaluate("callinConsole.devices.micLevel > 0.005"), what="microphone level")
        assert await page.locator("#dev-mic option").count() >= 2  # names readable once allowed
        await page.click("#dev-test-camera")
        await eventually(lambda: page.evaluate("callinConsole.devices.previewWidth > 0"), what="camera preview")
        await expect(page.locator("#notify-enable")).to_have_text("Notifications on")
        await shot(page, "console-devices")
        assert not await violations(page, "console: devices tested")

        # the console opened again (a new tab: still signed in by the cookie) and not clicked yet: the browser keeps
        # the ring sound blocked, and the console says so
        await page.close()
        page = await context.new_page()
        page.set_default_timeout(15000)
        # Playwright's own checks run as user gestures, which would let the sound start: look without one.
        cdp = await context.new_cdp_session(page)

        async def quietly(expression: str):
            reply = await cdp.send("Runtime.evaluate", {"expression": expression, "userGesture": False,
                                                        "returnByValue": True})
            return reply["result"].get("value")

        await page.goto("/console/")
        await eventually(lambda: quietly("!document.getElementById('app').hidden && "
                                         "!document.getElementById('sound-blocked').hidden"),
                         what="the ring-sound warning")
        await shot(page, "console-sound-blocked")
        await page.click("#sound-enable")
        await expect(page.locator("#sound-blocked")).to_be_hidden()

        # the tab is hidden when a call rings: a desktop notification, closed when the ring stops
        await page.click("#go-available")
        await expect(page.locator("#status-pill")).to_have_attribute("data-status", "available")
        await page.evaluate("Object.defineProperty(document, 'hidden', { value: true, configurable: true })")
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="notify", name="Nina Notify"))
        await page.wait_for_selector("#view-ringing:not([hidden])")
        notes = await eventually(lambda: page.evaluate("window.__notes"), what="a notification")
        assert notes[0]["title"] == "Incoming voice call · Callin"
        assert notes[0]["body"] == "Nina Notify is calling. Open the console to answer."
        await page.click("#decline-button")
        await eventually(lambda: page.evaluate("window.__notes[0].closed"), what="the notification closed")
        await caller.close()
        await context.close()
