"""No serious or critical accessibility violation (axe-core, WCAG 2.1 A and AA) in any state of the caller widget,
the demo page and the agent console (issue 18, item 19). Each state is reached for real: a Chromium caller, an aiortc
or Chromium agent, the real gateway."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from playwright.async_api import expect

from tests.e2e.accessibility import violations
from gateway.auth import mint_caller_token
from tests.e2e.browser import DESKTOP, PHONE, eventually, new_page, open_console, open_demo, open_widget, widget
from tests.support.clients import Agent, Caller
from tests.support.server import TEST_SECRET, running_gateway

pytestmark = pytest.mark.browser


async def test_the_caller_widget_and_demo_page_in_every_state(browser):
    found: list[str] = []
    async with running_gateway() as gw:
        context, page = await new_page(browser, gw.base_url, viewport=PHONE, is_mobile=True)
        await open_demo(page, "Dana Whitfield")
        found += await violations(page, "demo page, widget closed")
        await open_widget(page)
        found += await violations(page, "widget: choose a call type")
        await widget(page, '.option[data-call-type="voice"]').click()
        await expect(widget(page, ".presence h3")).to_contain_text("number 1 in line", timeout=15000)
        found += await violations(page, "widget: waiting, no one available")
        agent = Agent(gw.base_url)
        await agent.connect()
        offer = await agent.wait_offer()
        found += await violations(page, "widget: ringing an agent")
        await agent.accept(offer["call_id"])
        await expect(widget(page, ".presence .who")).to_contain_text("(demo agent)")
        found += await violations(page, "widget: in a voice call")
        await agent.ws.request({"type": "chat.send", "call_id": offer["call_id"], "text": "Hello, how can I help?"})
        await widget(page, '[data-action="chat"]').click()
        await expect(widget(page, ".messages .msg.theirs")).to_contain_text("Hello, how can I help?")
        found += await violations(page, "widget: chat open")
        await widget(page, '[data-action="chat-close"]').click()
        await agent.ws.request({"type": "content.push", "call_id": offer["call_id"], "kind": "link",
                                "title": "Reset your PIN", "url": "https://bank.example/pin"})
        await expect(widget(page, ".tray .pushed.link")).to_be_visible()
        found += await violations(page, "widget: content pushed")
        await agent.ws.request({"type": "call.hangup", "call_id": offer["call_id"]})
        await expect(widget(page, ".panel")).to_have_attribute("data-view", "ended", timeout=15000)
        found += await violations(page, "widget: call ended")
        await agent.close()
        await context.close()
    assert found == [], "\n".join(found)


async def test_the_widget_after_hours_leaving_a_message_and_on_a_phone_on_its_side(browser):
    today = date.today()
    closed = {"name": "default", "holidays": [str(today + timedelta(days=d)) for d in (-1, 0, 1)],
              "after_hours_message": "Northwind Cards answers 8:00-20:00, Monday to Saturday."}
    found: list[str] = []
    async with running_gateway(queues=[closed]) as gw:
        context, page = await new_page(browser, gw.base_url, viewport={"width": 844, "height": 390}, is_mobile=True)
        await open_demo(page, "Dana Whitfield")
        await open_widget(page)
        found += await violations(page, "widget (landscape): choose")
        await widget(page, '.option[data-call-type="voice"]').click()
        await expect(widget(page, '.view[data-view="closed"]')).to_be_visible()
        found += await violations(page, "widget (landscape): closed, after hours")
        await widget(page, '.closed-actions [data-action="leave"]').click()
        await widget(page, ".leave-text").fill("Please call me back tomorrow morning.")
        found += await violations(page, "widget (landscape): leaving a message")
        await widget(page, '.leave-form button[type="submit"]').click()
        await expect(widget(page, '.view[data-view="ended"]')).to_be_visible()
        found += await violations(page, "widget (landscape): message sent")
        await context.close()
    assert found == [], "\n".join(found)


async def test_the_agent_console_in_every_state(browser):
    found: list[str] = []
    async with running_gateway(wrap_up_s=60) as gw:
        context, agent = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await agent.goto("/console/")
        await agent.wait_for_selector("#username")
        found += await violations(agent, "console: sign-in")
        await open_console(agent, available=False)
        found += await violations(agent, "console: away")
        await agent.click("#go-available")
        await eventually(lambda: agent.evaluate("document.getElementById('status-pill').dataset.status === 'available'"),
                         what="available")
        found += await violations(agent, "console: available, no call")
        caller = Caller(gw.base_url, mint_caller_token(TEST_SECRET, sub="a11y", name="Dana Whitfield"))
        await caller.connect()
        queued = await caller.start("video")
        await expect(agent.locator("#view-ringing")).to_be_visible()
        found += await violations(agent, "console: ringing")
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()
        found += await violations(agent, "console: in a call (caller card)")
        await caller.ws.request({"type": "chat.send", "text": "Hello, my card is blocked"})
        await agent.click("#stab-chat")
        await expect(agent.locator("#chat-log")).to_contain_text("my card is blocked")
        found += await violations(agent, "console: chat")
        await agent.click("#stab-share")
        found += await violations(agent, "console: share")
        await caller.ws.request({"type": "call.hangup", "call_id": queued["call_id"]})
        await eventually(lambda: agent.evaluate("document.getElementById('status-pill').dataset.status === 'wrap_up'"),
                         what="wrap-up")
        found += await violations(agent, "console: wrap-up")
        await caller.close()
        await context.close()
    assert found == [], "\n".join(found)
