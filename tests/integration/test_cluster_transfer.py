"""Transfers, consults and callback requests across nodes (issue 10): a caller on node A, answered by an agent on
node B, handed (blind, or after a consult) to an agent whose console is on node C, with media both ways after the
hand-over checked by tone; callback requests of one node listed and taken from another, exactly once when two
nodes race, and taken from another node after kill -9 of the request's node. Real `callin serve` processes, a real
redis-server, records in PostgreSQL (Unix socket), real aiortc peers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, timedelta

import pytest
from redis.asyncio import Redis

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Agent, Caller, hears, wait_until
from tests.support.cluster_nodes import Cluster, cluster, spread_agents
from tests.support.waiting import until

CALLER_HZ, ALICE_HZ, BOB_HZ = 880, 440, 660
HEAR_S = 20  # how long a tone may take to be heard across nodes (a loaded machine)


async def answered_across(nodes: Cluster, a, b, caller_token, *, agent_aux: bool) -> tuple[Caller, Agent, str]:
    """A caller on A answered by alice on B, media both ways (through A's media plane); both closed at the end."""
    alice = nodes.closes(Agent(b.base_url))
    await alice.connect()
    caller = nodes.closes(Caller(a.base_url, caller_token(sub="cust-x", name="Dana Caller")))
    await caller.connect()
    call_id = (await caller.start("video", tone_hz=CALLER_HZ))["call_id"]
    assert (await alice.wait_offer(timeout=30))["call_id"] == call_id
    await alice.accept(call_id, tone_hz=ALICE_HZ, aux_audio=agent_aux)
    await caller.ws.wait("call.answered", timeout=15)
    await wait_until(lambda: "audio" in alice.peer.slots and "audio" in caller.peer.slots, 30)
    await hears(alice.peer.slots["audio"], CALLER_HZ, timeout=HEAR_S)
    await hears(caller.peer.slots["audio"], ALICE_HZ, timeout=HEAR_S)
    return caller, alice, call_id


async def claims_of(redis_url: str, call_id: str, agent: str) -> int:
    """How many times `agent` was claimed (rung) for `call_id` in the shared routing log."""
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange("callin:log")
    finally:
        await redis.aclose()
    return sum(1 for _, f in entries if f.get(b"op") == b"offer" and f.get(b"call") == call_id.encode()
               and f.get(b"agent") == agent.encode())


async def presence(redis_url: str, username: str, status: str) -> None:
    """Wait until the agent's node has written its status to the shared store (other nodes decide by it)."""
    redis = Redis.from_url(redis_url)
    try:
        async def written() -> bool:
            return await redis.hget(f"callin:agent:{username}", "status") == status.encode() \
                and bool(await redis.exists(f"callin:alive:{username}"))

        await until(written, 20, 0.1, f"{username} {status} in the shared presence")
    finally:
        await redis.aclose()


async def bob_on(nodes: Cluster, gateway, redis_url: str, *, available: bool = True) -> Agent:
    """bob's console on `gateway`, signed in available or away, once his node wrote that to the shared presence;
    closed at the end."""
    bob = nodes.closes(Agent(gateway.base_url, "bob", "bob-demo"))
    await bob.connect(available=available)
    await presence(redis_url, "bob", "available" if available else "away")
    return bob


async def request_until_done(agent: Agent, payload: dict, timeout: float = 20) -> dict:
    """A request answered target_unavailable (retryable: the target's presence not pushed yet) is sent again."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await agent.ws.request(payload, timeout=20)
        if reply.get("code") != "target_unavailable" or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_blind_transfer_to_an_agent_of_a_third_node_media_both_ways(database_url, redis_url, tmp_path,
                                                                          caller_token):
    """Caller on A, alice on B, bob on C: alice's blind transfer to bob (run on A) claims bob through the shared
    store, rings him on C, and after he accepts the caller and bob hear each other (tones), through A."""
    async with cluster(database_url, redis_url, tmp_path, "abc", ring_timeout_s=60) as nodes:
        a, b, c = nodes.nodes
        caller, alice, call_id = await answered_across(nodes, a, b, caller_token, agent_aux=False)
        bob = await bob_on(nodes, c, redis_url, available=False)

        # Errors as on one node, decided with the cluster's presence: unknown, away (bob on C), oneself.
        for target, code in (("zed", "unknown_agent"), ("bob", "target_unavailable"), ("alice", "transfer_to_self")):
            reply = await alice.ws.request({"type": "call.transfer", "call_id": call_id, "mode": "blind",
                                            "to_agent": target}, timeout=20)
            assert reply["type"] == "error" and reply["code"] == code, (target, reply)
        assert (await bob.ws.request({"type": "agent.status", "status": "available"}))["status"] == "available"

        done = await request_until_done(alice, {"type": "call.transfer", "call_id": call_id, "mode": "blind",
                                                "to_agent": "bob"})
        assert done["type"] == "ack", done
        assert (await caller.ws.wait("call.transferring", timeout=15))["mode"] == "blind"
        assert (await alice.ws.wait("call.transferred", timeout=15))["to"] == "bob"
        offer = await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20)
        assert offer["card"]["transferred_from"] == "alice"
        assert any(h["kind"] == "offered" and h.get("transfer") == "blind" for h in offer["card"]["history"])
        assert await claims_of(redis_url, call_id, "bob") == 1  # rung through the one claim of offers
        await alice.ws.wait(lambda m: m["type"] == "agent.status" and m.get("id") is None
                            and m["status"] in ("available", "wrap_up"), timeout=15)

        await bob.accept(call_id, tone_hz=BOB_HZ)  # accept and SDP go to A through C
        answered = await caller.ws.wait(lambda m: m["type"] == "call.answered" and m["agent_name"].startswith("Bob"),
                                        timeout=15)
        assert answered["call_id"] == call_id
        await wait_until(lambda: "audio" in bob.peer.slots, 30)
        await hears(bob.peer.slots["audio"], CALLER_HZ, timeout=HEAR_S)
        await hears(caller.peer.slots["audio"], BOB_HZ, timeout=HEAR_S)
        await wait_until(lambda: "video" in bob.peer.slots and len(bob.peer.slots["video"].counters) > 20, 30)
        assert None not in bob.peer.slots["video"].counters

        assert (await bob.hangup(call_id))["type"] == "ack"
        assert (await caller.ws.wait("call.ended", timeout=15))["reason"] == "agent_hangup"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_consult_with_an_agent_of_a_third_node_declined_then_completed(database_url, redis_url, tmp_path,
                                                                           caller_token):
    """Caller on A, alice on B, bob on C: a consult bob declines ends as on one node (alice told, bob free again);
    a second one he accepts: alice and bob hear each other while the caller is on hold, then the hand-over leaves
    the caller with bob, media both ways."""
    async with cluster(database_url, redis_url, tmp_path, "abc", ring_timeout_s=60) as nodes:
        a, b, c = nodes.nodes
        caller, alice, call_id = await answered_across(nodes, a, b, caller_token, agent_aux=True)
        bob = await bob_on(nodes, c, redis_url)

        consult = {"type": "call.transfer", "call_id": call_id, "mode": "warm", "to_agent": "bob"}
        assert (await request_until_done(alice, consult))["type"] == "ack"
        offer = await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20)
        assert offer["card"]["consult"]["from"] == "alice"
        assert (await bob.ws.request({"type": "call.decline", "call_id": call_id}, timeout=20))["type"] == "ack"
        declined = await alice.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] == "declined",
                                       timeout=15)
        assert declined["colleague"] == "bob"
        await bob.ws.wait(lambda m: m["type"] == "agent.status" and m.get("id") is None
                          and m["status"] == "available", timeout=15)

        since = len(bob.ws.messages)
        assert (await request_until_done(alice, consult))["type"] == "ack"  # bob's claim was given back
        offer = await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20,
                                  since=since)
        assert await claims_of(redis_url, call_id, "bob") == 2
        await bob.accept(call_id, tone_hz=BOB_HZ)
        assert (await alice.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] == "joined",
                                    timeout=15))["colleague"] == "bob"
        assert (await caller.ws.wait(lambda m: m["type"] == "call.held" and m["held"] is True, timeout=15))
        await wait_until(lambda: "audio" in bob.peer.slots and "audio:1" in alice.peer.slots, 30)
        await hears(bob.peer.slots["audio"], ALICE_HZ, timeout=HEAR_S)  # the consult: alice and bob, the caller on hold
        await hears(alice.peer.slots["audio:1"], BOB_HZ, timeout=HEAR_S)

        assert (await alice.ws.request({"type": "transfer.complete", "call_id": call_id}, timeout=20))["type"] == "ack"
        answered = await caller.ws.wait(lambda m: m["type"] == "call.answered" and m["agent_name"].startswith("Bob"),
                                        timeout=15)
        assert answered["call_id"] == call_id
        assert (await alice.ws.wait("call.transferred", timeout=15))["to"] == "bob"
        await hears(bob.peer.slots["audio"], CALLER_HZ, timeout=HEAR_S)
        await hears(caller.peer.slots["audio"], BOB_HZ, timeout=HEAR_S)

        assert (await bob.hangup(call_id))["type"] == "ack"
        assert (await caller.ws.wait("call.ended", timeout=15))["reason"] == "agent_hangup"


def closed_queue() -> str:
    """A queue closed today (holidays around today): its callback requests wait until an agent takes them."""
    today = date.today()
    return json.dumps([{"name": "after", "holidays": [str(today + timedelta(days=d)) for d in (-1, 0, 1)]}])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_callback_requests_listed_and_taken_across_nodes_once_and_after_kill(database_url, redis_url, tmp_path,
                                                                                   caller_token):
    """Two callback requests made on A. Agents on B and C list both (the cluster's inbox); both take the first at
    once: one wins (rung, and the caller told callback.ready once accepted), the other gets callback_ringing. Then
    A is killed (-9): the second request, taken over by another node, is taken from B."""
    settings = {"demo_agents": spread_agents(3), "node_dead_after_s": 3, "node_beat_s": 0.5, "node_lease_s": 60,
                "queues": closed_queue(), "ring_timeout_s": 60}
    async with cluster(database_url, redis_url, tmp_path, "abc", **settings) as nodes:
        a, b, c = nodes.nodes
        opened: list = []
        apis: list[Api] = []
        requests = []
        for i in range(2):
            ws, call_id = await caller_socket(a.base_url, caller_token(sub=f"cb-{i}", name=f"Carl {i}", queue="after"))
            opened.append(nodes.closes(ws))
            assert (await ws.wait("queue.closed", timeout=15))["reason"] == "after_hours"
            asked = await ws.request({"type": "callback.request", "call_id": call_id, "phone": f"+49 30 {i}"})
            assert asked["type"] != "error", asked
            requests.append(call_id)
        first, second = requests

        agents = {}
        for name, gateway in (("ag1", b), ("ag2", c)):
            agents[name] = await agent_socket(gateway.base_url, name, f"{name}-pass")
            nodes.closes(agents[name])
            api = nodes.closes(Api(gateway.base_url))
            assert (await api.login(name, f"{name}-pass"))[0] == 200
            apis.append(api)
        api_b, api_c = apis
        for name in agents:
            await presence(redis_url, name, "available")

        async def listed(api: Api) -> bool:
            status, box = await api.get("/api/v1/agent/inbox")
            assert status == 200, box
            return {c["call_id"] for c in box["callbacks"]} >= set(requests)

        await until(lambda: listed(api_b), 20, 0.3, "A's callback requests in the inbox on B")
        await until(lambda: listed(api_c), 20, 0.3, "A's callback requests in the inbox on C")
        status, box = await api_b.get("/api/v1/agent/inbox")
        row = next(c for c in box["callbacks"] if c["call_id"] == first)
        assert row["phone"] == "+49 30 0" and row["caller"] == "Carl 0" and row["queue"] == "after"

        # The race: both at once, each through its own node, to A.
        (status_b, body_b), (status_c, body_c) = await asyncio.gather(
            api_b.post(f"/api/v1/callbacks/{first}/take"), api_c.post(f"/api/v1/callbacks/{first}/take"))
        outcomes = {"ag1": (status_b, body_b), "ag2": (status_c, body_c)}
        winners = [n for n, (s, _) in outcomes.items() if s == 200]
        assert len(winners) == 1, outcomes
        winner = winners[0]
        loser = "ag2" if winner == "ag1" else "ag1"
        assert outcomes[winner][1] == {"call_id": first, "ringing_at": winner}
        assert outcomes[loser][0] == 409 and outcomes[loser][1]["code"] == "callback_ringing", outcomes[loser]
        offered = await agents[winner].wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == first,
                                            timeout=20)
        assert offered["card"]["callback"] is True
        assert not [m for m in agents[loser].messages if m.get("type") == "call.offered"]
        accepted = await agents[winner].request({"type": "call.accept", "call_id": first}, timeout=20)
        assert accepted["type"] == "call.accepted", accepted
        ready = await opened[0].wait("callback.ready", timeout=15)
        assert ready["call_id"] == first
        # Taken already: a later take from anywhere is refused with the same typed error.
        status, body = await apis[1 if winner == "ag1" else 0].post(f"/api/v1/callbacks/{first}/take")
        assert status == 409 and body["code"] == "callback_gone", body
        status, body = await api_b.post("/api/v1/callbacks/" + "x" * 300 + "/take")
        assert status == 409 and body["code"] == "callback_gone", body

        # kill -9 the requests' node: the second request is taken over by B or C and taken by the loser.
        a.kill()
        killed = time.monotonic()
        loser_api = api_b if loser == "ag1" else api_c
        status, body = await loser_api.post(f"/api/v1/callbacks/{second}/take")
        deadline = time.monotonic() + 30
        while status == 503 and body.get("code") == "callback_moving" and time.monotonic() < deadline:
            status, body = await loser_api.post(f"/api/v1/callbacks/{second}/take")
        assert status == 200 and body == {"call_id": second, "ringing_at": loser}, body
        print(f"\ncallback request taken {time.monotonic() - killed:.1f} s after kill -9 of its node")
        again = await agents[loser].wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == second,
                                         timeout=20)
        assert again["card"]["callback"] is True
        accepted = await agents[loser].request({"type": "call.accept", "call_id": second}, timeout=20)
        assert accepted["type"] == "call.accepted", accepted


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_target_node_killed_while_a_blind_transfer_rings_the_call_is_offered_again(database_url, redis_url,
                                                                                         tmp_path, caller_token):
    """Caller and alice on A, bob on B: alice's blind transfer rings bob on B; B is killed (-9): A, seeing B's node
    dead, withdraws the ring as for any console gone and offers the call again (to alice, free since the transfer),
    well before the ring timeout (60 s)."""
    settings = {"ring_timeout_s": 60, "node_dead_after_s": 3, "node_beat_s": 0.5}
    async with cluster(database_url, redis_url, tmp_path, **settings) as nodes:
        a, b = nodes.nodes
        bob = nodes.closes(Agent(b.base_url, "bob", "bob-demo"))
        await bob.connect(available=False)
        caller, alice, call_id = await answered_across(nodes, a, a, caller_token, agent_aux=False)
        assert (await bob.ws.request({"type": "agent.status", "status": "available"}))["status"] == "available"
        done = await request_until_done(alice, {"type": "call.transfer", "call_id": call_id, "mode": "blind",
                                                "to_agent": "bob"})
        assert done["type"] == "ack", done
        await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20)
        since = len(alice.ws.messages)

        b.kill()
        killed = time.monotonic()
        again = await alice.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=40,
                                    since=since)
        assert again["card"]["transferred_from"] == "alice" and time.monotonic() - killed < 40
        history = [h for h in again["card"]["history"] if h.get("agent") == "bob" and h["kind"] == "queued"]
        assert history and history[-1].get("reason") == "agent_disconnected", again["card"]["history"]
        await alice.accept(call_id, tone_hz=BOB_HZ)
        await wait_until(lambda: "audio" in alice.peer.slots, 30)
        await hears(caller.peer.slots["audio"], BOB_HZ, timeout=HEAR_S)
        await hears(alice.peer.slots["audio"], CALLER_HZ, timeout=HEAR_S)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_consult_target_console_dropping_ends_the_consult_not_the_call(database_url, redis_url, tmp_path,
                                                                           caller_token):
    """Caller on A, alice on B, bob on C (ring timeout 60 s, resume grace 3 s). bob's console loses its socket while
    the consult rings: the ring is withdrawn at once (alice told agent_disconnected, long before the ring timeout).
    A second consult bob joins, then his console drops for good (beyond the resume grace): the consult ends, the
    caller stays with alice (it used to end the call), and she hangs up normally."""
    async with cluster(database_url, redis_url, tmp_path, "abc", ring_timeout_s=60, resume_grace_s=3) as nodes:
        a, b, c = nodes.nodes
        alice = nodes.closes(Agent(b.base_url))
        await alice.connect()
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="consulted"))
        nodes.closes(ws)
        assert (await alice.wait_offer(timeout=30))["call_id"] == call_id
        assert (await alice.ws.request({"type": "call.accept", "call_id": call_id}))["type"] == "call.accepted"
        bob = await bob_on(nodes, c, redis_url)

        consult = {"type": "call.transfer", "call_id": call_id, "mode": "warm", "to_agent": "bob"}
        assert (await request_until_done(alice, consult))["type"] == "ack"
        await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20)
        await bob.ws.close()  # no bye: his session waits for him (resume grace), but it cannot answer
        dropped = time.monotonic()
        ended = await alice.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] != "joined", timeout=30)
        assert ended["state"] == "agent_disconnected" and ended["colleague"] == "bob", ended
        assert time.monotonic() - dropped < 30  # not the ring timeout (60 s)

        bob = await bob_on(nodes, c, redis_url)  # back, signed in again
        since = len(alice.ws.messages)
        assert (await request_until_done(alice, consult))["type"] == "ack"
        await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=20)
        assert (await bob.ws.request({"type": "call.accept", "call_id": call_id}, timeout=20))["type"] \
            == "call.accepted"
        await alice.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] == "joined", timeout=15,
                            since=since)
        await ws.wait(lambda m: m["type"] == "call.held" and m["held"] is True, timeout=15)
        await bob.ws.close()  # gone: not back within the resume grace
        ended = await alice.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] != "joined", timeout=30,
                                    since=since)
        assert ended["state"] == "agent_disconnected" and ended["colleague"] == "bob", ended
        await ws.wait(lambda m: m["type"] == "call.held" and m["held"] is False, timeout=15)
        assert not ws.of_type("call.ended")  # the caller is still with alice
        assert (await alice.ws.request({"type": "call.hangup", "call_id": call_id}, timeout=20))["type"] == "ack"
        assert (await ws.wait("call.ended", timeout=15))["reason"] == "agent_hangup"
