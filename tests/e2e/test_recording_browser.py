"""Recording in real Chromium: the widget asks the caller (queue policy always, consent ask), the console always
shows the call's recording state, its button and the R shortcut pause and resume, the widget follows, and a
supervisor plays the recording back on the wallboard tab (streamed with Range requests, audited)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from gateway.config import QueueConfig
from tests.e2e.browser import DESKTOP, PHONE, console_stats, eventually, new_page, open_console, open_demo, open_widget, widget
from tests.e2e.test_incall_browser import _frames
from tests.support.server import running_gateway

pytestmark = pytest.mark.browser


async def test_consent_state_pause_shortcut_and_playback(browser):
    queue = QueueConfig(name="default", display_name="Default", recording="always", recording_consent="ask")
    async with running_gateway(queues=[queue]) as gw:
        agent_ctx, agent = await new_page(browser, gw.base_url, viewport=DESKTOP)
        caller_ctx, caller = await new_page(browser, gw.base_url, viewport=PHONE, is_mobile=True)
        await open_console(agent, available=False)
        await open_demo(caller)
        await open_widget(caller)
        await widget(caller, '.option[data-call-type="video"]').click()
        note = widget(caller, ".rec-note")
        await expect(note).to_be_visible()
        await expect(note).to_have_attribute("data-state", "asking")
        await expect(note.locator(".rec-title")).to_have_text("May we record this call?")
        await note.locator(".rec-yes").click()
        await expect(note).to_have_attribute("data-state", "pending")
        await expect(note.locator(".rec-yes")).to_be_hidden()

        await agent.click("#go-available")
        await expect(agent.locator("#view-ringing")).to_be_visible()
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible()
        chip = agent.locator("#rec-chip")
        await expect(chip).to_have_attribute("data-state", "recording")
        await expect(chip).to_have_text("Recording")
        await expect(note).to_have_attribute("data-state", "recording")
        await eventually(lambda: _frames(agent), what="the caller's video at the agent")
        call_id = (await agent.evaluate("callinConsole.state"))["callId"]

        await agent.keyboard.press("r")  # the shortcut pauses ...
        await expect(chip).to_have_attribute("data-state", "paused")
        await expect(note).to_have_attribute("data-state", "paused")
        assert gw.board.recording_state(call_id)["state"] == "paused"
        await expect(agent.locator("#rec-button")).to_have_attribute("data-action", "resume")
        await agent.click("#rec-button")  # ... and the button resumes
        await expect(chip).to_have_attribute("data-state", "recording")
        state = gw.board.recording_state(call_id)
        assert state["state"] == "recording" and len(state["paused_spans"]) == 1
        # Let a second and a half of video be recorded after the resume (a fast machine gets here in a blink).
        resumed_at = await _decoded(agent)
        await eventually(lambda: _decoded_past(agent, resumed_at + 45), timeout=15, what="video after the resume")
        await agent.keyboard.press("h")
        await expect(agent.locator("#view-ended")).to_be_visible()

        sam_ctx, sam = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(sam, "sam", "sam-demo", available=False)
        await sam.click("#tab-wallboard")
        play = sam.locator("#wb-recordings button", has_text="Play")
        await eventually(lambda: _refreshed_count(sam), timeout=20, what="the recording listed")
        await play.first.click()
        player = sam.locator("#rec-player")
        await expect(player).to_be_visible()
        duration = await eventually(lambda: sam.evaluate(
            "(() => { const v = document.getElementById('rec-player'); return v.readyState >= 1 && v.duration > 0"
            " ? v.duration : null; })()"), timeout=20, what="the recording's metadata in the player")
        assert duration > 1.5  # the video recorded after the resume at least (the pause is not in the file)
        for ctx in (agent_ctx, caller_ctx, sam_ctx):
            await ctx.close()


async def _decoded(page) -> int:
    return ((await console_stats(page) or {}).get("videoIn") or {}).get("framesDecoded", 0)


async def _decoded_past(page, count: int) -> bool:
    return await _decoded(page) > count


async def _refreshed_count(page) -> bool:
    """Refresh the wallboard's recordings list (the archive files a recording a moment after the call ends)."""
    await page.click("#wb-recordings-refresh")
    await page.wait_for_timeout(200)
    return await page.locator("#wb-recordings button", has_text="Play").count() > 0
