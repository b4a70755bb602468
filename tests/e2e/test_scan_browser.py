"""The agent's console shows what the gateway read in a photo the caller sent (issue 18, item 18): the codes, as
text (a code that looks like HTML stays text), and a link to where the photo was taken."""

from __future__ import annotations

import aiohttp
import pytest
import zxingcpp
from playwright.async_api import expect

from tests.e2e.browser import DESKTOP, new_page, open_console, shot
from tests.support.clients import Caller
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
