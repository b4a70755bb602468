"""A small REST client for the API tests, and WebSocket helpers that place calls without media."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp

from .clients import WsClient


class Api:
    """One HTTP client with its own cookie jar (accepting cookies from 127.0.0.1)."""

    def __init__(self, base_url: str, bearer: str | None = None) -> None:
        self.base_url = base_url
        self.bearer = bearer
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, username: str, password: str, *, keep_token: bool = True) -> tuple[int, Any]:
        status, body = await self.request("POST", "/api/v1/agent/login",
                                          json={"username": username, "password": password}, auth=False)
        if status == 200 and keep_token:
            self.bearer = body["token"]
        return status, body

    async def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                      headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, Any]:
        headers = dict(headers or {})
        if auth and self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        async with self.http.request(method, self.base_url + path, json=json, params=params,
                                     headers=headers) as response:
            body = await response.json(content_type=None)
            return response.status, body

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, json=json if json is not None else {}, **kw)

    async def ended_record(self, call_id: str, timeout: float = 10) -> dict[str, Any]:
        """The call's record once the recorder has written its end."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = await self.get(f"/api/v1/calls/{call_id}")
            if status == 200 and body.get("outcome"):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"no ended record for {call_id}: {status} {body}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.http.close()


async def agent_socket(base_url: str, username: str = "alice", password: str = "alice-demo",
                       available: bool = True) -> WsClient:
    api = Api(base_url)
    status, body = await api.login(username, password)
    await api.close()
    assert status == 200, body
    ws = WsClient(base_url, "/ws/agent")
    await ws.connect()
    welcome = await ws.request({"type": "hello", "token": body["token"]})
    assert welcome["type"] == "welcome", welcome
    if available:
        await ws.request({"type": "agent.status", "status": "available"})
    return ws


async def caller_socket(base_url: str, token: str, call_type: str = "voice", **extra: Any) -> tuple[WsClient, str]:
    ws = WsClient(base_url, "/ws/caller")
    await ws.connect()
    welcome = await ws.request({"type": "hello", "token": token})
    assert welcome["type"] == "welcome", welcome
    queued = await ws.request({"type": "call.start", "call_type": call_type, **extra})
    assert queued["type"] == "call.queued", queued
    return ws, queued["call_id"]


async def metric(base_url: str, sample: str) -> float:
    """The value of one sample of the server's /metrics: its name with its labels, as Prometheus writes it
    (`callin_cluster_nodes`, `callin_transcripts_finished_total{complete="true"}`); fails if it is not there."""
    async with aiohttp.ClientSession() as http, http.get(base_url + "/metrics") as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert found, f"{sample} is not in /metrics"
    return float(found.group(1))
