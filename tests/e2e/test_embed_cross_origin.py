"""The caller widget on an integrator's page of another origin, embedded with ONE script tag, in real Chromium.

A tiny aiohttp server on another port plays the integrator: its page carries the one tag (and a strict Content
Security Policy that allows only its own scripts and the gateway) and its backend mints caller tokens. A real aiortc
agent answers. The caller chats, sends a file (the agent gets the same bytes), and a picture the agent pushes
renders on the caller's page. A page whose origin is not in embed_origins gets neither the widget's modules nor the
caller socket.

Run inside a loopback-only network namespace, one browser call at a time:
    unshare -rn sh -c 'ip link set lo up; python -m pytest tests/e2e/test_embed_cross_origin.py -x -q'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import expect

from gateway.auth import mint_caller_token
from tests.e2e.browser import DESKTOP, PHONE, eventually, new_page, shot, widget
from tests.e2e.test_incall_browser import png
from tests.support.clients import Agent
from tests.support.server import TEST_SECRET, free_port, running_gateway

pytestmark = pytest.mark.browser


WATCH_CSP = """window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));"""


@asynccontextmanager
async def integrator_site(port: int, tag: str, *, csp: str | None = None,
                          files: Path | None = None) -> AsyncIterator[str]:
    """The integrator's site on its own port (another origin than the gateway's): a page with `tag`, and its
    backend's token endpoint (POST /token, which mints a caller token for its signed-in user as a real backend
    would). `files`: a folder served at /static/caller/ (a copy of the widget on the integrator's own origin)."""

    async def page(request: web.Request) -> web.Response:
        body = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head>
<body><h1>Acme Shop</h1><p id="status">Questions? Call us.</p>
<script src="/watch-csp.js"></script>
{tag}
</body></html>"""
        headers = {"Content-Security-Policy": csp} if csp else {}
        return web.Response(text=body, content_type="text/html", headers=headers)

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token": mint_caller_token(TEST_SECRET, sub="shop-user-7", name="Dana Shopper")})

    async def watch_csp(request: web.Request) -> web.Response:  # the page's own script: what its CSP blocked
        return web.Response(text=WATCH_CSP, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/watch-csp.js", watch_csp)
    app.router.add_post("/token", token)
    if files is not None:
        app.router.add_static("/static/caller/", files)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def strict_csp(gateway: str) -> str:
    """What docs/integration.md tells integrators to allow for the widget, nothing more."""
    ws = gateway.replace("http", "ws", 1)
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' {gateway}",
        f"connect-src 'self' {gateway} {ws}",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: mediastream:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
    ])


async def test_one_tag_embed_on_another_origin_call_chat_file_and_pushed_picture(browser, tmp_path):
    site_port = free_port()
    site = f"http://127.0.0.1:{site_port}"
    async with running_gateway(embed_origins=[site]) as gw:
        gateway = gw.base_url
        tag = (f'<script type="module" src="{gateway}/static/caller/callin-widget.js" data-token-url="/token" '
               f'data-brand="Acme Shop" data-accent="#0f766e" data-ask-location="false" '
               f'data-call-types="voice,video"></script>')
        agent = Agent(gateway)
        await agent.connect()
        async with integrator_site(site_port, tag, csp=strict_csp(gateway)) as origin:
            assert origin == site and origin != gateway
            context, page = await new_page(browser, origin, viewport=PHONE, is_mobile=True)
            try:
                await page.goto("/")
                # The one tag mounted a floating button by itself (no script of the page's own).
                await page.wait_for_function("window.Callin && Callin.widgets.length === 1")
                launcher = widget(page, ".launcher")
                await expect(launcher).to_be_visible()
                assert await launcher.evaluate("b => getComputedStyle(b).position") == "fixed"  # styled under the CSP
                await launcher.click()
                await eventually(lambda: page.evaluate("Callin.widgets[0].client?.state === 'ready'"),
                                 what="the widget's socket to the gateway (another origin)")
                assert await page.evaluate("Callin.widgets[0].client.gateway") == gateway
                types = await widget(page, ".option[data-call-type]").evaluate_all(
                    "els => els.map(e => e.dataset.callType)")
                assert types == ["voice", "video"]
                await widget(page, '.option[data-call-type="voice"]').click()

                offer = await agent.wait_offer(timeout=15)
                call_id = offer["call_id"]
                assert offer["card"]["identity"]["name"] == "Dana Shopper"  # identity from the integrator's backend
                await agent.accept(call_id)
                await expect(widget(page, ".presence .who")).to_contain_text("(demo agent)")
                assert agent.peer is not None
                await agent.peer.track_event.wait()
                sink = agent.peer.sinks["audio"]
                mark = sink.mark()
                await eventually(lambda: sink.audio_since(mark) > 25, what="the caller's microphone at the agent")

                # Chat both ways.
                await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "Hello from support"})
                await widget(page, '[data-action="chat"]').click()
                await expect(widget(page, ".messages .msg.theirs").last).to_contain_text("Hello from support")
                await widget(page, ".chat-input").fill("My order did not arrive")
                await widget(page, ".composer .send").click()
                line = await agent.ws.wait(lambda m: m.get("type") == "chat.message"
                                           and m["message"].get("text") == "My order did not arrive")
                assert line["message"]["from"]["role"] == "caller"

                # The caller sends a file: an upload across origins (preflighted); the agent gets the same bytes.
                photo = png(120, 80, (200, 40, 40))
                path = tmp_path / "parcel.png"
                path.write_bytes(photo)
                await widget(page, ".file-input").set_input_files(str(path))
                sent = await agent.ws.wait(lambda m: m.get("type") == "chat.message"
                                           and (m["message"].get("attachment") or {}).get("name") == "parcel.png")
                url = gateway + sent["message"]["attachment"]["url"]
                async with aiohttp.ClientSession() as http:
                    async with http.get(url, headers={"Authorization": f"Bearer {agent.token}"}) as r:
                        assert r.status == 200 and await r.read() == photo
                await eventually(lambda: widget(page, ".messages .msg.mine .att-img img").evaluate(
                    "img => img.complete && img.naturalWidth === 120"), what="the caller's own photo in its chat")
                await widget(page, '[data-action="chat-close"]').click()

                # The agent pushes a picture: it renders on the integrator's page (fetched from the gateway).
                label = png(64, 48, (14, 116, 144))
                async with aiohttp.ClientSession() as http:
                    async with http.post(f"{gateway}/api/v1/calls/{call_id}/attachments?name=label.png", data=label,
                                         headers={"Authorization": f"Bearer {agent.token}"}) as r:
                        assert r.status == 201
                        uploaded = await r.json()
                pushed = await agent.ws.request({"type": "content.push", "call_id": call_id, "kind": "image",
                                                 "title": "Your return label", "attachment_id": uploaded["id"]})
                assert pushed["type"] == "content.sent", pushed
                picture = widget(page, ".tray .pushed.image img")
                await expect(picture).to_be_visible()
                await eventually(lambda: picture.evaluate("img => img.complete && img.naturalWidth === 64"),
                                 what="the pushed picture on the integrator's page")
                await shot(page, "embed-cross-origin-caller")
                assert await page.evaluate("window.__csp") == []  # nothing the documented CSP had to block

                await agent.hangup(call_id)
                await expect(widget(page, '.view[data-view="ended"]')).to_be_visible()
            finally:
                await context.close()
                await agent.close()


async def test_an_origin_not_listed_gets_neither_the_widget_nor_the_caller_socket(browser):
    listed = f"http://127.0.0.1:{free_port()}"
    async with running_gateway(embed_origins=[listed]) as gw:
        gateway = gw.base_url
        # The one tag on a site that is not listed: the browser refuses the module (no CORS header).
        tag = (f'<script type="module" src="{gateway}/static/caller/callin-widget.js" data-token-url="/token" '
               'onerror="window.__widgetRefused = true"></script>')
        async with integrator_site(free_port(), tag) as origin:
            context, page = await new_page(browser, origin, viewport=DESKTOP)
            try:
                await page.goto("/")
                await page.wait_for_function("window.__widgetRefused === true")
                assert await page.evaluate("typeof window.Callin") == "undefined"
                assert await widget(page, ".launcher").count() == 0
                # The page cannot read the caller API either (the preflight of an upload is refused).
                refused = await page.evaluate("""async (url) => {
                    try { await fetch(url, {method: "POST", headers: {Authorization: "Bearer x"}, body: "x"}); return false; }
                    catch (e) { return e instanceof TypeError; } }""", f"{gateway}/api/v1/calls/c/attachments")
                assert refused
            finally:
                await context.close()
        # The widget's files copied onto that site (served from its own origin), pointed at the gateway: the caller
        # socket refuses the page's origin, and the widget says it cannot reach the gateway.
        tag = ('<script type="module" src="/static/caller/callin-widget.js" data-token-url="/token" '
               f'data-gateway="{gateway}" data-ask-location="false"></script>')
        async with integrator_site(free_port(), tag, files=gw.settings.web_root / "caller") as origin:
            context, page = await new_page(browser, origin, viewport=DESKTOP)
            try:
                await page.goto("/")
                await page.wait_for_function("window.Callin && Callin.widgets.length === 1")
                await widget(page, ".launcher").click()
                await expect(widget(page, '.view[data-view="error"]')).to_be_visible()
                assert await page.evaluate("Callin.widgets[0].client?.state") != "ready"
            finally:
                await context.close()
