"""A single node keeps its promises across a restart (issue 10 item 8): callers waiting in line when the process is
killed (-9) or stopped (SIGTERM) resume in place after it starts again, with the resume token they hold.

Real `callin serve` processes on one database (SQLite file and PostgreSQL through its Unix socket), restarted on the
same port, as a caller's client retries against the same URL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import WsClient
from tests.support.cluster_nodes import record_state
from tests.support.process import GatewayProcess


async def resume(base: str, token: str, resume_token: str, last_seq: int, timeout: float = 60) -> tuple[WsClient, dict[str, Any], list[dict[str, Any]]]:
    """Reconnect as the caller's client does (backoff against the same URL) until the session is back; returns the
    socket, its welcome and the errors met on the way (resume_pending while the node takes the call over)."""
    errors: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        ws = WsClient(base, "/ws/caller")
        try:
            await ws.connect()
            welcome = await ws.request({"type": "hello", "token": token, "resume_token": resume_token,
                                        "last_seq": last_seq})
        except Exception:  # noqa: BLE001 - the node is not listening yet
            await ws.close()
            assert time.monotonic() < deadline, f"no resume within {timeout} s; errors: {errors}"
            await asyncio.sleep(0.3)
            continue
        if welcome["type"] == "welcome":
            return ws, welcome, errors
        errors.append(welcome)
        await ws.close()
        assert welcome["type"] == "error" and welcome["code"] == "resume_pending", welcome
        assert welcome["retryable"] is True and welcome["detail"]["retry_after_s"] > 0, welcome
        assert time.monotonic() < deadline, f"no resume within {timeout} s; errors: {errors}"
        await asyncio.sleep(min(1.0, welcome["detail"]["retry_after_s"]))


async def api_for(base: str) -> Api:
    api = Api(base)
    status, body = await api.login("admin", "admin-demo")
    assert status == 200, body
    return api


async def test_waiting_callers_resume_in_place_after_kill_9(database_url, caller_token, tmp_path):
    """Three callers wait; the node is killed (-9) and started again at once (same name, same port). While the dead
    instance's lease still runs, a resume is answered resume_pending (retry in N s), then the calls are restored
    in their order: two callers resume (welcome resumed, their call queued, their place told), the one who does
    not come back keeps the others behind it only until its grace ends; an agent is offered the first caller back.
    """
    gateway = GatewayProcess(database_url, tmp_path, node_name="solo", node_lease_s=20, node_heartbeat_s=0.5,
                             restore_resume_grace_s=8)
    try:
        await gateway.start()
        tokens = [caller_token(sub=f"waiting-{i}") for i in range(3)]
        callers = [await caller_socket(gateway.base_url, token) for token in tokens]
        welcomes = [next(m for m in ws.messages if m["type"] == "welcome") for ws, _ in callers]
        for ws, call_id in callers:
            await ws.wait(lambda m, call_id=call_id: m.get("type") == "queue.position" and m["call_id"] == call_id)
        gateway.kill()
        for ws, _ in callers:
            await ws.close()
        last_seqs = [ws.last_seq for ws, _ in callers]
        await gateway.start()

        # The first one never comes back; the second and third resume (the second as soon as it can).
        back: list[tuple[WsClient, dict[str, Any], list[dict[str, Any]]]] = []
        for i in (1, 2):
            back.append(await resume(gateway.base_url, tokens[i], welcomes[i]["resume_token"], last_seqs[i]))
        assert back[0][2], "the dead instance's lease (20 s) still ran: the first resume is told to retry"
        for (ws, welcome, _), i in zip(back, (1, 2)):
            call_id = callers[i][1]
            assert welcome["resumed"] is True and welcome["resume_token"] == welcomes[i]["resume_token"]
            assert {k: welcome["call"][k] for k in ("call_id", "state", "call_type")} == {
                "call_id": call_id, "state": "queued", "call_type": "voice"}, welcome
            assert welcome["replay_complete"] is False  # what the dead process sent last is not known here
            place = await ws.wait(lambda m, c=call_id: m.get("type") == "queue.position" and m["call_id"] == c)
            assert place["seq"] > last_seqs[i]  # numbered on from what the client saw before the crash
            assert place["position"] == i + 1, place  # the same place: the first caller is still ahead
        agent = await agent_socket(gateway.base_url)
        offer = await agent.wait(lambda m: m.get("type") == "call.offered", timeout=20)
        assert offer["call_id"] == callers[1][1]  # the first caller back, not the one still away
        api = await api_for(gateway.base_url)
        status, record = await api.get(f"/api/v1/calls/{callers[1][1]}")
        kinds = [e["kind"] for e in record["events"]]
        assert status == 200 and kinds.index("restored") < kinds.index("caller_resumed") < kinds.index("offered")
        assert "caller_resume" not in record  # the token's hash is never shown
        # The caller who did not come back: its place is held for restore_resume_grace_s, then the call ends.
        gone = await api.ended_record(callers[0][1], timeout=30)
        assert gone["end_reason"] == "caller_disconnected" and "restored" in [e["kind"] for e in gone["events"]]
        third = back[1][0]
        # ... and the third caller moves up past it (the second, ringing at the agent, is still ahead).
        moved = await third.wait(lambda m: m.get("type") == "queue.position" and m["position"] == 2, timeout=20)
        assert moved["call_id"] == callers[2][1] and moved["queue_length"] == 2
        await api.close()
        await agent.close()
        for ws, _, _ in back:
            await ws.close()
    finally:
        gateway.close()


async def test_a_graceful_restart_tells_waiting_callers_to_resume_and_keeps_their_place(database_url, caller_token,
                                                                                           tmp_path):
    """SIGTERM: a waiting caller is told `shutdown` with resume: true (its call is not ended, its record stays
    open); the next start restores it at once (the stopped instance needs no lease to run out) and the caller
    resumes in place; an agent then takes the call."""
    gateway = GatewayProcess(database_url, tmp_path, node_name="solo", node_lease_s=30, node_heartbeat_s=0.5)
    try:
        await gateway.start()
        token = caller_token(sub="graceful")
        ws, call_id = await caller_socket(gateway.base_url, token)
        welcome = next(m for m in ws.messages if m["type"] == "welcome")
        assert await gateway.terminate() == 0, gateway.stderr()
        shutdown = await ws.wait("shutdown")
        assert shutdown["resume"] is True and shutdown["retry_after_s"] > 0, shutdown
        assert not ws.of_type("call.ended")
        await ws.close()
        await gateway.start()
        back, again, errors = await resume(gateway.base_url, token, welcome["resume_token"], ws.last_seq, timeout=20)
        assert not errors  # a stopped node is taken over at start: nothing to wait for
        assert again["resumed"] is True and again["call"]["call_id"] == call_id and again["call"]["state"] == "queued"
        agent = await agent_socket(gateway.base_url)
        offer = await agent.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id, timeout=20)
        await agent.request({"type": "call.accept", "call_id": call_id})
        answered = await back.wait("call.answered")
        assert answered["call_id"] == call_id and offer["card"]["identity"]["subject"] == "graceful"
        await back.request({"type": "call.hangup", "call_id": call_id})
        api = await api_for(gateway.base_url)
        record = await api.ended_record(call_id)
        assert record["outcome"] == "answered" and record["end_reason"] == "caller_hangup"
        kinds = [e["kind"] for e in record["events"]]
        assert "restored" in kinds and "shutdown" not in [e.get("detail", {}).get("reason") for e in record["events"]]
        await api.close()
        await agent.close()
        await back.close()
    finally:
        gateway.close()


async def test_an_sdk_caller_kept_across_a_restart_sets_its_media_up_again_and_is_answered(caller_token, tmp_path):
    """The Python SDK as a kiosk would use it: queued with camera and microphone (synthetic counter video and tone),
    the gateway stopped with SIGTERM and started again. The SDK resumes by itself (`shutdown.resume`), sees a new
    session id (the session was restored), sets its media up again with the new process, and the agent who then
    takes the call gets the caller's video and tone, checked by content."""
    from callin_sdk import CallinCaller, synthetic
    from tests.support.clients import Agent, wait_until

    gateway = GatewayProcess(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}", tmp_path, node_name="kiosk-node",
                             node_lease_s=30, node_heartbeat_s=0.5, shutdown_retry_after_s=1)
    caller = CallinCaller(gateway.base_url, caller_token(sub="kiosk-restart"), host_addresses=["127.0.0.1"])
    agent = None
    try:
        await gateway.start()
        first = await caller.connect()
        queued = await caller.start_call(video=synthetic(fps=15, tone_hz=880))
        await caller.wait_for("media", lambda e: e["state"] == "connected", since=0, timeout=20)
        mark = caller.mark()
        assert await gateway.terminate() == 0, gateway.stderr()
        await gateway.start()
        await caller.wait_for("reconnected", since=mark, timeout=60)
        assert caller.welcome is not None and caller.welcome.session_id != first.session_id
        assert caller.state == "queued" and caller.call_id == queued["call_id"]
        await caller.wait_for("media", lambda e: e["state"] == "connected", since=mark, timeout=20)
        agent = Agent(gateway.base_url)
        await agent.connect()
        offer = await agent.wait_offer()
        assert offer["call_id"] == queued["call_id"]
        await agent.accept(offer["call_id"], tone_hz=440)
        await caller.wait_for("answered", since=mark, timeout=15)
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 30, 20)
        counters = agent.peer.sinks["video"].counters
        assert None not in counters and counters == sorted(counters) and counters[-1] > counters[0]
        await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 15)
        assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
        assert not [e for e in caller.events if e.name == "redialing"]  # the same call, never placed again
    finally:
        await caller.close()
        if agent is not None:
            await agent.close()
        gateway.close()


