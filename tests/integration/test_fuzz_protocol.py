"""Protocol fuzzing on a real running gateway: at least 10,000 generated messages (valid ones mutated by a seeded
generator, tests/support/fuzz.py) over the caller and the agent WebSockets. Every one must be answered by a typed
error or handled: no internal error, no unhandled exception in the server, no socket closed except by the protocol.

CALLIN_FUZZ_MESSAGES and CALLIN_FUZZ_SEED change the run (the seed is printed on failure)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from tests.support.api import Api
from tests.support.clients import WsClient
from tests.support.fuzz import AGENT_TYPES, CALLER_TYPES, Fuzzer
from tests.support.server import running_gateway

pytestmark = pytest.mark.media

TOTAL = int(os.environ.get("CALLIN_FUZZ_MESSAGES", "10000"))
SEED = int(os.environ.get("CALLIN_FUZZ_SEED", "16"))
BATCH = 50
PROTOCOL_CLOSES = {4400, 4401, 4408, 4409}  # protocol error, unauthorized, hello timeout, replaced


class Errors(logging.Handler):
    """Error records of the server's stdlib loggers (aiohttp's 'Error handling request', asyncio's task errors)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


class Side:
    def __init__(self, gw: Any, role: str, kinds: list[str], token: str) -> None:
        self.gw = gw
        self.role = role
        self.kinds = kinds
        self.token = token
        self.ws: WsClient | None = None
        self.sockets = 0
        self.closes: list[int | None] = []
        self.replies: list[dict[str, Any]] = []

    async def ensure(self, fuzzer: Fuzzer) -> None:
        if self.ws is not None and self.ws.close_code is None and not self.ws.ws.closed:
            pass
        else:
            if self.ws is not None:
                self.replies.extend(self.ws.messages)
                await self.ws.close()
            self.ws = WsClient(self.gw.base_url, f"/ws/{self.role}")
            await self.ws.connect()
            self.sockets += 1
            welcome = await self.ws.request({"type": "hello", "token": self.token})
            assert welcome["type"] == "welcome", welcome
        board = self.gw.board
        if self.role == "caller":
            queued = [m["call_id"] for m in self.ws.messages if m.get("type") == "call.queued"]
            call = board.calls.get(queued[-1]) if queued else None
            if call is None or call.state.value == "ended" or call.callback:
                answer = await self.ws.request({"type": "call.start", "call_type": "voice"})
                assert answer["type"] in ("call.queued", "error"), answer
            queued = [m["call_id"] for m in self.ws.messages if m.get("type") == "call.queued"]
            if queued:
                fuzzer.call_id = queued[-1]
        else:
            state = board.agents.get("sam")
            if state is not None and state.status.value in ("away", "offline"):
                await self.ws.request({"type": "agent.status", "status": "available"})
            call = board.calls.get(state.call_id or "") if state is not None else None
            if call is not None and call.state.value == "offered" and fuzzer.rng.random() < 0.7:
                await self.ws.request({"type": "call.accept", "call_id": call.id})  # so in-call messages get deep

    async def batch(self, fuzzer: Fuzzer, count: int) -> int:
        """Send up to `count` messages (a bye ends the batch); returns how many were sent."""
        assert self.ws is not None and self.ws.ws is not None
        sent_bye = False
        sent = 0
        start = len(self.ws.messages)
        while sent < count and not sent_bye:
            kind, raw = fuzzer.message(self.kinds, self.ws.next_id())
            sent_bye = kind == "bye"
            try:
                if isinstance(raw, bytes):
                    await self.ws.ws.send_bytes(raw)
                else:
                    await self.ws.ws.send_str(raw)
            except ConnectionError:
                break  # closed by the protocol meanwhile (replaced): checked below
            sent += 1
        try:
            ping = self.ws.next_id()
            await self.ws.send({"type": "ping", "id": ping})
            await self.ws.wait(lambda m: m.get("id") == ping, timeout=60, since=start)
        except (AssertionError, ConnectionError):
            await asyncio.wait_for(self.ws._reader, 10)  # the socket closed: wait for its close code
            code = self.ws.close_code
            self.closes.append(code)
            assert code in PROTOCOL_CLOSES or (code == 1000 and sent_bye), \
                f"{self.role} socket closed with {code} (seed {SEED}); last messages {self.ws.messages[-5:]}"
        return sent


async def test_fuzzed_protocol_messages_never_crash_the_gateway(caller_token):
    errors = Errors()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    sdp = await offer_sdp()
    began = time.monotonic()
    try:
        async with running_gateway(resume_grace_s=1.0) as gw:
            api = Api(gw.base_url)
            status, login = await api.login("sam", "sam-demo")
            assert status == 200
            fuzzer = Fuzzer(SEED, sdp)
            caller = Side(gw, "caller", CALLER_TYPES, caller_token(sub="fuzz-caller"))
            agent = Side(gw, "agent", AGENT_TYPES, login["token"])
            sent = 0
            while sent < TOTAL:
                for side in (caller, agent):
                    await side.ensure(fuzzer)
                    sent += await side.batch(fuzzer, BATCH)
            for side in (caller, agent):
                await side.ensure(fuzzer)
                assert (await side.ws.request({"type": "ping"}))["type"] == "pong"
                side.replies.extend(side.ws.messages)
                await side.ws.close()
            async with aiohttp.ClientSession() as http, http.get(gw.base_url + "/healthz") as r:
                assert r.status == 200
            internal = [m for side in (caller, agent) for m in side.replies
                        if m.get("type") == "error" and m.get("code") == "internal_error"]
            assert not internal, f"internal errors (seed {SEED}): {internal[:3]}"
            codes = {m.get("code") for side in (caller, agent) for m in side.replies if m.get("type") == "error"}
            # the run reached the parser, the schema and the engine
            assert {"bad_json", "invalid_message", "unknown_type"} <= codes, codes
            kinds: dict[str, int] = {}
            for side in (caller, agent):
                for m in side.replies:
                    kinds[str(m.get("type"))] = kinds.get(str(m.get("type")), 0) + 1
            print("fuzz replies:", dict(sorted(kinds.items())), "error codes:", sorted(map(str, codes)))
            print(f"fuzz: {sent} messages, seed {SEED}, {time.monotonic() - began:.1f} s, "
                  f"sockets {caller.sockets}+{agent.sockets}, closes {caller.closes + agent.closes}, "
                  f"{len(codes)} error codes")
            await api.close()
    finally:
        logging.getLogger().removeHandler(errors)
        loop.set_exception_handler(previous_handler)
    assert not errors.records, [f"{r.name}: {r.getMessage()}" for r in errors.records[:5]]
    assert not loop_errors, loop_errors[:3]
