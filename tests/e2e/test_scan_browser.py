"""The agent's console shows what the gateway read in a photo the caller sent (issue 18, item 18): the codes, as
text (a code that looks like HTML stays text), and a link to where the photo was taken."""

from __future__ import annotations

import aiohttp
import pytest
import zxingcpp
from playwright.async_api import expect

from tests.e2e.browser import DESKTOP, PHONE, new_page, open_console, open_demo, open_widget, shot, widget
from tests.support.clients import Agent, Caller
from tests.support.pictures import picture
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser


async def test_the_console_shows_the_codes_and_place_of_a_callers_photo(browser, caller_token):
    async with running_gateway() as gw:
        context, agent = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(agent)
        token = caller_token(sub="meter-reader", name="Dana Whitfield")
        caller = Caller(gw.base_url, token)
        await caller.connect()
        queued = await caller.start("voice")
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()
        photo = picture([("METER 04-771-3392", zxingcpp.BarcodeFormat.QRCode),
                         ("<img src=x onerror=alert(1)>", zxingcpp.BarcodeFormat.Code128)], fmt="JPEG",
                        gps=(48.858222, 2.2945))
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gw.base_url}/api/v1/calls/{queued['call_id']}/attachments?name=meter.jpg",
                                 data=photo, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 201, await r.text()
                attachment = await r.json()
        await caller.ws.request({"type": "chat.send", "text": "the meter", "attachment_id": attachment["id"]})
        await agent.click("#stab-chat")
        scan = agent.locator('[data-testid="chat-scan"]')
        await expect(scan.locator("code")).to_have_count(2)
        texts = sorted(await scan.locator("code").all_text_contents())
        assert texts == ["<img src=x onerror=alert(1)>", "METER 04-771-3392"]  # shown as text, not markup
        assert await agent.locator("#chat-log img[src='x']").count() == 0
        await expect(scan.locator("a")).to_have_text("Photo taken at 48.85822, 2.29450")
        assert "mlat=48.858222" in (await scan.locator("a").get_attribute("href"))
        await shot(agent, "console-chat-scanned-photo")
        await caller.close()
        await context.close()


async def test_the_caller_scans_a_code_with_a_photo_and_sees_what_the_agent_got(browser, tmp_path):
    """The widget's Scan button takes a photo (the back camera on a phone); the gateway reads the code; the caller
    sees under the photo what was read, the agent gets it as text."""
    async with running_gateway() as gw:
        context, page = await new_page(browser, gw.base_url, viewport=PHONE, is_mobile=True)
        agent = Agent(gw.base_url)
        await agent.connect()
        await open_demo(page, "Dana Whitfield")
        await open_widget(page)
        await widget(page, '.option[data-call-type="voice"]').click()
        offer = await agent.wait_offer()
        await agent.accept(offer["call_id"])
        await widget(page, '[data-action="chat"]').click()
        scan_input = widget(page, ".scan-input")
        assert await scan_input.get_attribute("capture") == "environment"
        path = tmp_path / "meter.jpg"
        path.write_bytes(picture([("METER 04-771-3392", zxingcpp.BarcodeFormat.QRCode)], fmt="JPEG"))
        await widget(page, '[data-action="scan"]').click()  # opens the file chooser (the camera on a phone)
        await scan_input.set_input_files(str(path))
        line = await agent.ws.wait(lambda m: m.get("type") == "chat.message"
                                   and (m["message"].get("attachment") or {}).get("scan") is not None)
        assert [c["text"] for c in line["message"]["attachment"]["scan"]["codes"]] == ["METER 04-771-3392"]
        note = widget(page, ".messages .msg.mine .scan-note")
        await expect(note).to_have_text("Read from the photo: METER 04-771-3392")
        # The button stays readable under the pointer (the dark call view's white hover once hid it on the sheet).
        colour = await widget(page, '[data-action="scan"]').evaluate("b => getComputedStyle(b).color")
        assert colour != "rgb(255, 255, 255)", colour
        await shot(page, "caller-scanned-code")
        # A photo without a code says so, and how to do better.
        blank = tmp_path / "blank.jpg"
        blank.write_bytes(picture([], fmt="JPEG"))
        await scan_input.set_input_files(str(blank))
        await expect(note.last).to_contain_text("No code could be read")
        await agent.close()
        await context.close()
