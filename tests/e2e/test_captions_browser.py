"""Live captions in the agent console (real Chromium): a real aiortc caller speaks (espeak-ng), the gateway's
pocketsphinx recognises it with a grammar set by CALLIN_TRANSCRIPT_GRAMMAR (a closed vocabulary, as a card-taking
queue would use), and the console's captions panel shows the caller's words, with the card number it spoke
redacted, as text. Run inside a loopback-only network namespace (scripts/test.sh)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from playwright.async_api import expect

from gateway.config import QueueConfig
from gateway.models import AgentStatus
from tests.e2e.browser import DESKTOP, eventually, new_page, open_console, shot
from tests.support.clients import Caller
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
