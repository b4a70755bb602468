"""One line across nodes (issue 10, items 3, 4 and 9): a caller on node A answered by an agent whose console is on
node B, media both ways through A's media plane; the agent's commands reach A through B. Real `callin serve`
processes, a real redis-server, records in PostgreSQL (Unix socket), real aiortc peers checked by content."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from tests.support.api import caller_socket
from tests.support.clients import Agent, Caller, hears, wait_until
from tests.support.cluster_nodes import accept, cluster, node, record_state, spread_agents, start


LOCATION = {"lat": 48.8566, "lon": 2.3522, "accuracy_m": 35.0, "timestamp": 1_795_468_254.0}


def in_order(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_caller_on_node_a_answered_by_agent_on_node_b_media_both_ways(database_url, redis_url, tmp_path,
                                                                             caller_token):
    async with cluster(database_url, redis_url, tmp_path) as nodes:
        a, b = nodes.nodes
        agent = nodes.closes(Agent(b.base_url))  # alice's console on B; nobody signed in on A
        await agent.connect()
        caller = nodes.closes(Caller(a.base_url, caller_token(sub="cust-7", name="Dana Caller")))
        await caller.connect()
        queued = await caller.start("video", tone_hz=880)
        call_id = queued["call_id"]

        offer = await agent.wait_offer(timeout=20)
        assert offer["call_id"] == call_id and offer["card"]["identity"]["name"] == "Dana Caller"
        assert isinstance(offer["seq"], int)  # an event of alice's session on B, numbered there
        ringing = await caller.ws.wait("call.ringing", timeout=10)
        assert ringing["agent_name"] == "Alice (demo agent)"
        # The caller's device answers its location request while the call rings at alice on B: relayed from A.
        assert offer["card"]["location"] is None
        located = await caller.ws.request({"type": "call.location", "location": LOCATION})
        assert located["type"] == "ack", located
        told = await agent.ws.wait("call.location", timeout=10)
        assert told["call_id"] == call_id and told["location"] == {**LOCATION, "source": "device"}
        assert isinstance(told["seq"], int) and told["seq"] > offer["seq"]

        await agent.accept(call_id, tone_hz=440)  # accept and sdp.offer go to A through B; their replies come back
        answered = await caller.ws.wait("call.answered", timeout=10)
        assert answered["agent_name"] == "Alice (demo agent)"
        busy = await agent.ws.wait(lambda m: m["type"] == "agent.status" and m["status"] == "busy", timeout=10)
        assert busy["call_id"] == call_id

        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 60, 30)
        await wait_until(lambda: "audio" in caller.peer.sinks and len(caller.peer.sinks["audio"].audio) >= 50, 30)
        await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 30)
        counters = agent.peer.sinks["video"].counters
        assert None not in counters and in_order(counters), counters
        assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
        assert abs(caller.peer.sinks["audio"].dominant_frequency() - 440) < 30

        # In-call commands about a call homed elsewhere: chat from the agent reaches the caller on A.
        sent = await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "hello from B"})
        assert sent["type"] == "ack", sent
        chat = await caller.ws.wait("chat.message", timeout=10)
        assert chat["message"]["text"] == "hello from B" and chat["message"]["from"]["role"] == "agent"
        echoed = await agent.ws.wait("chat.message", timeout=10)  # the sender sees its line too, relayed from A
        assert echoed["message"]["text"] == "hello from B"
        # A bad command is refused by the home with a typed error, relayed as it is.
        refused = await agent.ws.request({"type": "call.accept", "call_id": call_id})
        assert refused["type"] == "error" and refused["code"] == "not_offered", refused

        # The agent hangs up (on A, through B): the caller is told, alice wraps up then is available, on B.
        done = await agent.ws.request({"type": "call.hangup", "call_id": call_id})
        assert done["type"] == "ack", done
        ended = await caller.ws.wait("call.ended", timeout=10)
        assert ended["reason"] == "agent_hangup"
        await agent.ws.wait(lambda m: m["type"] == "call.ended" and m["call_id"] == call_id, timeout=10)
        status = await agent.ws.wait(lambda m: m["type"] == "agent.status" and m.get("id") is None
                                     and m["status"] in ("wrap_up", "available"), timeout=10)
        if status["status"] == "wrap_up":
            finished = await agent.ws.request({"type": "wrap_up.submit", "call_id": call_id, "disposition": "resolved"})
            assert finished["type"] == "ack", finished

        # A second caller, now on B: alice (on B) gets it too, so her status was pushed as available again.
        second = Caller(b.base_url, caller_token(sub="cust-8", name="Eve Caller"))
        await second.connect()
        queued2 = await second.start("voice", tone_hz=660)
        offer2 = await agent.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == queued2["call_id"],
                                     timeout=20)
        assert offer2["card"]["identity"]["name"] == "Eve Caller"
        await second.close()


async def answer_everything(agent: Agent, stop: asyncio.Event, problems: list[str]) -> None:
    """Accept each offer at once, then hang up; until told to stop. What goes wrong is noted, not raised."""
    index = 0
    while not stop.is_set():
        try:
            offer = await agent.ws.wait(lambda m: m.get("type") == "call.offered", timeout=1, since=index)
        except AssertionError:
            continue
        index = agent.ws.messages.index(offer) + 1
        try:
            accepted = await agent.ws.request({"type": "call.accept", "call_id": offer["call_id"]}, timeout=30)
            if accepted["type"] != "call.accepted":
                problems.append(f"{agent.username} accept {offer['call_id']}: {accepted}")
                continue
            ended = await agent.ws.request({"type": "call.hangup", "call_id": offer["call_id"]}, timeout=30)
            if ended["type"] != "ack":
                problems.append(f"{agent.username} hangup {offer['call_id']}: {ended}")
        except AssertionError as exc:
            problems.append(f"{agent.username} {offer['call_id']}: {str(exc)[:200]}")


def offers_while_holding(messages: list[dict]) -> list[str]:
    """Offers this agent got while it still held another call (offered or connected, in the order its socket
    received them): an agent over its capacity of one."""
    holding: str | None = None
    wrong = []
    for m in messages:
        kind = m.get("type")
        if kind == "call.offered":
            if holding is not None:
                wrong.append(f"{m['call_id']} offered while holding {holding}")
            holding = m["call_id"]
        elif kind == "offer.withdrawn" and m["call_id"] == holding:
            holding = None
        elif kind == "agent.status" and m.get("id") is None and m["status"] in ("available", "away"):
            holding = None
    return wrong


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_200_calls_on_3_nodes_offered_exactly_once(database_url, redis_url, tmp_path, caller_token):
    """Three nodes dispatch at once against one pool of agents spread over them: every call is offered, never to
    two agents at once, and no agent is rung while it holds a call."""
    settings = {"demo_agents": spread_agents(9), "caller_call_starts_per_address_per_minute": 10_000,
                "wrap_up_s": 0, "ring_timeout_s": 60}
    nodes = [node(database_url, redis_url, tmp_path, f"node-{i}", i == 0, **settings) for i in range(3)]
    agents: list[Agent] = []
    callers = []
    stop = asyncio.Event()
    problems: list[str] = []
    redis = None
    try:
        for gateway in nodes:
            await start(gateway)
        for i in range(9):
            agent = Agent(nodes[i % 3].base_url, f"ag{i}", f"ag{i}-pass")
            await agent.connect()
            agents.append(agent)
        workers = [asyncio.ensure_future(answer_everything(agent, stop, problems)) for agent in agents]
        redis = Redis.from_url(redis_url)
        await redis.config_resetstat()
        began = time.monotonic()

        async def place(i: int) -> tuple[object, str]:
            ws, call_id = await caller_socket(nodes[i % 3].base_url, caller_token(sub=f"bulk-{i}"))
            return ws, call_id

        for first in range(0, 200, 20):  # in bursts: the nodes race for the same agents
            callers.extend(await asyncio.gather(*(place(i) for i in range(first, first + 20))))
        call_ids = {call_id for _, call_id in callers}
        assert len(call_ids) == 200

        def offered() -> dict[str, list[str]]:
            seen: dict[str, list[str]] = {}
            for agent in agents:
                for m in agent.ws.of_type("call.offered"):
                    seen.setdefault(m["call_id"], []).append(agent.username)
            return seen

        await wait_until(lambda: call_ids <= set(offered()), timeout=240, interval=0.5)
        for ws, call_id in callers:
            await ws.wait(lambda m, c=call_id: m.get("type") == "call.ended" and m["call_id"] == c, timeout=60)
        stop.set()
        await asyncio.gather(*workers)
        commands = (await redis.info("stats"))["total_commands_processed"]
        print(f"\n200 calls on 3 nodes, 9 agents: all offered, answered and ended in {time.monotonic() - began:.1f} s; "
              f"{commands} Redis commands ({commands / 200:.0f} per call, heartbeats and passes included)")

        assert not problems, problems[:10]
        twice = {call_id: who for call_id, who in offered().items() if len(who) > 1}
        withdrawn = [m for agent in agents for m in agent.ws.of_type("offer.withdrawn")]
        assert not twice, f"calls offered to two agents: {twice}; withdrawn: {withdrawn[:10]}"
        assert not withdrawn, f"offers withdrawn: {withdrawn[:10]}"
        over = {agent.username: offers_while_holding(agent.ws.messages) for agent in agents}
        assert not any(over.values()), over
        per_agent = {agent.username: len(agent.ws.of_type("call.offered")) for agent in agents}
        assert sum(per_agent.values()) == 200 and min(per_agent.values()) > 0, per_agent
        # Calls were answered across nodes, not only by the agents of each call's node.
        home = {call_id: i % 3 for i, (_, call_id) in enumerate(callers)}
        crossed = sum(1 for agent_no, agent in enumerate(agents) for m in agent.ws.of_type("call.offered")
                      if home[m["call_id"]] != agent_no % 3)
        assert crossed > 0
    finally:
        stop.set()
        if redis is not None:
            await redis.aclose()
        for ws, _ in callers:
            await ws.close()
        for agent in agents:
            await agent.close()
        for gateway in nodes:
            gateway.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_supervisor_on_a_third_node_monitors_whispers_and_barges(database_url, redis_url, tmp_path,
                                                                       caller_token):
    """Caller on A, alice on B, sam on C: sam's supervise.start and SDP reach A through C; who hears whom is
    checked by tone (caller 880 Hz, alice 440 Hz, sam 660 Hz)."""
    async with cluster(database_url, redis_url, tmp_path, "abc") as nodes:
        a, b, c = nodes.nodes
        alice = Agent(b.base_url)
        nodes.closes(alice)
        await alice.connect()
        caller = Caller(a.base_url, caller_token(sub="cust-9", name="Dana Caller"))
        nodes.closes(caller)
        await caller.connect()
        queued = await caller.start("video", tone_hz=880, aux_audio=True)
        call_id = queued["call_id"]
        await alice.wait_offer(timeout=20)
        await alice.accept(call_id, tone_hz=440, aux_audio=True)
        await caller.ws.wait("call.answered", timeout=10)

        sam = Agent(c.base_url, "sam", "sam-demo")
        nodes.closes(sam)
        await sam.connect(available=False)
        started = await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
        assert started["type"] == "supervise.started" and started["card"]["call_id"] == call_id, started
        await sam.join_media(call_id, tone_hz=660, aux_audio=True)
        await wait_until(lambda: {"audio", "audio:1", "video"} <= set(sam.peer.slots), 20)
        await hears(sam.peer.slots["audio"], 880, timeout=20)  # monitor: sam hears the caller and alice
        await hears(sam.peer.slots["audio:1"], 440, timeout=20)
        await wait_until(lambda: len(sam.peer.slots["video"].counters) > 10, 20)

        whisper = await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "whisper"})
        assert whisper["type"] == "supervise.started", whisper
        await wait_until(lambda: "audio:1" in alice.peer.slots, 20)
        await hears(alice.peer.slots["audio:1"], 660, timeout=20)  # alice (on B) hears sam (on C), through A

        barge = await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
        assert barge["type"] == "supervise.started", barge
        await wait_until(lambda: "audio:1" in caller.peer.slots, 20)
        await hears(caller.peer.slots["audio:1"], 660, timeout=20)
        await hears(caller.peer.slots["audio"], 440, timeout=20)

        stopped = await sam.ws.request({"type": "supervise.stop", "call_id": call_id})
        assert stopped["type"] == "ack", stopped
        assert (await alice.hangup(call_id))["type"] == "ack"
        assert (await caller.ws.wait("call.ended", timeout=10))["reason"] == "agent_hangup"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_home_node_killed_frees_the_agent_of_another_node(database_url, redis_url, tmp_path, caller_token):
    """kill -9 the node that holds a connected call: the agent on the other node is told the call ended
    (node_lost) and is available again, and is offered the next call (its presence was pushed again)."""
    async with cluster(database_url, redis_url, tmp_path) as nodes:
        a, b = nodes.nodes
        agent = nodes.closes(Agent(b.base_url))
        await agent.connect()
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="doomed"))
        nodes.closes(ws)
        offer = await agent.wait_offer(timeout=20)
        assert offer["call_id"] == call_id
        accepted = await agent.ws.request({"type": "call.accept", "call_id": call_id})
        assert accepted["type"] == "call.accepted", accepted
        await agent.ws.wait(lambda m: m["type"] == "agent.status" and m["status"] == "busy", timeout=10)
        # Records are written behind the call (coalesced): kill the home once its record says connected, so that
        # the node that takes its records over closes this one as interrupted (a record still saying queued would
        # be restored as a waiting call instead: the caller keeps a place, see test_restart_resume.py).
        await record_state(database_url, call_id, "connected")

        a.kill()
        ended = await agent.ws.wait(lambda m: m["type"] == "call.ended" and m["call_id"] == call_id, timeout=30)
        assert ended["reason"] == "node_lost" and ended["by"] == "system"
        status = await agent.ws.wait(lambda m: m["type"] == "agent.status" and m.get("reason") == "node_lost",
                                     timeout=10)
        assert status["status"] == "available"
        # A forwarded command about the lost call is answered, not left hanging.
        late = await agent.ws.request({"type": "call.hangup", "call_id": call_id}, timeout=20)
        assert late["type"] == "error" and late["code"] == "unknown_call", late

        ws2, call2 = await caller_socket(b.base_url, caller_token(sub="next"))
        nodes.closes(ws2)
        again = await agent.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call2, timeout=20)
        assert again["call_id"] == call2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_agent_node_killed_while_ringing_the_call_goes_to_another_node(database_url, redis_url, tmp_path,
                                                                            caller_token):
    """kill -9 the node of the agent a call rings at: her presence expires within seconds (no new offers), and the
    call's home, seeing her node gone, withdraws the ring and offers the call to an agent of a third node well
    before the ring timeout (60 s here)."""
    async with cluster(database_url, redis_url, tmp_path, "abc", ring_timeout_s=60) as nodes:
        a, b, c = nodes.nodes
        redis = Redis.from_url(redis_url)
        nodes.at_end(redis.aclose)
        alice = Agent(b.base_url)
        nodes.closes(alice)
        await alice.connect()
        bob = Agent(c.base_url, "bob", "bob-demo")
        nodes.closes(bob)
        await bob.connect(available=False)
        ws, call_id = await caller_socket(a.base_url, caller_token(sub="stranded"))
        nodes.closes(ws)
        assert (await alice.wait_offer(timeout=20))["call_id"] == call_id
        assert (await bob.ws.request({"type": "agent.status", "status": "available"}))["status"] == "available"

        b.kill()
        killed = time.monotonic()
        deadline = time.monotonic() + 10
        while await redis.exists("callin:alive:alice"):
            assert time.monotonic() < deadline, "alice's presence outlived her node"
            await asyncio.sleep(0.2)
        offer = await bob.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, timeout=30)
        assert offer["call_id"] == call_id and time.monotonic() - killed < 40
        answered = await accept(bob.ws, ws, call_id)
        assert answered["agent_name"] == "Bob (demo agent)"
