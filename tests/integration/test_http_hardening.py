"""HTTP hardening: slow request heads are cut off, the console carries CSP/frame-ancestors (and HSTS over HTTPS),
and the agent socket's Origin check compares with the configured public origins, not the request's Host."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.api import Api
from tests.support.server import running_gateway


async def test_a_slow_request_head_is_cut_off():
    async with running_gateway(http_header_timeout_s=1) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.settings.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 8:  # a header line every 0.2 s, never the blank line that ends the head
            try:
                writer.write(b"X-Slow: a\r\n")
                await writer.drain()
                data = await asyncio.wait_for(reader.read(1024), 0.2)
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                closed = True
                break
            if data == b"" or data.startswith(b"HTTP/1.1 4"):
                closed = True
                break
        assert closed and time.monotonic() - started < 5
        writer.close()
        # a client that sends its head in time is served as usual
        api = Api(gw.base_url)
        status, body = await api.get("/healthz")
        assert status == 200
        await api.close()


async def test_console_security_headers_and_hsts():
    async with running_gateway() as gw:
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.base_url + "/console/") as r:
                assert r.status == 200
                csp = r.headers["Content-Security-Policy"]
                assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "object-src 'none'" in csp
                assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
                assert "Strict-Transport-Security" not in r.headers  # plain HTTP: HSTS would be ignored anyway
            async with http.get(gw.base_url + "/api/v1/calls") as r:
                assert r.status == 401 and r.headers["X-Content-Type-Options"] == "nosniff"
    async with running_gateway(public_url="https://callin.example.com") as gw:
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.base_url + "/console/") as r:
                assert r.headers["Strict-Transport-Security"] == f"max-age={180 * 24 * 3600}"


async def test_origin_check_ignores_the_requests_own_host_header():
    async with running_gateway() as gw:
        base = gw.base_url
        api = Api(base)
        await api.login("alice", "alice-demo")
        ws_url = base.replace("http", "ws") + "/ws/agent"
        # the attacker's page at evil.example, reached through a name that points at the gateway: Host matches Origin
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await api.http.ws_connect(ws_url, headers={"Origin": "http://evil.example:8080", "Host": "evil.example:8080"})
        assert info.value.status == 403
        status, body = await api.post("/api/v1/agent/refresh", auth=False,
                                      headers={"Origin": "http://evil.example", "Host": "evil.example"})
        assert status == 403 and body["code"] == "origin_not_allowed"
        ws = await api.http.ws_connect(ws_url, headers={"Origin": base})  # the configured origin is fine
        await ws.close()
        ws = await api.http.ws_connect(ws_url, headers={"Origin": f"http://localhost:{gw.settings.port}"})
        await ws.close()
        await api.close()
    async with running_gateway(public_url="https://callin.example.com") as gw:
        api = Api(gw.base_url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:  # with a public URL, only that origin
            await api.http.ws_connect(gw.base_url.replace("http", "ws") + "/ws/agent",
                                      headers={"Origin": gw.base_url})
        assert info.value.status == 403
        ws = await api.http.ws_connect(gw.base_url.replace("http", "ws") + "/ws/agent",
                                       headers={"Origin": "https://callin.example.com"})
        await ws.close()
        await api.close()
