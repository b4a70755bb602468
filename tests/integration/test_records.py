"""Durable call records on SQLite and PostgreSQL: outcomes, event logs, the crash case, filters and pagination."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.server import TEST_SECRET, free_port, running_gateway

ROOT = Path(__file__).resolve().parents[2]
LOCATION = {"lat": 52.52, "lon": 13.405, "accuracy_m": 12.5, "timestamp": 1_790_000_000.0}
CONTEXT = {"screen": "card-blocked", "steps": ["login", "cards"], "crm": {"account": "DE-1234"}}


async def test_records_of_answered_abandoned_and_declined_calls(database_url, caller_token):
    async with running_gateway(database_url=database_url) as gw:
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        agent = await agent_socket(gw.base_url)

        # answered, then hung up by the caller
        caller, answered_id = await caller_socket(gw.base_url, caller_token(sub="cust-1", name="Dana", email="d@x.io"),
                                                  "video", location=LOCATION, context=CONTEXT)
        offer = await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": offer["call_id"]})
        await asyncio.sleep(0.3)
        await caller.request({"type": "call.hangup"})
        record = await api.ended_record(answered_id)
        assert record["outcome"] == "answered" and record["hangup_side"] == "caller"
        assert record["end_reason"] == "caller_hangup" and record["agent"] == "alice" and record["agents"] == ["alice"]
        assert record["identity"]["subject"] == "cust-1" and record["identity"]["email"] == "d@x.io"
        assert record["subject"] == "cust-1" and record["call_type"] == "video" and record["queue"] == "default"
        assert record["location"]["lat"] == 52.52 and record["location"]["source"] == "device"
        assert record["context"]["crm"] == {"account": "DE-1234"}
        assert record["created_at"] <= record["offered_at"] <= record["answered_at"] < record["ended_at"]
        assert record["talk_s"] >= 0.3 and record["wait_s"] == pytest.approx(record["answered_at"] - record["created_at"])
        kinds = [e["kind"] for e in record["events"]]
        assert kinds[0] == "queued" and kinds[-1] == "ended"
        assert kinds.index("offered") < kinds.index("connected") < kinds.index("ended")
        assert [e["seq"] for e in record["events"]] == list(range(len(kinds)))
        ended = record["events"][-1]
        assert ended["detail"] == {"reason": "caller_hangup", "by": "caller"}
        await caller.close()

        # abandoned: nobody available, the caller gives up while queued
        await agent.request({"type": "agent.status", "status": "away"})
        caller, abandoned_id = await caller_socket(gw.base_url, caller_token(sub="cust-2"))
        await caller.request({"type": "call.hangup"})
        record = await api.ended_record(abandoned_id)
        assert record["outcome"] == "abandoned" and record["agent"] is None and record["answered_at"] is None
        assert record["offered_at"] is None and record["talk_s"] is None and record["wait_s"] >= 0
        await caller.close()

        # declined by the agent, then the caller gives up
        await agent.request({"type": "agent.status", "status": "available"})
        caller, declined_id = await caller_socket(gw.base_url, caller_token(sub="cust-3"))
        offer = await agent.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == declined_id)
        await agent.request({"type": "call.decline", "call_id": declined_id})
        await caller.request({"type": "call.hangup"})
        record = await api.ended_record(declined_id)
        assert record["outcome"] == "declined" and record["agent"] is None and record["agents"] == ["alice"]
        assert any(e["kind"] == "queued" and e["detail"].get("reason") == "declined" for e in record["events"])
        await caller.close()
        await agent.close()
        await api.close()


async def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert proc.poll() is None, f"gateway exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}"
            try:
                async with http.get(base + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("gateway did not become healthy")


async def test_crash_mid_call_leaves_an_interrupted_record(database_url, caller_token, tmp_path):
    port = free_port()
    env = dict(os.environ, CALLIN_PORT=str(port), CALLIN_HOST="127.0.0.1", CALLIN_DEMO="true",
               CALLIN_CALLER_TOKEN_SECRET=TEST_SECRET, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_LOG_LEVEL="warning", CALLIN_DATABASE_URL=database_url, CALLIN_DATA_DIR=str(tmp_path),
               CALLIN_PASSWORD_HASH_TIME_COST="1", CALLIN_PASSWORD_HASH_MEMORY_KIB="8192")
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    proc = start()
    try:
        await _wait_healthy(base, proc)
        agent = await agent_socket(base)
        caller, call_id = await caller_socket(base, caller_token(sub="crash-1"))
        offer = await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": offer["call_id"]})
        api = Api(base)
        await api.login("admin", "admin-demo")
        deadline = time.monotonic() + 10
        while True:  # written as it happens: the answer is in the record before the call ends
            status, record = await api.get(f"/api/v1/calls/{call_id}")
            if status == 200 and record["answered_at"]:
                break
            assert time.monotonic() < deadline, record
            await asyncio.sleep(0.05)
        assert record["outcome"] is None and record["ended_at"] is None and record["state"] == "connected"
        await api.close()

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await caller.close()
        await agent.close()

        proc = start()
        await _wait_healthy(base, proc)
        api = Api(base)
        await api.login("admin", "admin-demo")
        record = await api.ended_record(call_id)
        assert record["outcome"] == "interrupted" and record["state"] == "ended"
        assert record["end_reason"] == "interrupted" and record["hangup_side"] == "system"
        assert record["agent"] == "alice" and record["answered_at"] <= record["ended_at"]
        assert record["events"][-1]["kind"] == "interrupted"
        await api.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_call_list_filters_and_pagination(database_url, caller_token):
    async with running_gateway(database_url=database_url) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        ids = []
        for i in range(5):
            caller, call_id = await caller_socket(gw.base_url, caller_token(sub=f"page-{i % 2}"))
            await caller.request({"type": "call.hangup"})
            await caller.close()
            ids.append(call_id)
        agent = await agent_socket(gw.base_url)
        caller, answered_id = await caller_socket(gw.base_url, caller_token(sub="page-9"))
        await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": answered_id})
        await caller.request({"type": "call.hangup"})
        await admin.ended_record(answered_id)
        for call_id in ids:
            await admin.ended_record(call_id)
        ids.append(answered_id)

        seen, cursor, pages = [], None, 0
        while True:
            status, page = await admin.get("/api/v1/calls", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert status == 200, page
            seen += [c["id"] for c in page["calls"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and seen == list(reversed(ids))  # newest first, each call once

        status, page = await admin.get("/api/v1/calls", params={"outcome": "answered"})
        assert [c["id"] for c in page["calls"]] == [answered_id]
        status, page = await admin.get("/api/v1/calls", params={"outcome": "abandoned", "subject": "page-0"})
        assert sorted(c["id"] for c in page["calls"]) == sorted([ids[0], ids[2], ids[4]])
        status, page = await admin.get("/api/v1/calls", params={"agent": "alice"})
        assert [c["id"] for c in page["calls"]] == [answered_id]
        status, page = await admin.get("/api/v1/calls", params={"queue": "default", "limit": 200})
        assert len(page["calls"]) == 6
        status, page = await admin.get("/api/v1/calls", params={"queue": "vip"})
        assert page == {"calls": [], "next_cursor": None}
        status, first = await admin.get(f"/api/v1/calls/{ids[2]}")
        status, page = await admin.get("/api/v1/calls", params={"since": first["created_at"],
                                                                "until": first["created_at"] + 0.000001})
        assert [c["id"] for c in page["calls"]] == [ids[2]]
        assert "events" not in page["calls"][0]

        # limits and validation: stable codes
        status, body = await admin.get("/api/v1/calls", params={"limit": 1000})
        assert status == 422 and body["code"] == "invalid_query" and body["reason"].startswith("limit:")
        status, body = await admin.get("/api/v1/calls", params={"outcome": "great"})
        assert status == 422 and body["code"] == "invalid_query"
        status, body = await admin.get("/api/v1/calls", params={"color": "red"})
        assert status == 422 and body["code"] == "invalid_query"
        status, body = await admin.get("/api/v1/calls", params={"cursor": "not-a-cursor"})
        assert status == 400 and body["code"] == "invalid_cursor"
        status, body = await admin.get("/api/v1/calls/nope")
        assert status == 404 and body["code"] == "unknown_call"
        status, body = await admin.get("/api/v1/nothing-here")
        assert status == 404 and body["code"] == "not_found"
        status, body = await admin.request("DELETE", "/api/v1/calls")
        assert status == 405 and body["code"] == "method_not_allowed"

        # stats over the same calls
        status, stats = await admin.get("/api/v1/stats")
        assert status == 200, stats
        assert stats["calls"] == 6 and stats["answered"] == 1 and stats["abandoned"] == 5
        assert stats["answer_rate"] == pytest.approx(1 / 6) and stats["abandonment_rate"] == pytest.approx(5 / 6)
        assert stats["wait_p90_s"] >= stats["wait_avg_s"] * 0 and stats["handle_avg_s"] >= 0
        assert stats["by_outcome"]["answered"] == 1
        status, stats = await admin.get("/api/v1/stats", params={"since": time.time() + 60})
        assert stats["calls"] == 0 and stats["answer_rate"] is None

        await caller.close()
        await agent.close()
        await admin.close()


async def test_missed_call_record_keeps_the_ring_timeout(caller_token):
    async with running_gateway(ring_timeout_s=0.3) as gw:
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        agent = await agent_socket(gw.base_url)
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="cust-ring"))
        await agent.wait("call.offered")
        await agent.wait(lambda m: m.get("type") == "call.offer_withdrawn" and m["reason"] == "ring_timeout")
        await caller.request({"type": "call.hangup"})
        record = await api.ended_record(call_id)
        assert record["outcome"] == "missed" and record["agents"] == ["alice"] and record["agent"] is None
        assert any(e["kind"] == "queued" and e["detail"].get("reason") == "ring_timeout" for e in record["events"])
        await caller.close()
        await agent.close()
        await api.close()
