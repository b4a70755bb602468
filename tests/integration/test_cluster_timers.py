"""Deadlines that survive a node (issue 10, item 2): what was promised with a timer still happens on time when the
node that set it is killed (-9). A waiting caller restored on another node is told its queue's max wait from when it
first arrived (not from its restore); an agent of node B wrapping up a call homed on node A that dies goes on wrapping
up on B and is available when its home said, not at once; a callback taken through a node that dies is offered
again elsewhere, where its new rejoin deadline runs. Real `callin serve` processes, a real redis-server,
records in PostgreSQL (ring, re-offer, consult and media timers die with the call's media: docs/deployment.md)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.test_drain import resume_through
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.cluster_nodes import accept, cluster, record_state
from tests.support.waiting import until

SETTINGS = {"node_dead_after_s": 3, "node_beat_s": 0.5, "media_workers": 0, "position_update_interval_s": 0}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_restored_caller_is_told_its_max_wait_counted_from_its_first_arrival(database_url, redis_url,
                                                                                     tmp_path, caller_token):
    max_wait_s = 10.0
    async with cluster(database_url, redis_url, tmp_path, **SETTINGS) as nodes:
        a, b = nodes.nodes
        admin = Api(a.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.request("PUT", "/api/v1/queues/default", json={"max_wait_s": max_wait_s})
        await admin.close()
        assert status == 200 and body["config"]["max_wait_s"] == max_wait_s, body
        token = caller_token(sub="waits-long")
        before = time.monotonic()
        ws, call_id = await caller_socket(a.base_url, token)  # nobody signed in: it waits, on A
        arrived = time.monotonic()  # the call arrived between `before` and this
        nodes.closes(ws)
        await record_state(database_url, call_id, "queued")
        welcome = next(m for m in ws.messages if m["type"] == "welcome")
        await asyncio.sleep(max(0.0, arrived + 4 - time.monotonic()))  # 4 s of its max wait spent on A, then A dies
        a.kill()
        await ws.close()
        back, again, _ = await resume_through(b.base_url, token, welcome["resume_token"], ws.last_seq, timeout=30)
        nodes.closes(back)
        assert again["resumed"] is True and again["call"]["call_id"] == call_id, again  # restored in place on B
        told = await back.wait(lambda m: m.get("type") == "queue.closed" and m["reason"] == "max_wait", timeout=30)
        at = time.monotonic()
        assert told["call_id"] == call_id
        # Counted from its restore (B found A dead 3 s after the kill, 4 s after it arrived) it would come after 17 s.
        assert at - before >= max_wait_s - 0.5 and at - arrived < max_wait_s + 4, (at - before, at - arrived)
        await record_state(database_url, call_id, "queued")  # still waiting: told, not ended


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_agent_wrapping_up_a_call_whose_home_died_leaves_wrap_up_on_time(database_url, redis_url, tmp_path,
                                                                                  caller_token):
    wrap_up_s = 12.0
    settings = {**SETTINGS, "wrap_up_s": wrap_up_s}
    async with cluster(database_url, redis_url, tmp_path, **settings) as nodes:
        a, b = nodes.nodes
        alice = await agent_socket(b.base_url)  # her console on B
        nodes.closes(alice)
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="homed-on-a"))  # the call's home is A
        nodes.closes(ws)
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=20)
        await accept(alice, ws, call_id)
        done = await alice.request({"type": "call.hangup", "call_id": call_id})
        assert done["type"] == "ack", done
        wrapping = await alice.wait(lambda m: m.get("type") == "agent.status" and m["status"] == "wrap_up", timeout=10)
        started = time.monotonic()
        assert wrapping["call_id"] == call_id and wrapping["wrap_up_s"] == wrap_up_s, wrapping
        await record_state(database_url, call_id, "ended")
        a.kill()
        mark = len(alice.messages)

        # A caller on B meanwhile: alice is not offered it while she wraps up (B took her wrap-up over).
        second, second_id = await caller_socket(b.base_url, caller_token(sub="waits-on-b"))
        nodes.closes(second)
        freed = await alice.wait(lambda m: m.get("type") == "agent.status" and m.get("id") is None
                                 and m["status"] == "available", timeout=wrap_up_s + 15, since=mark)
        free_after = time.monotonic() - started
        assert freed["reason"] == "wrap_up_timeout", freed  # not node_lost at once
        assert wrap_up_s - 1 <= free_after < wrap_up_s + 5, free_after
        before = alice.messages[:alice.messages.index(freed)]
        assert not [m for m in before if m.get("type") == "call.offered" and m["call_id"] == second_id]
        offer = await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == second_id, timeout=20)
        assert offer["call_id"] == second_id


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_agent_submits_the_wrap_up_of_a_call_whose_home_died_on_her_own_node(database_url, redis_url,
                                                                                       tmp_path, caller_token):
    settings = {**SETTINGS, "wrap_up_s": 60}
    async with cluster(database_url, redis_url, tmp_path, **settings) as nodes:
        a, b = nodes.nodes
        alice = await agent_socket(b.base_url)
        nodes.closes(alice)
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="noted"))
        nodes.closes(ws)
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=20)
        await accept(alice, ws, call_id)
        assert (await alice.request({"type": "call.hangup", "call_id": call_id}))["type"] == "ack"
        await alice.wait(lambda m: m.get("type") == "agent.status" and m["status"] == "wrap_up", timeout=10)
        await record_state(database_url, call_id, "ended")
        a.kill()
        mark = len(alice.messages)

        api = Api(b.base_url)
        await api.login("admin", "admin-demo")
        try:
            async def a_is_dead() -> bool:
                status, body = await api.get("/api/v1/nodes")
                return status == 200 and any(n["name"] == "node-a" and not n["alive"] for n in body["nodes"])

            await until(a_is_dead, 20, interval=0.2, message="A found dead by B")
            # B has taken the wrap-up over: the note goes to the call's record from B, and she is available.
            await until(lambda: _submitted(alice, call_id), 20, interval=0.5, message="the wrap-up submitted on B")
            freed = await alice.wait(lambda m: m.get("type") == "agent.status" and m.get("id") is None
                                     and m["status"] == "available", timeout=10, since=mark)
            assert freed["reason"] == "wrap_up_done", freed
            record = await api.ended_record(call_id)
            assert record["disposition"] == "resolved", record
        finally:
            await api.close()


async def _submitted(alice, call_id: str) -> bool:
    """wrap_up.submit from alice's console on B; True once acknowledged (node_unreachable while B still forwards it
    to the dead home, before B has found it dead)."""
    answer = await alice.request({"type": "wrap_up.submit", "call_id": call_id, "disposition": "resolved"},
                                 timeout=15)
    if answer["type"] == "ack":
        return True
    assert answer["type"] == "error" and answer["code"] == "node_unreachable", answer
    return False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_callback_taken_through_a_node_that_dies_is_offered_again_and_its_rejoin_deadline_runs_elsewhere(
        database_url, redis_url, tmp_path, caller_token):
    """A callback request homed on A, taken by alice (on B): callback.ready, its rejoin deadline on A. A dies before
    the caller rejoins: the request is restored on B, offered to alice again, and its new rejoin deadline runs on B
    (the caller does not come back: it ends callback_expired there, recorded)."""
    settings = {**SETTINGS, "callback_rejoin_s": 3, "wrap_up_s": 0}
    async with cluster(database_url, redis_url, tmp_path, **settings) as nodes:
        a, b = nodes.nodes
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="call-me-back"))
        nodes.closes(ws)
        accepted = await ws.request({"type": "callback.request", "call_id": call_id})
        assert accepted["type"] == "callback.accepted", accepted
        await ws.request({"type": "bye"})  # the caller leaves the app
        await ws.close()
        api = nodes.closes(Api(b.base_url))
        await api.login("admin", "admin-demo")

        async def recorded(kind: str) -> bool:
            status, record = await api.get(f"/api/v1/calls/{call_id}")
            return status == 200 and kind in [e["kind"] for e in record["events"]]

        await until(lambda: recorded("callback_requested"), 15, interval=0.2, message="the request recorded")
        alice = await agent_socket(b.base_url)
        nodes.closes(alice)
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=20)
        taken = await alice.request({"type": "call.accept", "call_id": call_id})
        assert taken["type"] == "call.accepted", taken
        await until(lambda: recorded("callback_ready"), 15, interval=0.2, message="callback.ready recorded")
        mark = len(alice.messages)
        a.kill()  # before the caller rejoined: the rejoin deadline was A's

        again = await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=30,
                                 since=mark)
        assert again["card"]["callback"] is True
        mark = len(alice.messages)
        taken = await alice.request({"type": "call.accept", "call_id": call_id})
        assert taken["type"] == "call.accepted", taken
        ended = await alice.wait(lambda m: m.get("type") == "call.ended" and m["call_id"] == call_id, timeout=20,
                                 since=mark)
        assert ended["reason"] == "callback_expired", ended  # B's deadline: nobody rejoined within 3 s
        record = await api.ended_record(call_id, timeout=15)
        assert record["outcome"] == "callback_expired" and record["callback"] is True, record
        kinds = [e["kind"] for e in record["events"]]
        assert "callback_restored" in kinds and kinds.count("callback_ready") == 2, kinds
