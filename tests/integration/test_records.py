"""Durable call records on SQLite and PostgreSQL: outcomes, event logs, the crash case, filters and pagination."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from typing import Any

import aiohttp
import pytest

from tests.support.loopback_http import Receiver
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Peer, WsClient, wait_until
from tests.support.media import ToneAudioTrack
from tests.support.process import GatewayProcess
from tests.support.server import running_gateway
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


FAST_LEASE = {"node_lease_s": 2, "node_heartbeat_s": 0.5}


async def admin_api(base: str) -> Api:
    api = Api(base)
    status, body = await api.login("admin", "admin-demo")
    assert status == 200, body
    return api


async def test_crash_mid_call_closed_by_a_node_of_another_name_with_its_webhook(database_url, caller_token, tmp_path):
    """kill -9 mid-call; the node comes back under another name: the open record is closed by the dead node's
    lease (not its name), as interrupted, and the call.ended webhook fires for it."""
    gateway = GatewayProcess(database_url, tmp_path, node_name="node-a", **FAST_LEASE)
    try:
        async with Receiver(fail_first=0) as receiver:
            await gateway.start()
            api = await admin_api(gateway.base_url)
            status, _ = await api.post("/api/v1/webhooks", {"url": receiver.url, "events": ["call.ended"]})
            assert status == 201
            agent = await agent_socket(gateway.base_url)
            caller, call_id = await caller_socket(gateway.base_url, caller_token(sub="crash-1"))
            offer = await agent.wait("call.offered")
            await agent.request({"type": "call.accept", "call_id": offer["call_id"]})
            deadline = time.monotonic() + 10
            while True:  # written as it happens: the answer is in the record before the call ends
                status, record = await api.get(f"/api/v1/calls/{call_id}")
                if status == 200 and record["answered_at"]:
                    break
                assert time.monotonic() < deadline, record
                await asyncio.sleep(0.05)
            assert record["outcome"] is None and record["ended_at"] is None and record["state"] == "connected"
            await api.close()

            gateway.kill()
            await caller.close()
            await agent.close()

            gateway.set(node_name="node-b")
            await gateway.start()
            api = await admin_api(gateway.base_url)
            record = await api.ended_record(call_id, timeout=30)
            assert record["outcome"] == "interrupted" and record["state"] == "ended"
            assert record["end_reason"] == "interrupted" and record["hangup_side"] == "system"
            assert record["agent"] == "alice" and record["answered_at"] <= record["ended_at"]
            assert record["events"][-1]["kind"] == "interrupted"
            assert record["events"][-1]["detail"]["closed_by_node"] == "node-b"
            assert "node" not in record and "node_id" not in record  # the REST shape is unchanged
            await wait_until(lambda: "call.ended" in receiver.events(), 30)
            hook = next(json.loads(b) for _, b in receiver.requests if json.loads(b)["event"] == "call.ended")
            assert hook["data"]["id"] == call_id and hook["data"]["outcome"] == "interrupted"
            await api.close()
    finally:
        gateway.close()


async def test_a_live_node_closes_the_records_of_a_crashed_one(database_url, caller_token, tmp_path):
    """Two nodes on one database: node A is killed; node B, running all along, closes A's calls once A's lease has
    run out (and not before: B leaves A's live calls alone while A heartbeats)."""
    a = GatewayProcess(database_url, tmp_path / "a", node_name="node-a", **FAST_LEASE)
    b = GatewayProcess(database_url, tmp_path / "b", node_name="node-b", node_lease_s=2, node_heartbeat_s=0.3,
                       migrate_on_start="false", restore_waiting_within_s=0)  # restoring: test_restart_resume.py
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        await a.start()
        await b.start()
        caller, call_id = await caller_socket(a.base_url, caller_token(sub="on-a"))
        api = await admin_api(b.base_url)
        await asyncio.sleep(3)  # longer than the lease: A heartbeats, so B must not touch A's call
        status, record = await api.get(f"/api/v1/calls/{call_id}")
        assert status == 200 and record["state"] == "queued" and record["ended_at"] is None
        a.kill()
        await caller.close()
        record = await api.ended_record(call_id, timeout=30)
        assert record["outcome"] == "interrupted" and record["events"][-1]["detail"]["closed_by_node"] == "node-b"
        await api.close()
    finally:
        a.close()
        b.close()


async def _join(base: str, token: str, told: dict[str, str], http: aiohttp.ClientSession,
                slots: asyncio.Semaphore) -> None:
    """One caller: hello, call.start; remembers the call id once told "queued", then keeps its socket open."""
    async with slots:  # at most so many callers mid-join at once
        ws = await http.ws_connect(base.replace("http", "ws", 1) + "/ws/caller")
        await ws.send_json({"type": "hello", "id": "h", "token": token})
        await ws.send_json({"type": "call.start", "id": "s", "call_type": "voice"})
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                return
            data = json.loads(message.data)
            if data.get("id") == "s":
                assert data["type"] == "call.queued", data
                told[data["call_id"]] = token
                break
    async for message in ws:  # queue updates, until the gateway goes
        if message.type is not aiohttp.WSMsgType.TEXT:
            return


async def test_two_thousand_callers_join_then_kill_9_every_call_has_a_record(database_url, caller_token, tmp_path):
    """The issue's load case: 2,000 callers join; the process is killed (-9) while the last ones are still joining.
    Every caller that was told "queued" has a record after the restart: restored in line for its caller to resume
    (none does here: their sockets are gone), then ended once the resume grace ran out; no record stays open."""
    queues = [{"name": f"q{i}", "display_name": f"Queue {i}"} for i in range(100)]  # fewer position updates each
    gateway = GatewayProcess(database_url, tmp_path, max_queue_length=5000, queues=json.dumps(queues),
                             restore_resume_grace_s=2, **FAST_LEASE)
    told: dict[str, str] = {}
    try:
        await gateway.start()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            slots = asyncio.Semaphore(50)
            joins = [asyncio.ensure_future(_join(gateway.base_url, caller_token(sub=f"load-{i}", queue=f"q{i % 100}"),
                                                 told, http, slots)) for i in range(2000)]
            try:
                await wait_until(lambda: len(told) >= 1900, 600)
                gateway.kill()  # the last ~100 callers are mid-join
            finally:
                await asyncio.wait_for(asyncio.gather(*joins, return_exceptions=True), 60)
        assert len(told) >= 1900
        gateway.set(node_name="after-crash")
        await gateway.start()
        api = await admin_api(gateway.base_url)
        deadline = time.monotonic() + 120
        while True:
            records = await _all_records(api)
            open_records = [r["id"] for r in records if r["ended_at"] is None]
            if not open_records:
                break
            assert time.monotonic() < deadline, f"{len(open_records)} records still open"
            await asyncio.sleep(0.5)
        by_id = {r["id"]: r for r in records}
        missing = [call_id for call_id in told if call_id not in by_id]
        assert not missing, f"{len(missing)} of {len(told)} callers told 'queued' have no record"
        assert {by_id[call_id]["end_reason"] for call_id in told} == {"caller_disconnected"}
        events = (await api.get(f"/api/v1/calls/{next(iter(told))}"))[1]["events"]
        assert [e["kind"] for e in events][-2:] == ["restored", "ended"], events
        await api.close()
    finally:
        gateway.close()


async def _all_records(api: Api) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        status, page = await api.get("/api/v1/calls", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert status == 200, page
        records += page["calls"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


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


async def test_sigterm_with_800_queued_writes_every_final_state_and_keeps_the_callback(database_url, caller_token,
                                                                                       tmp_path):
    """A graceful stop drains the records and keeps the promises: the 800 waiting calls are not ended (their
    callers are told to resume) and the next start restores them in line, as it does the callback request; none is
    closed as interrupted. (Their callers resuming in place: test_restart_resume.py.)"""
    queues = [{"name": f"q{i}", "display_name": f"Queue {i}"} for i in range(20)]
    gateway = GatewayProcess(database_url, tmp_path, max_queue_length=5000, queues=json.dumps(queues), **FAST_LEASE)
    told: dict[str, str] = {}
    try:
        await gateway.start()
        cb_token = caller_token(sub="wants-callback", queue="q0")
        cb_caller, cb_id = await caller_socket(gateway.base_url, cb_token)
        accepted = await cb_caller.request({"type": "callback.request", "call_id": cb_id})
        assert accepted["type"] == "callback.accepted", accepted
        await cb_caller.request({"type": "bye"})
        await cb_caller.close()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            slots = asyncio.Semaphore(50)
            joins = [asyncio.ensure_future(_join(gateway.base_url, caller_token(sub=f"term-{i}", queue=f"q{i % 20}"),
                                                 told, http, slots)) for i in range(800)]
            try:
                await wait_until(lambda: len(told) == 800, 300)
                assert await gateway.terminate() == 0, gateway.stderr()
            finally:
                await asyncio.wait_for(asyncio.gather(*joins, return_exceptions=True), 60)

        gateway.set(node_name="after-stop")
        await gateway.start()
        api = await admin_api(gateway.base_url)
        records = {r["id"]: r for r in await _all_records(api)}
        kept = [records[c] for c in told if c in records]
        assert len(kept) == 800 and {(r["state"], r["ended_at"]) for r in kept} == {("queued", None)}
        status, sample = await api.get(f"/api/v1/calls/{next(iter(told))}")
        assert [e["kind"] for e in sample["events"]][-1] == "restored", sample["events"]
        # the callback is back in the live queue: an agent who signs in gets it, and callback.ready fires
        status, record = await api.get(f"/api/v1/calls/{cb_id}")
        assert record["ended_at"] is None and record["callback"] is True, record
        agent = await agent_socket(gateway.base_url)
        offer = await agent.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == cb_id, timeout=30)
        assert offer["card"]["callback"] is True
        await api.close()
        await agent.close()
    finally:
        gateway.close()


async def test_callback_request_survives_kill_9(database_url, caller_token, tmp_path):
    """A callback request is a promise: after kill -9 and a restart (under another name), it is back in the queue;
    the agent takes it, call.callback_ready fires, the caller rejoins with its token and the record goes on."""
    # Plain waiting calls are not restored here (restore_waiting_within_s=0): the second caller's call is closed as
    # interrupted, as it was before waiting calls were kept across a restart (test_restart_resume.py).
    gateway = GatewayProcess(database_url, tmp_path, node_name="node-a", restore_waiting_within_s=0, **FAST_LEASE)
    try:
        async with Receiver(fail_first=0) as receiver:
            await gateway.start()
            api = await admin_api(gateway.base_url)
            status, _ = await api.post("/api/v1/webhooks", {"url": receiver.url,
                                                           "events": ["call.callback_ready", "call.ended"]})
            assert status == 201
            await api.close()
            token = caller_token(sub="cb-crash")
            caller, call_id = await caller_socket(gateway.base_url, token)
            accepted = await caller.request({"type": "callback.request", "call_id": call_id, "phone": "+33612345678"})
            assert accepted["type"] == "callback.accepted", accepted
            other, other_id = await caller_socket(gateway.base_url, caller_token(sub="plain-crash"))
            gateway.kill()
            await caller.close()
            await other.close()

            gateway.set(node_name="node-b")
            await gateway.start()
            api = await admin_api(gateway.base_url)
            assert (await api.ended_record(other_id, timeout=30))["outcome"] == "interrupted"
            agent = await agent_socket(gateway.base_url)
            offer = await agent.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=30)
            assert offer["card"]["callback"] is True and offer["card"]["callback_phone"] == "+33612345678"
            await agent.request({"type": "call.accept", "call_id": call_id})
            await wait_until(lambda: "call.callback_ready" in receiver.events(), 30)
            hook = next(json.loads(b) for _, b in receiver.requests if json.loads(b)["event"] == "call.callback_ready")
            assert hook["data"]["id"] == call_id and hook["data"]["callback_phone"] == "+33612345678"
            ended = [json.loads(b)["data"]["id"] for _, b in receiver.requests if json.loads(b)["event"] == "call.ended"]
            assert call_id not in ended and other_id in ended

            back = await caller_socket_hello(gateway.base_url, token)
            rejoined = await back.request({"type": "call.rejoin", "call_id": call_id})
            assert rejoined["type"] == "call.rejoined" and rejoined["state"] == "connected", rejoined
            await back.request({"type": "call.hangup", "call_id": call_id})
            record = await api.ended_record(call_id)
            assert record["outcome"] == "answered" and record["callback"] is True and record["rejoined_at"]
            kinds = [e["kind"] for e in record["events"]]
            assert kinds.index("callback_requested") < kinds.index("callback_restored") < kinds.index("rejoined")
            assert [e["seq"] for e in record["events"]] == list(range(len(kinds)))
            await back.close()
            await agent.close()
            await api.close()
    finally:
        gateway.close()


async def caller_socket_hello(base: str, token: str) -> WsClient:
    ws = WsClient(base, "/ws/caller")
    await ws.connect()
    welcome = await ws.request({"type": "hello", "token": token})
    assert welcome["type"] == "welcome", welcome
    return ws


async def test_the_offer_is_answered_while_the_call_is_being_recorded(caller_token, tmp_path):
    """call.queued is a promise, sent once the call's record is committed; the caller's sdp.offer, sent right behind
    call.start, does not wait for it. While another process holds the database, the offer is answered (the media is
    set up) and call.queued has not come; it comes once the database is free again."""
    async with running_gateway(data_dir=str(tmp_path), records_durable_timeout_s=30) as gw:
        lock = sqlite3.connect(tmp_path / "callin.db", timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        ws = await caller_socket_hello(gw.base_url, caller_token(sub="offer-first"))
        peer = Peer()
        peer.pc.addTrack(ToneAudioTrack(440))
        try:
            await ws.send({"type": "call.start", "id": "start", "call_type": "voice"})
            answer = await ws.request({"type": "sdp.offer", "sdp": await peer.offer()})
            assert answer["type"] == "sdp.answer", answer
            assert not [m for m in ws.messages if m.get("id") == "start"]  # still waiting for its record
            call_id = answer["call_id"]
            assert gw.board.relays[call_id].caller is not None
        finally:
            lock.rollback()
            lock.close()
        queued = await ws.wait(lambda m: m.get("id") == "start", timeout=30)
        assert queued["type"] == "call.queued" and queued["call_id"] == call_id, queued
        await ws.close()
        await peer.close()


async def test_a_call_that_cannot_be_recorded_is_refused_not_queued(caller_token, tmp_path):
    """While another process holds the SQLite database, call.start waits for the record, then refuses with
    records_unavailable (retryable) instead of telling the caller it is queued; once the database is free again
    the call's record is written, ended as failed (nothing is lost)."""
    async with running_gateway(data_dir=str(tmp_path), records_durable_timeout_s=0.5) as gw:
        lock = sqlite3.connect(tmp_path / "callin.db", timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            ws = await caller_socket_hello(gw.base_url, caller_token(sub="refused"))
            reply = await ws.request({"type": "call.start", "call_type": "voice"})
            assert reply["type"] == "error" and reply["code"] == "records_unavailable" and reply["retryable"] is True
            call_id = next(c.id for c in gw.board.calls.values() if c.identity.subject == "refused")
            assert gw.board.calls[call_id].state.value == "ended"
            async with aiohttp.ClientSession() as http, http.get(gw.base_url + "/metrics") as r:
                backlog = re.search(r"^callin_records_backlog (\S+)$", await r.text(), re.M)
                assert backlog and float(backlog.group(1)) >= 1  # the operator sees what waits
        finally:
            lock.rollback()
            lock.close()
        api = await admin_api(gw.base_url)
        record = await api.ended_record(call_id, timeout=30)
        assert record["outcome"] == "failed" and record["end_reason"] == "records_unavailable"
        await ws.close()
        await api.close()
