"""Live captions in real Chromium: a real aiortc caller speaks (espeak-ng), the gateway's pocketsphinx recognises it
with a grammar set by CALLIN_TRANSCRIPT_GRAMMAR (a closed vocabulary, as a card-taking queue would use), and the
agent console's captions panel shows the caller's words, with the card number it spoke redacted, as text. And the
caller widget: the caller is told the call is transcribed, and (the queue's caller_captions) sees what the agent
says. Run inside a loopback-only network namespace (scripts/test.sh)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.config import QueueConfig
from gateway.models import AgentStatus
from tests.e2e.browser import DESKTOP, eventually, new_page, open_console, open_demo, open_widget, shot, widget
from tests.support.clients import Agent, Caller
from tests.support.server import running_gateway
from tests.support.speech import CARD_DIGITS, SpeechTrack, espeak_available, spoken_digits, synthesize

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")]

PHRASE = "please call me back tomorrow morning"
GRAMMAR = ("#JSGF V1.0;\ngrammar callin;\n"
           "<digit> = zero | oh | one | two | three | four | five | six | seven | eight | nine;\n"
           "public <said> = (please call me back tomorrow morning | my card is <digit>+)+ ;\n")


async def test_the_console_shows_the_callers_words_as_captions_and_never_the_card_number(browser, caller_token):
    grammar = Path(tempfile.mkdtemp(prefix="callin-grammar-")) / "callin.gram"
    grammar.write_text(GRAMMAR)
    async with running_gateway(queues=[QueueConfig(name="default", transcript="on")],
                               transcript_grammar=grammar) as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(page)
        caller = Caller(gw.base_url, caller_token(sub="captions-1", name="Dana Whitfield"))
        await caller.connect()
        mic = SpeechTrack()
        await caller.start("voice", audio=mic)
        await page.wait_for_selector("#view-ringing:not([hidden])")
        await page.click("#accept-button")
        await eventually(lambda: gw.board.agent("alice").status is AgentStatus.BUSY, what="alice on the call")
        notice = await caller.ws.wait("transcript.notice")
        assert notice["active"] is True
        try:
            mic.say(synthesize(PHRASE))
            mic.say(synthesize(f"my card is {spoken_digits(CARD_DIGITS)}"))
            captions = page.locator("#captions")
            await expect(captions).to_be_visible(timeout=30_000)
            await expect(captions.locator("[data-testid=caption]").filter(has_text="call me back")).to_have_count(
                1, timeout=30_000)
            card = captions.locator("[data-testid=caption]").filter(has_text="[card number]")
            try:
                await expect(card).to_have_count(1, timeout=45_000)
            except AssertionError:
                raise AssertionError(f"captions: {await page.evaluate('callinConsole.captions')}") from None
            await expect(card.locator(".caption-who")).to_have_text("Dana Whitfield")
            shown = await eventually(lambda: page.evaluate("callinConsole.captions"), what="the captions")
            assert any(c["role"] == "caller" and c["final"] and "call me back" in c["text"] for c in shown), shown
            html = await captions.inner_html()
            assert CARD_DIGITS[:4] not in html and "four two" not in html
            await shot(page, "console-captions")
            await caller.hangup()
            await expect(page.locator("#captions")).to_be_hidden()
        finally:
            await caller.close()
            await context.close()


async def test_the_widget_tells_the_caller_and_shows_captions_when_the_queue_gives_them(browser):
    grammar = Path(tempfile.mkdtemp(prefix="callin-grammar-")) / "callin.gram"
    grammar.write_text(GRAMMAR)
    queue = QueueConfig(name="default", transcript="on", caller_captions=True)
    async with running_gateway(queues=[queue], transcript_grammar=grammar) as gw:
        context, page = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_demo(page)
        await open_widget(page)
        await widget(page, '.option[data-call-type="voice"]').click()
        agent = Agent(gw.base_url, "alice", "alice-demo")
        await agent.connect()
        mic = SpeechTrack()
        try:
            offer = await agent.wait_offer(30)
            await agent.accept(offer["call_id"], audio=mic)
            note = widget(page, ".transcript-note")
            await expect(note).to_be_visible(timeout=20_000)
            await expect(note).to_contain_text("This call is transcribed")
            mic.say(synthesize(PHRASE))
            captions = widget(page, ".captions-note")
            await expect(captions.locator(".cap-text")).to_contain_text("call me back", timeout=45_000)
            await expect(captions.locator(".cap-who")).to_have_text("Alice (demo agent)")
            mic.say(synthesize(f"my card is {spoken_digits(CARD_DIGITS)}"))
            await expect(captions.locator(".cap-text")).to_contain_text("[card number]", timeout=45_000)
            assert CARD_DIGITS[:4] not in await captions.inner_html()
            await shot(page, "widget-captions")
            await agent.hangup(offer["call_id"])
            await expect(note).to_be_hidden(timeout=20_000)
        finally:
            await agent.close()
            await context.close()


async def test_a_supervisor_monitoring_a_transcribed_call_sees_its_captions(browser, caller_token):
    """Issue 15: a supervisor who monitors a transcribed call from the wallboard is told it is transcribed (the
    captions panel shows before anyone speaks) and sees what the caller says, as text, in the supervise panel."""
    grammar = Path(tempfile.mkdtemp(prefix="callin-grammar-")) / "callin.gram"
    grammar.write_text(GRAMMAR)
    async with running_gateway(queues=[QueueConfig(name="default", transcript="on")],
                               transcript_grammar=grammar) as gw:
        context, sam = await new_page(browser, gw.base_url, viewport=DESKTOP)
        await open_console(sam, "sam", "sam-demo", available=False)
        await sam.click("#tab-wallboard")
        agent = Agent(gw.base_url, "alice", "alice-demo")
        await agent.connect()
        caller = Caller(gw.base_url, caller_token(sub="captions-sv", name="Dana Whitfield"))
        await caller.connect()
        mic = SpeechTrack()
        try:
            queued = await caller.start("voice", audio=mic)
            call_id = queued["call_id"]
            offer = await agent.wait_offer()
            await agent.accept(offer["call_id"])
            assert (await agent.ws.wait("transcript.notice"))["active"] is True
            row = sam.locator(f'#wb-calls tr[data-call-id="{call_id}"]')
            await row.locator('[data-supervise="monitor"]').click()
            await expect(sam.locator("#wb-supervise")).to_be_visible()
            await expect(sam.locator("#sv-eyebrow")).to_have_text("Monitoring")
            panel = sam.locator("#sv-captions")
            await expect(panel).to_be_visible()  # told by transcript.notice, before anything was said
            await eventually(lambda: "sam" in gw.board.call(call_id).supervisors, what="sam in the call")
            mic.say(synthesize(PHRASE))
            line = panel.locator("[data-testid=caption]").filter(has_text="call me back")
            await expect(line).to_have_count(1, timeout=45_000)
            await expect(line.locator(".caption-who")).to_have_text("Dana Whitfield")
            shown = await eventually(
                lambda: sam.evaluate("callinConsole.supervisedCaptions.filter((c) => c.final)"), what="a final line")
            assert any(c["role"] == "caller" and "call me back" in c["text"] for c in shown), shown
            assert await sam.evaluate("callinConsole.captions") == []  # the agent's own panel is not used
            await expect(sam.locator("#sv-novideo")).to_be_visible()  # a voice call: no black video box
            await expect(sam.locator("#sv-text")).to_have_text("You hear the caller and the agent. Nobody hears you.")
            await shot(sam, "console-supervisor-captions")
            await sam.click("#sv-stop")
            await expect(sam.locator("#wb-supervise")).to_be_hidden()
            assert await sam.evaluate("callinConsole.supervisedCaptions") == []
        finally:
            await caller.close()
            await agent.close()
            await context.close()
