"""One caller identity (or one address) cannot fill the queue: limits on sessions, live calls and call starts, and a
new call from the same caller replaces its waiting one (keeping the place in line)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import WsClient
from signaling.keys import RECORDER
from tests.support.server import LIMIT_DEFAULTS, running_gateway


async def _hello(gw, token: str, headers: dict[str, str] | None = None) -> tuple[WsClient, dict]:
    ws = WsClient(gw.base_url, "/ws/caller")
    await ws.connect(headers=headers)
    return ws, await ws.request({"type": "hello", "token": token})


@pytest.fixture
async def gateway():
    """The running gateway with the production defaults of the caller limits."""
    async with running_gateway(**LIMIT_DEFAULTS) as gw:
        yield gw


async def _until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_one_token_dropping_sockets_cannot_fill_the_queue(caller_token):
    async with running_gateway(**LIMIT_DEFAULTS | dict(max_queue_length=5, caller_call_starts_per_minute=1000,
                               caller_max_sessions_per_subject=3, resume_grace_s=60)) as gw:
        token = caller_token(sub="flooder")
        ids = []
        for _ in range(30):  # each: hello, call.start, then the socket goes without bye
            ws, call_id = await caller_socket(gw.base_url, token)
            ids.append(call_id)
            await ws.close()
        board = gw.board
        await _until(lambda: all(board.calls[i].state.value == "ended" for i in ids[:-1]))
        assert [c.id for c in board.queue.ordered()] == [ids[-1]]
        assert {board.calls[i].end_reason.value for i in ids[:-1]} == {"replaced"}
        assert len([s for s in board.sessions.of_role("caller") if s.principal.subject == "flooder"]) <= 3
        # a legitimate caller still gets in line, second
        legit, legit_id = await caller_socket(gw.base_url, caller_token(sub="legit"))
        position = legit.of_type("call.queued")[-1]["position"]
        assert position == 2 and board.calls[legit_id].state.value == "queued"
        await legit.close()


async def test_a_returning_caller_keeps_its_place_and_the_old_call_is_told(gateway, caller_token):
    first, first_id = await caller_socket(gateway.base_url, caller_token(sub="back"))
    other, other_id = await caller_socket(gateway.base_url, caller_token(sub="other"))
    # the same person, from a new connection without the resume token (an app restart)
    again, again_id = await caller_socket(gateway.base_url, caller_token(sub="back"))
    queued = again.of_type("call.queued")[-1]
    assert queued["position"] == 1 and queued["queue_length"] == 2
    ended = await first.wait(lambda m: m.get("type") == "call.ended" and m["call_id"] == first_id)
    assert ended["reason"] == "replaced"
    assert [c.id for c in gateway.board.queue.ordered()] == [again_id, other_id]
    assert any(e.kind == "replaced" for e in gateway.board.calls[first_id].events)
    admin = Api(gateway.base_url)
    await admin.login("admin", "admin-demo")
    record = await admin.ended_record(first_id)
    assert record["outcome"] == "replaced" and record["end_reason"] == "replaced"  # not counted as abandoned
    status, stats = await admin.get("/api/v1/stats")
    assert stats["by_outcome"]["replaced"] == 1 and stats["abandoned"] == 0
    await admin.close()
    for ws in (first, other, again):
        await ws.close()


async def test_a_connected_call_is_never_replaced(gateway, caller_token):
    agent = await agent_socket(gateway.base_url)
    talking, call_id = await caller_socket(gateway.base_url, caller_token(sub="busy"))
    await agent.wait("call.offered")
    await agent.request({"type": "call.accept", "call_id": call_id})
    second, _ = await _hello(gateway, caller_token(sub="busy"))
    error = await second.request({"type": "call.start", "call_type": "voice"})
    assert error["code"] == "call_in_progress" and "another connection" in error["reason"]
    assert gateway.board.calls[call_id].state.value == "connected"
    for ws in (agent, talking, second):
        await ws.close()


async def test_call_starts_per_minute_per_caller(gateway, caller_token):
    ws, welcome = await _hello(gateway, caller_token(sub="hasty"))
    limit = gateway.settings.caller_call_starts_per_minute
    for _ in range(limit):
        queued = await ws.request({"type": "call.start", "call_type": "voice"})
        assert queued["type"] == "call.queued", queued
        assert (await ws.request({"type": "call.hangup"}))["type"] == "ack"
    error = await ws.request({"type": "call.start", "call_type": "voice"})
    assert error["code"] == "rate_limited" and error["retryable"] is True and "try again in" in error["reason"]
    assert not gateway.board.queue.ordered()
    await ws.close()


async def test_sessions_per_caller_refused_when_all_are_connected(caller_token):
    async with running_gateway(**LIMIT_DEFAULTS | dict(caller_max_sessions_per_subject=2)) as gw:
        token = caller_token(sub="tabs")
        a, _ = await _hello(gw, token)
        b, _ = await _hello(gw, token)
        c, error = await _hello(gw, token)
        assert error["type"] == "error" and error["code"] == "too_many_sessions" and error["retryable"]
        await _until(lambda: c.close_code is not None)
        await a.close()  # a's socket is gone: a new hello evicts a's session
        d, welcome = await _hello(gw, token)
        assert welcome["type"] == "welcome"
        assert len(gw.board.sessions.of_role("caller")) == 2
        for ws in (b, c, d):
            await ws.close()


async def test_sessions_and_starts_per_address_behind_a_trusted_proxy(caller_token):
    async with running_gateway(**LIMIT_DEFAULTS | dict(caller_max_sessions_per_address=2,
                                                         trusted_proxies=["127.0.0.1/32"])) as gw:
        office = {"X-Forwarded-For": "203.0.113.9"}
        a, _ = await _hello(gw, caller_token(sub="a"), office)
        b, _ = await _hello(gw, caller_token(sub="b"), {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
        c, error = await _hello(gw, caller_token(sub="c"), office)
        assert error["code"] == "too_many_sessions" and "address" in error["reason"]
        d, welcome = await _hello(gw, caller_token(sub="d"), {"X-Forwarded-For": "203.0.113.10"})
        assert welcome["type"] == "welcome"
        assert {s.address for s in gw.board.sessions.of_role("caller")} == {"203.0.113.9", "203.0.113.10"}
        for ws in (a, b, c, d):
            await ws.close()


async def test_eviction_spares_a_session_holding_a_call_while_it_can(caller_token):
    async with running_gateway(**LIMIT_DEFAULTS | dict(caller_max_sessions_per_subject=2, resume_grace_s=60)) as gw:
        token = caller_token(sub="crashy")
        a, call_id = await caller_socket(gw.base_url, token)
        await a.close()  # gone, its call waiting
        b, _ = await _hello(gw, token)
        await b.close()  # gone, no call
        c, welcome = await _hello(gw, token)
        assert welcome["type"] == "welcome"
        await _until(lambda: len(gw.board.sessions.of_role("caller")) == 2)
        assert gw.board.calls[call_id].state.value == "queued"  # b went, not a
        d, welcome = await _hello(gw, token)  # now only a's session can go: its call ends
        assert welcome["type"] == "welcome"
        await _until(lambda: gw.board.calls[call_id].state.value == "ended")
        assert gw.board.calls[call_id].end_reason.value == "caller_disconnected"
        for ws in (c, d):
            await ws.close()


async def test_call_starts_per_address(caller_token):
    async with running_gateway(**LIMIT_DEFAULTS | dict(caller_call_starts_per_address_per_minute=3)) as gw:
        sockets = []
        for i in range(3):
            ws, _ = await caller_socket(gw.base_url, caller_token(sub=f"neighbour-{i}"))
            sockets.append(ws)
        ws, _ = await _hello(gw, caller_token(sub="neighbour-3"))
        sockets.append(ws)
        error = await ws.request({"type": "call.start", "call_type": "voice"})
        assert error["code"] == "rate_limited" and "one address" in error["reason"] and error["retryable"]
        assert len(gw.board.queue) == 3
        for ws in sockets:
            await ws.close()


async def test_unknown_resume_tokens_per_address_are_bounded_before_any_records_query(caller_token):
    """Each unknown resume token costs a records query (is its call being restored?): one address gets a burst,
    then rate_limited without a query; another address, and a known token from the same address, are unaffected."""
    async with running_gateway(**LIMIT_DEFAULTS | dict(caller_unknown_resume_burst=3,
                                                         caller_unknown_resumes_per_address_per_minute=1,
                                                         trusted_proxies=["127.0.0.1/32"], resume_grace_s=60)) as gw:
        recorder = gw.app[RECORDER]
        queried: list[str] = []
        real = recorder.awaiting_restore

        async def counted(caller_resume: str) -> float | None:
            queried.append(caller_resume)
            return await real(caller_resume)

        recorder.awaiting_restore = counted  # the real query, counted
        flood = {"X-Forwarded-For": "203.0.113.7"}
        token = caller_token(sub="resumer")
        kept, welcome = await _hello(gw, token, flood)
        assert welcome["type"] == "welcome"
        answers = []
        for i in range(5):
            ws = WsClient(gw.base_url, "/ws/caller")
            await ws.connect(headers=flood)
            answers.append(await ws.request({"type": "hello", "token": token,
                                             "resume_token": f"forged-{i}-" + "x" * 40}))
            await ws.close()
        assert [a["code"] for a in answers] == ["resume_failed"] * 3 + ["rate_limited"] * 2, answers
        assert all(a["detail"]["why"] == "unknown" for a in answers[:3])
        assert answers[3]["retryable"] and "unknown resume tokens" in answers[3]["reason"]
        assert re.search(r"try again in (5\d|60) s", answers[3]["reason"]), answers[3]["reason"]  # one a minute
        assert len(queried) == 3  # no records query past the burst
        other = WsClient(gw.base_url, "/ws/caller")
        await other.connect(headers={"X-Forwarded-For": "198.51.100.20"})
        answer = await other.request({"type": "hello", "token": token, "resume_token": "forged-elsewhere-" + "x" * 40})
        assert answer["code"] == "resume_failed" and len(queried) == 4  # another address: its own bucket
        await kept.close()
        again = WsClient(gw.base_url, "/ws/caller")
        await again.connect(headers=flood)
        resumed = await again.request({"type": "hello", "token": token, "resume_token": welcome["resume_token"]})
        assert resumed["type"] == "welcome" and resumed["resumed"]  # a known token is never counted
        assert len(queried) == 4
        for ws in (other, again):
            await ws.close()