async def test_a_connected_caller_rejoins_first_in_line_after_kill_9(database_url, caller_token, tmp_path):
    """A connected call cannot outlive its process (its media lived there): after kill -9 and a restart its record is
    closed as interrupted, and its caller, resuming with its token, waits again first in line in a new call (told
    call.interrupted), ahead of a caller who was waiting before the crash."""
    gateway = GatewayProcess(database_url, tmp_path, node_name="solo", node_lease_s=3, node_heartbeat_s=0.5)
    try:
        await gateway.start()
        agent = await agent_socket(gateway.base_url)
        token = caller_token(sub="talking")
        talking, old_id = await caller_socket(gateway.base_url, token)
        offer = await agent.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == old_id, timeout=10)
        accepted = await agent.request({"type": "call.accept", "call_id": offer["call_id"]})
        assert accepted["type"] == "call.accepted", accepted
        await record_state(database_url, old_id, "connected")
        waiting, waiting_id = await caller_socket(gateway.base_url, caller_token(sub="in-line"))
        await waiting.wait(lambda m: m.get("type") == "queue.position" and m["call_id"] == waiting_id)
        await record_state(database_url, waiting_id, "queued")
        welcome = next(m for m in talking.messages if m["type"] == "welcome")
        gateway.kill()
        for ws in (agent, talking, waiting):
            await ws.close()
        await gateway.start()

        back, again, _ = await resume(gateway.base_url, token, welcome["resume_token"], talking.last_seq)
        new_id = again["call"]["call_id"]
        assert again["resumed"] is True and again["call"]["state"] == "queued" and new_id != old_id, again
        told = await back.wait("call.interrupted", timeout=10)
        assert told["call_id"] == old_id and told["rejoined_call_id"] == new_id, told
        place = await back.wait(lambda m: m.get("type") == "queue.position" and m["call_id"] == new_id, timeout=10)
        assert place["position"] == 1, place  # ahead of the caller restored in its place
        api = await api_for(gateway.base_url)
        status, record = await api.get(f"/api/v1/calls/{old_id}")
        assert status == 200 and record["outcome"] == "interrupted", record
        await api.close()
        await back.close()
    finally:
        gateway.close()


