"""The caller widget embedded in an integrator's site (another origin): CORS on the widget's files and the caller's
file API for the origins in embed_origins, preflights answered, the caller socket's Origin checked; the console,
the agent socket, sign-in and the REST management API never carry CORS headers."""

from __future__ import annotations

import json

import aiohttp
import pytest

from gateway.auth import mint_caller_token
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.server import TEST_SECRET, running_gateway

SHOP = "https://shop.example.com"
EVIL = "https://evil.example"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def token(sub: str = "cust-embed") -> str:
    return mint_caller_token(TEST_SECRET, sub=sub, name="Dana Embed")


def preflight(method: str = "POST", headers: str = "authorization,content-type", origin: str = SHOP) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_listed_origin_gets_cors_on_the_widget_files_and_the_callers_file_api():
    async with running_gateway(embed_origins=[SHOP, "https://*.example.org"]) as gw:
        base = gw.base_url
        ws, call_id = await caller_socket(base, token())
        files = f"{base}/api/v1/calls/{call_id}/attachments"
        async with aiohttp.ClientSession() as http:
            for name in ("callin-widget.js", "callin-client.js", "callin-widget.css.js", "icons.js"):
                async with http.get(f"{base}/static/caller/{name}", headers={"Origin": SHOP}) as r:
                    assert r.status == 200 and "javascript" in r.headers["Content-Type"]
                    assert r.headers["Access-Control-Allow-Origin"] == SHOP
                    assert r.headers["Vary"] == "Origin"
                    assert "Access-Control-Allow-Credentials" not in r.headers  # the caller's token, never cookies
            async with http.get(f"{base}/static/caller/callin-widget.js", headers={"Origin": "https://m.example.org"}) as r:
                assert r.headers["Access-Control-Allow-Origin"] == "https://m.example.org"  # a listed subdomain
            # The upload's preflight (Authorization + a non-simple Content-Type), then the upload itself.
            async with http.options(f"{files}?name=receipt.png", headers=preflight()) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == SHOP
                assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "HEAD", "POST"}
                assert set(r.headers["Access-Control-Allow-Headers"].split(", ")) == {"authorization", "content-type"}
                assert r.headers["Access-Control-Max-Age"] == "600" and r.headers["Vary"] == "Origin"
            async with http.post(f"{files}?name=receipt.png", data=PNG, headers={
                    "Origin": SHOP, "Authorization": f"Bearer {token()}", "Content-Type": "application/octet-stream"}) as r:
                body = await r.json()
                assert r.status == 201, body
                assert r.headers["Access-Control-Allow-Origin"] == SHOP
            url = base + body["url"]
            async with http.options(url, headers=preflight("GET", "authorization")) as r:
                assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == SHOP
            async with http.get(url, headers={"Origin": SHOP, "Authorization": f"Bearer {token()}"}) as r:
                assert r.status == 200 and await r.read() == PNG
                assert r.headers["Access-Control-Allow-Origin"] == SHOP
                assert r.headers["Access-Control-Expose-Headers"] == "Content-Disposition"
            # An error of a caller-facing path is readable by the page too (it shows the reason).
            async with http.get(f"{files}/nope", headers={"Origin": SHOP, "Authorization": f"Bearer {token()}"}) as r:
                assert r.status == 404 and r.headers["Access-Control-Allow-Origin"] == SHOP
                assert (await r.json())["code"] == "unknown_attachment"
            # The demo's token endpoint (demo mode) is caller-facing as well.
            async with http.options(f"{base}/api/v1/demo/token", headers=preflight("POST", "content-type")) as r:
                assert r.status == 204
            async with http.post(f"{base}/api/v1/demo/token", json={"name": "Dana"}, headers={"Origin": SHOP}) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == SHOP
        await ws.close()


async def test_an_origin_not_listed_gets_no_cors_headers_and_a_refused_preflight():
    async with running_gateway(embed_origins=[SHOP]) as gw:
        base = gw.base_url
        ws, call_id = await caller_socket(base, token())
        files = f"{base}/api/v1/calls/{call_id}/attachments"
        async with aiohttp.ClientSession() as http:
            for origin in (EVIL, "null", "http://shop.example.com", "https://shop.example.com:8443",
                           "https://a.shop.example.com"):
                async with http.get(f"{base}/static/caller/callin-widget.js", headers={"Origin": origin}) as r:
                    assert r.status == 200  # served (a same-origin page may load it) ...
                    assert "Access-Control-Allow-Origin" not in r.headers, origin  # ... but not readable there
                    assert r.headers["Vary"] == "Origin"
                async with http.options(files, headers=preflight(origin=origin)) as r:
                    body = await r.json()
                    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
                    assert body["code"] == "origin_not_allowed" and "CALLIN_EMBED_ORIGINS" in body["reason"]
            # A listed origin asking for more than the caller API needs.
            async with http.options(files, headers=preflight("DELETE")) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
                assert (await r.json())["code"] == "method_not_allowed"
            async with http.options(files, headers=preflight("POST", "authorization,x-api-key")) as r:
                body = await r.json()
                assert r.status == 403 and body["code"] == "header_not_allowed" and "x-api-key" in body["reason"]
            async with http.post(files, data=PNG, headers={"Origin": EVIL, "Authorization": f"Bearer {token()}"}) as r:
                assert "Access-Control-Allow-Origin" not in r.headers
        await ws.close()


