"""Drain on SIGTERM with two real nodes on one PostgreSQL (issue 10, item 5): node A is told SIGTERM while a call is
connected on it and callers wait in its line. Readiness goes 503 at once, A takes no new caller, its waiting
callers are handed to node B and resume there in place (through a round-robin load balancer, with their resume
token), and the connected call finishes on A (or is ended at the drain deadline, with a complete record).

Both nodes have long database leases and heartbeats (60 s / 20 s): a takeover within seconds can only come from the
hand-over (the bus with Redis, an on-demand reap without)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.balancer import RoundRobin
from tests.support.clients import WsClient
from tests.support.databases import pg_url, reset_pg_schema
from tests.support.process import GatewayProcess
from tests.support.redisserver import running_redis
from tests.support.waiting import until

SLOW_LEASE = {"node_lease_s": 60, "node_heartbeat_s": 20}


@pytest.fixture
async def pg(pg_database) -> str:
    await reset_pg_schema(pg_database)
    return pg_url(pg_database)


async def resume_through(base: str, token: str, resume_token: str, last_seq: int,
                         timeout: float) -> tuple[WsClient, dict[str, Any], list[dict[str, Any]]]:
    """Reconnect as the caller's client does, through the balancer, until a node has the session: returns the
    socket, its welcome and the retryable errors met on the way (resume_pending, from the draining node or from a
    node that takes the call over at that moment)."""
    errors: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no resume within {timeout} s; errors: {errors}"
        ws = WsClient(base, "/ws/caller")
        try:
            await ws.connect()
            welcome = await ws.request({"type": "hello", "token": token, "resume_token": resume_token,
                                        "last_seq": last_seq})
        except (aiohttp.ClientError, AssertionError, OSError):
            await ws.close()
            await asyncio.sleep(0.2)
            continue
        if welcome["type"] == "welcome":
            return ws, welcome, errors
        await ws.close()
        assert welcome["type"] == "error" and welcome["retryable"] is True, welcome
        assert welcome["code"] == "resume_pending", welcome
        errors.append(welcome)
        await asyncio.sleep(min(0.5, welcome["detail"]["retry_after_s"]))


async def resume_all(base: str, callers: list[tuple[WsClient, str]], welcomes: list[dict[str, Any]],
                     tokens: list[str], opened: list[WsClient], timeout: float,
                     state: str | None = None) -> list[WsClient]:
    """Each caller (socket, call id) resumes its call through the balancer `base` with its token (its call in
    `state`, if given); the new sockets (in the callers' order) are also put in `opened`."""
    resumed = []
    for (ws, call_id), welcome, token in zip(callers, welcomes, tokens):
        back, again, _ = await resume_through(base, token, welcome["resume_token"], ws.last_seq, timeout=timeout)
        opened.append(back)
        assert again["resumed"] is True and again["call"]["call_id"] == call_id, again
        assert state is None or again["call"]["state"] == state, again
        resumed.append(back)
    return resumed


async def told_places_in_order(resumed: list[WsClient], callers: list[tuple[WsClient, str]]) -> None:
    """The resumed callers are told their places in line: 1, 2, ... in their order."""
    for place, (back, (_, call_id)) in enumerate(zip(resumed, callers), start=1):
        told = await back.wait(lambda m, c=call_id: m.get("type") == "queue.position" and m["call_id"] == c,
                               timeout=10)
        assert told["position"] == place, told


async def close_all(opened: list[WsClient], balancer: RoundRobin, *nodes: GatewayProcess) -> None:
    """The end of a cluster test: its sockets, its balancer, its nodes."""
    for ws in opened:
        await ws.close()
    await balancer.close()
    for gateway in nodes:
        gateway.close()


async def health(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(base + "/healthz") as r:
        return r.status


async def connected_call(base: str, token: str, agent: str) -> tuple[WsClient, WsClient, str]:
    """A caller on `base` answered by `agent` (signaling only: the call is connected in the engine)."""
    agent_ws = await agent_socket(base, agent, f"{agent}-demo")
    caller, call_id = await caller_socket(base, token)
    offer = await agent_ws.wait(lambda m: m.get("type") == "call.offered", timeout=20)
    assert offer["call_id"] == call_id
    accepted = await agent_ws.request({"type": "call.accept", "call_id": call_id})
    assert accepted["type"] == "call.accepted", accepted
    await caller.wait("call.answered", timeout=20)
    return caller, agent_ws, call_id


async def drain_two_nodes(pg: str, tmp_path: Path, caller_token: Any, redis_url: str | None, deadline_s: float,
                          hang_up: bool) -> None:
    extra = {"redis_url": redis_url} if redis_url else {}
    a = GatewayProcess(pg, tmp_path / "a", node_name="node-a", drain_deadline_s=deadline_s, media_workers=0,
                       restore_resume_grace_s=60, **SLOW_LEASE, **extra)
    b = GatewayProcess(pg, tmp_path / "b", node_name="node-b", drain_deadline_s=deadline_s, media_workers=0,
                       **SLOW_LEASE, **extra)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lb = RoundRobin([a.port, b.port])
    opened: list[WsClient] = []
    t0 = time.monotonic()
    try:
        await a.start()
        await b.start()
        await lb.start()
        print(f"nodes up in {time.monotonic() - t0:.1f} s", flush=True)
        caller1, agent_a, talking = await connected_call(a.base_url, caller_token(sub="talking"), "alice")
        tokens = [caller_token(sub=f"waiting-{i}") for i in range(2)]
        waiting = [await caller_socket(a.base_url, t) for t in tokens]
        opened += [caller1, agent_a] + [ws for ws, _ in waiting]
        welcomes = [next(m for m in ws.messages if m["type"] == "welcome") for ws, _ in waiting]
        for (ws, call_id), place in zip(waiting, (1, 2)):
            await ws.wait(lambda m, c=call_id, n=place: m.get("type") == "queue.position" and m["call_id"] == c
                          and m["position"] == n)

        assert a.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        sigterm = time.monotonic()
        await until(lambda: _is(health(a.base_url), 503), 5, 0.05, "A's readiness answers 503")
        # The waiting callers are told to resume (elsewhere); the connected call goes on.
        for ws, _ in waiting:
            shutdown = await ws.wait("shutdown", timeout=10)
            assert shutdown["resume"] is True, shutdown
        assert not caller1.of_type("shutdown") and not caller1.of_type("call.ended")
        if redis_url:
            # B learned at once (the bus), before any caller came back: they wait in its line already.
            admin = Api(b.base_url)
            assert (await admin.login("admin", "admin-demo"))[0] == 200

            async def b_has_them() -> bool:
                status, body = await admin.get("/api/v1/nodes")
                assert status == 200, body
                mine = [n for n in body["nodes"] if n["name"] == "node-b" and n["alive"]]
                return bool(mine) and mine[0]["waiting"] == 2

            await until(b_has_them, 5, 0.05, "B restores the handed-over callers")

            async def a_says_draining() -> bool:  # (A's entry is what A wrote at its last beat: wait for the next)
                status, body = await admin.get("/api/v1/nodes")
                a_entry = next(n for n in body["nodes"] if n["name"] == "node-a")
                return a_entry["draining"] is True and a_entry["calls"] == 1 and a_entry["waiting"] == 0

            await until(a_says_draining, 5, 0.05, "A's registry entry: draining, its one call, nobody waiting")
            await admin.close()
        # A takes no new caller: a typed error that says to connect again.
        fresh = WsClient(a.base_url, "/ws/caller")
        opened.append(fresh)
        await fresh.connect()
        refused = await fresh.request({"type": "hello", "token": caller_token(sub="late")})
        assert refused["type"] == "error" and refused["code"] == "shutting_down" and refused["retryable"] is True
        assert "another node" in refused["reason"]

        # Through the balancer, with their tokens: both resume on B, in place, within seconds (not the lease).
        resumed = await resume_all(lb.base_url, waiting, welcomes, tokens, opened, timeout=15, state="queued")
        took_s = time.monotonic() - sigterm
        print(f"takeover: both callers resumed on B {took_s:.2f} s after SIGTERM", flush=True)
        assert took_s < 12, f"the takeover took {took_s:.1f} s"
        await told_places_in_order(resumed, waiting)  # the same order as on A
        # B answers them, first come first served.
        agent_b = await agent_socket(b.base_url, "bob", "bob-demo")
        opened.append(agent_b)
        offer = await agent_b.wait(lambda m: m.get("type") == "call.offered", timeout=20)
        assert offer["call_id"] == waiting[0][1]

        api = Api(b.base_url)
        assert (await api.login("admin", "admin-demo"))[0] == 200
        if hang_up:
            # The connected call finishes on A before the deadline; then A stops by itself.
            await caller1.request({"type": "call.hangup", "call_id": talking})
            assert await a.terminate(timeout=60) == 0, a.stderr()  # (a second SIGTERM is a no-op by then)
            record = await api.ended_record(talking, timeout=20)
            assert record["outcome"] == "answered" and record["end_reason"] == "caller_hangup", record
        else:
            # Nobody hangs up: at the deadline the call is ended (shutdown) and its record is complete.
            code = await asyncio.to_thread(a.proc.wait, 60)
            stopped_s = time.monotonic() - sigterm
            assert code == 0, a.stderr()
            assert stopped_s >= deadline_s - 0.5, f"A stopped after {stopped_s:.1f} s, before the deadline"
            ended = await caller1.wait("call.ended", timeout=5)
            assert ended["reason"] == "shutdown", ended
            record = await api.ended_record(talking, timeout=20)
            assert record["end_reason"] == "shutdown" and record["answered_at"] is not None, record
            assert record["ended_at"] is not None and record["talk_s"] is not None, record
        for _, call_id in waiting:
            status, body = await api.get(f"/api/v1/calls/{call_id}")
            restored = [e for e in body["events"] if e["kind"] == "restored"]
            assert status == 200 and body["ended_at"] is None, body
            assert [e["detail"] for e in restored] == [{"from_node": "node-a", "to_node": "node-b"}], body
        await api.close()
    finally:
        await close_all(opened, lb, a, b)


async def _is(status: Any, expected: int) -> bool:
    try:
        return await status == expected
    except aiohttp.ClientError:
        return False


async def test_drain_with_redis_hands_waiting_callers_to_the_other_node_and_lets_the_call_finish(
        pg, tmp_path, caller_token):
    async with running_redis(tmp_path) as redis_url:
        await drain_two_nodes(pg, tmp_path, caller_token, redis_url, deadline_s=60, hang_up=True)


async def test_drain_without_redis_ends_the_connected_call_at_the_deadline(pg, tmp_path, caller_token):
    await drain_two_nodes(pg, tmp_path, caller_token, None, deadline_s=4, hang_up=False)
