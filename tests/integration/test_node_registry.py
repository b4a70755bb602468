"""The node registry on Redis (issue 10, items 5 and 7), with real node processes on one PostgreSQL and a real
redis-server: a node killed (-9) is found dead after `node_dead_after_s` of silence and its waiting callers are
taken over at once (the database lease, 60 s here, is not waited for); they resume in place on the other node through
the balancer. `GET /api/v1/nodes` lists both nodes with their counts; the cluster gauges in /metrics sum the live
ones (the dead node's counts drop out)."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from signaling.fence import FENCED_EXIT
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.integration.test_drain import close_all, resume_all, told_places_in_order
from tests.support.api import Api, agent_socket, caller_socket, metric
from tests.support.balancer import RoundRobin
from tests.support.databases import pg_url, reset_pg_schema
from tests.support.process import GatewayProcess
from tests.support.redisserver import running_redis
from tests.support.waiting import until


@pytest.fixture
async def pg(pg_database) -> str:
    await reset_pg_schema(pg_database)
    return pg_url(pg_database)


async def test_a_killed_node_is_found_dead_within_seconds_and_its_callers_resume_elsewhere(pg, tmp_path,
                                                                                           caller_token):
    async with running_redis(tmp_path) as redis_url:
        settings = {"redis_url": redis_url, "node_lease_s": 60, "node_heartbeat_s": 20, "node_dead_after_s": 3,
                    "node_beat_s": 0.5, "media_workers": 0}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        a = GatewayProcess(pg, tmp_path / "a", node_name="node-a", **settings)
        b = GatewayProcess(pg, tmp_path / "b", node_name="node-b", **settings)
        lb = RoundRobin([a.port, b.port])
        opened = []
        try:
            await a.start()
            await b.start()
            await lb.start()
            agent = await agent_socket(a.base_url, "alice", "alice-demo", available=False)  # signed in, away
            tokens = [caller_token(sub=f"kept-{i}") for i in range(2)]
            callers = [await caller_socket(a.base_url, t) for t in tokens]
            opened += [agent] + [ws for ws, _ in callers]
            welcomes = [next(m for m in ws.messages if m["type"] == "welcome") for ws, _ in callers]
            for ws, call_id in callers:
                await ws.wait(lambda m, c=call_id: m.get("type") == "queue.position" and m["call_id"] == c)

            api = Api(b.base_url)
            assert (await api.login("admin", "admin-demo"))[0] == 200

            async def both_counted() -> bool:
                status, body = await api.get("/api/v1/nodes")
                assert status == 200, body
                return body["totals"] == {"nodes": 2, "draining": 0, "calls": 0, "waiting": 2, "agents": 1}

            await until(both_counted, 10, 0.05, "both nodes in the registry with their counts")
            await until(lambda: _equals(metric(b.base_url, "callin_cluster_waiting"), 2), 10, 0.05, "cluster gauge")

            a.kill()
            killed = time.monotonic()
            for ws, _ in callers:
                await ws.close()
            resumed = await resume_all(lb.base_url, callers, welcomes, tokens, opened, timeout=20)
            took_s = time.monotonic() - killed
            print(f"takeover after kill -9: {took_s:.2f} s (dead after 3 s; lease 60 s)", flush=True)
            assert took_s < 15, took_s
            await told_places_in_order(resumed, callers)

            status, body = await api.get("/api/v1/nodes")
            dead = [n for n in body["nodes"] if n["name"] == "node-a"]
            assert dead and dead[0]["alive"] is False, body
            assert body["totals"]["nodes"] == 1 and body["totals"]["agents"] == 0, body  # A's counts dropped out
            await until(lambda: _equals(metric(b.base_url, "callin_cluster_nodes"), 1), 5, 0.05, "gauge without A")
            # Not for everyone: an agent is refused.
            agent_api = Api(b.base_url)
            assert (await agent_api.login("bob", "bob-demo"))[0] == 200
            status, refused = await agent_api.get("/api/v1/nodes")
            assert status == 403 and refused["code"] == "forbidden", refused
            await agent_api.close()
            bob = await agent_socket(b.base_url, "bob", "bob-demo")
            opened.append(bob)
            offer = await bob.wait(lambda m: m.get("type") == "call.offered", timeout=20)
            assert offer["call_id"] == callers[0][1]
            await api.close()
        finally:
            await close_all(opened, lb, a, b)


async def test_a_frozen_node_found_dead_stops_when_it_wakes_and_leaves_the_taken_over_calls_alone(pg, tmp_path,
                                                                                                caller_token):
    """Node A is frozen (SIGSTOP, as a paused VM or a stuck process would be) with two waiting callers: after
    `node_dead_after_s` node B takes them over and they resume there in place. When A wakes (SIGCONT) it still holds
    the calls in memory, their sockets closed: left alone it would end them after `resume_grace_s` (2 s here),
    overwrite B's records and take them out of the shared line. Instead it finds it was declared dead and exits at
    once (status FENCED_EXIT); the callers keep their places on B and their records stay B's and open."""
    async with running_redis(tmp_path) as redis_url:
        settings = {"redis_url": redis_url, "node_lease_s": 60, "node_heartbeat_s": 20, "node_dead_after_s": 3,
                    "node_beat_s": 0.5, "media_workers": 0, "resume_grace_s": 2}
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        a = GatewayProcess(pg, tmp_path / "a", node_name="node-a", **settings)
        b = GatewayProcess(pg, tmp_path / "b", node_name="node-b", **settings)
        lb = RoundRobin([b.port])  # a frozen node accepts connections and never answers: the balancer has only B
        opened = []
        frozen = False
        try:
            await a.start()
            await b.start()
            await lb.start()
            tokens = [caller_token(sub=f"frozen-{i}") for i in range(2)]
            callers = [await caller_socket(a.base_url, t) for t in tokens]
            opened += [ws for ws, _ in callers]
            welcomes = [next(m for m in ws.messages if m["type"] == "welcome") for ws, _ in callers]
            for ws, call_id in callers:
                await ws.wait(lambda m, c=call_id: m.get("type") == "queue.position" and m["call_id"] == c)

            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)
            frozen = True
            for ws, _ in callers:
                await ws.close()
            resumed = await resume_all(lb.base_url, callers, welcomes, tokens, opened, timeout=30)
            await told_places_in_order(resumed, callers)

            a.proc.send_signal(signal.SIGCONT)
            frozen = False
            try:
                status = await asyncio.to_thread(a.proc.wait, 30)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: reported with the node's log
                raise AssertionError(f"node A went on after it woke up; its log:\n{a.stderr()}") from None
            assert status == FENCED_EXIT, (status, a.stderr())
            assert '"node.fenced"' in a.stderr(), a.stderr()

            # A is gone and wrote nothing after it woke: the calls are B's, open, in line in their order.
            engine = create_async_engine(pg)
            try:
                async with engine.connect() as conn:
                    rows = (await conn.execute(text("SELECT id, node, ended_at, state FROM calls WHERE id IN "
                                                    "(:a, :b) ORDER BY id"),
                                               {"a": callers[0][1], "b": callers[1][1]})).all()
            finally:
                await engine.dispose()
            assert [(r.node, r.ended_at, r.state) for r in rows] == [("node-b", None, "queued")] * 2, rows
            bob = await agent_socket(b.base_url, "bob", "bob-demo")
            opened.append(bob)
            offer = await bob.wait(lambda m: m.get("type") == "call.offered", timeout=20)
            assert offer["call_id"] == callers[0][1]
            for back in resumed:
                assert not [m for m in back.messages if m.get("type") == "call.ended"], back.messages
        finally:
            if frozen and a.proc is not None:
                a.proc.send_signal(signal.SIGCONT)
            await close_all(opened, lb, a, b)


async def _equals(value, expected) -> bool:
    try:
        return await value == expected
    except (aiohttp.ClientError, AssertionError):
        return False