async def test_agent_admin_and_management_endpoints_never_get_cors_headers():
    async with running_gateway(embed_origins=["*"]) as gw:
        base = gw.base_url
        api = Api(base)
        await api.login("admin", "admin-demo")
        ws, call_id = await caller_socket(base, token())
        staff = {"Origin": SHOP, "Authorization": f"Bearer {api.bearer}"}
        paths = ["/console/", "/static/console/console.js", "/static/console/console.css", "/api/v1/agent/session",
                 "/api/v1/calls", f"/api/v1/calls/{call_id}", f"/api/v1/calls/{call_id}/history", "/api/v1/agents",
                 "/api/v1/queues", "/api/v1/users", "/api/v1/api-keys", "/api/v1/webhooks", "/api/v1/stats",
                 "/api/v1/openapi.json", "/api/v1/protocol/schema", "/metrics", "/healthz"]
        async with aiohttp.ClientSession() as http:
            for path in paths:
                async with http.get(base + path, headers=staff) as r:
                    assert r.status == 200, (path, r.status)
                    assert not [h for h in r.headers if h.lower().startswith("access-control-")], path
                async with http.options(base + path, headers=preflight("GET", "authorization")) as r:
                    assert r.status in (403, 404, 405), (path, r.status)
                    assert not [h for h in r.headers if h.lower().startswith("access-control-")], path
            for path in ("/api/v1/agent/login", "/api/v1/agent/refresh", f"/api/v1/calls/{call_id}/snapshot",
                         "/api/v1/users", "/api/v1/webhooks"):
                async with http.post(base + path, json={}, headers=staff) as r:
                    assert not [h for h in r.headers if h.lower().startswith("access-control-")], path
                async with http.options(base + path, headers=preflight("POST", "authorization,content-type")) as r:
                    assert r.status == 405, (path, r.status)
                    assert not [h for h in r.headers if h.lower().startswith("access-control-")], path
            # The agent socket keeps its own Origin check (CALLIN_ALLOWED_ORIGINS), which embed_origins does not widen.
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(base.replace("http", "ws") + "/ws/agent", headers={"Origin": SHOP})
            assert info.value.status == 403
        await ws.close()
        await api.close()


async def caller_hello(base: str, origin: str | None) -> dict:
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(base.replace("http", "ws") + "/ws/caller", headers=headers) as ws:
            await ws.send_json({"type": "hello", "id": "h1", "token": token()})
            return json.loads((await ws.receive(timeout=10)).data)


async def test_the_caller_socket_checks_a_browsers_origin():
    async with running_gateway(embed_origins=[SHOP]) as gw:
        base = gw.base_url
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(base.replace("http", "ws") + "/ws/caller", headers={"Origin": EVIL})
            assert info.value.status == 403
            async with http.get(base + "/ws/caller", headers={
                    "Origin": EVIL, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
                body = await r.json()
                assert r.status == 403 and body["code"] == "origin_not_allowed"
                assert f"origin '{EVIL}' may not use the caller socket" in body["reason"]
                assert "Access-Control-Allow-Origin" not in r.headers
        assert (await caller_hello(base, SHOP))["type"] == "welcome"
        assert (await caller_hello(base, None))["type"] == "welcome"  # native apps send no Origin
        assert (await caller_hello(base, base))["type"] == "welcome"  # the gateway's own pages (/demo/, /caller/)
    # Outside demo mode with nothing configured: only the gateway's own pages (and clients without Origin).
    async with running_gateway(demo=False) as gw:
        base = gw.base_url
        assert (await caller_hello(base, base))["type"] == "welcome"
        assert (await caller_hello(base, None))["type"] == "welcome"
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(base.replace("http", "ws") + "/ws/caller", headers={"Origin": SHOP})
            async with http.get(base + "/static/caller/callin-widget.js", headers={"Origin": SHOP}) as r:
                assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    # Demo mode with nothing configured: every origin may embed the demo.
    async with running_gateway() as gw:
        assert (await caller_hello(gw.base_url, EVIL))["type"] == "welcome"
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.base_url + "/static/caller/callin-widget.js", headers={"Origin": EVIL}) as r:
                assert r.headers["Access-Control-Allow-Origin"] == EVIL


async def test_agents_still_download_files_without_cors():
    """The same file URLs serve the console (same origin, its session) exactly as before."""
    async with running_gateway(embed_origins=[SHOP]) as gw:
        agent = await agent_socket(gw.base_url)
        ws, call_id = await caller_socket(gw.base_url, token())
        offered = await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": offered["call_id"]})
        api = Api(gw.base_url)
        await api.login("alice", "alice-demo")
        async with api.http.post(f"{gw.base_url}/api/v1/calls/{call_id}/attachments?name=a.png", data=PNG,
                                 headers={"Authorization": f"Bearer {api.bearer}"}) as r:
            assert r.status == 201 and "Access-Control-Allow-Origin" not in r.headers
            assert r.headers["Vary"] == "Origin"
        await api.close()
        await agent.close()
        await ws.close()
