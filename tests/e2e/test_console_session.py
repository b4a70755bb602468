"""The console signs in with the HttpOnly session cookie only: no script-readable token, a reload keeps the
sign-in, sign-out ends the session on the server (real headless Chromium against the real gateway)."""

from __future__ import annotations

import pytest

from tests.e2e.browser import DESKTOP, eventually, new_page, open_console
from tests.support.api import Api

pytestmark = pytest.mark.browser


async def test_console_keeps_no_readable_token_and_sign_out_ends_the_session(gateway, browser):
    context, page = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    console_messages: list[str] = []
    page.on("console", lambda message: console_messages.append(message.text))
    await open_console(page, available=False)
    headers = (await page.request.get("/console/")).headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    cookie = next(c for c in await context.cookies() if c["name"] == "callin_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"].startswith("as_")
    readable = await page.evaluate("JSON.stringify([{...sessionStorage}, {...localStorage}, document.cookie])")
    assert cookie["value"] not in readable and "as_" not in readable

    await page.reload()  # the cookie keeps the agent signed in
    await page.wait_for_selector("#app:not([hidden])")
    await eventually(lambda: page.evaluate("document.getElementById('status-pill').dataset.status !== 'offline'"),
                     what="the console's socket after a reload")

    # the console runs under its CSP without a single violation
    assert not [m for m in console_messages if "Content Security Policy" in m], console_messages
    await page.click("#signout-button")
    await page.wait_for_selector("#signin:not([hidden])")
    stolen = Api(gateway.base_url, bearer=cookie["value"])  # the old token is dead on the server, not just forgotten
    status, body = await stolen.get("/api/v1/calls")
    assert status == 401 and body["code"] == "session_revoked"
    await stolen.close()
    await page.reload()
    await page.wait_for_selector("#signin:not([hidden])")
    await context.close()