async def test_an_sdk_caller_cut_off_by_kill_9_follows_call_interrupted_and_is_answered_with_media(caller_token,
                                                                                                   tmp_path):
    """The Python SDK in a connected call when its node is killed (-9) and started again: it resumes by itself, is
    told call.interrupted, follows the new call waiting first in line (the `interrupted` event, the new call id,
    state queued), sets its media up again for it, and the agent who takes the new call gets the caller's video and
    tone, checked by content (no redial: the gateway placed the call again, the SDK followed)."""
    from callin_sdk import CallinCaller, synthetic
    from tests.support.clients import Agent, wait_until

    gateway = GatewayProcess(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}", tmp_path, node_name="kiosk-node",
                             node_lease_s=3, node_heartbeat_s=0.5, resume_grace_s=120)
    caller = CallinCaller(gateway.base_url, caller_token(sub="kiosk-cut-off"), host_addresses=["127.0.0.1"])
    agents: list[Agent] = []
    try:
        await gateway.start()
        agent = Agent(gateway.base_url)
        agents.append(agent)
        await agent.connect()
        queued = await caller.start_call(video=synthetic(fps=15, tone_hz=880))
        old_id = queued["call_id"]
        offer = await agent.wait_offer()
        assert offer["call_id"] == old_id
        await agent.accept(old_id, tone_hz=440)
        await caller.wait_for("connected", since=0, timeout=20)
        await record_state(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}", old_id, "connected")
        mark = caller.mark()
        gateway.kill()
        await agent.close()
        await gateway.start()

        told = await caller.wait_for("interrupted", since=mark, timeout=90)
        new_id = told["rejoined_call_id"]
        assert told["call_id"] == old_id and new_id != old_id and told["reason"] == "node_lost", told.data
        assert caller.call_id == new_id and caller.state in ("queued", "connected"), (caller.call_id, caller.state)
        await caller.wait_for("state", lambda e: e["state"] == "queued", since=mark, timeout=5)
        await caller.wait_for("media", lambda e: e["state"] == "connected", since=told.index, timeout=30)
        assert not [e for e in caller.events if e.index >= mark and e.name == "ended"]  # followed, not ended

        agent = Agent(gateway.base_url)
        agents.append(agent)
        await agent.connect()
        offer = await agent.wait_offer(timeout=20)
        assert offer["call_id"] == new_id
        await agent.accept(new_id, tone_hz=440)
        answered = await caller.wait_for("answered", since=told.index, timeout=15)
        assert answered["call_id"] == new_id and caller.state == "connected"
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 30, 20)
        counters = agent.peer.sinks["video"].counters
        assert None not in counters and counters == sorted(counters) and counters[-1] > counters[0]
        await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 15)
        assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
        assert not [e for e in caller.events if e.name == "redialing"]
    finally:
        await caller.close()
        for agent in agents:
            await agent.close()
        gateway.close()
