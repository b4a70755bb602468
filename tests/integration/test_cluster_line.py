"""One line over every node (issue 10, item 1): callers spread over 3 real `callin serve` nodes (a real redis-server,
records in PostgreSQL) are told places 1..N in the order they arrived, whatever node they reached; one agent on a
fourth console answers them in that order (a caller who arrived earlier on node B is never overtaken by a later one
on node A); a supervisor's wallboard counts every node's callers. Then a node is killed (SIGKILL): its callers reconnect
to another node with their resume token and keep their places among the others."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from tests.support.api import caller_socket
from tests.support.balancer import RoundRobin
from tests.support.clients import Agent, WsClient, wait_until
from tests.support.cluster_nodes import node, spread_agents, start
from tests.integration.test_drain import resume_through

CALLERS = 6


def place(ws: WsClient, call_id: str) -> int | None:
    """The last place the caller was told (call.queued, then queue.position: only when it changes)."""
    told = [m for m in ws.messages if m.get("type") in ("call.queued", "queue.position") and m.get("call_id") == call_id]
    return told[-1]["position"] if told else None


async def places_are(callers: list[tuple[WsClient, str]], expected: list[int], timeout: float = 20) -> None:
    def now() -> list[int | None]:
        return [place(ws, call_id) for ws, call_id in callers]

    try:
        await wait_until(lambda: now() == expected, timeout)
    except AssertionError:
        raise AssertionError(f"places {now()}, expected {expected}; the first caller got {callers[0][0].messages}") \
            from None


async def shared_state(redis_url: str) -> dict:
    """What Redis holds of the line and the agent (to explain a failure)."""
    redis = Redis.from_url(redis_url)
    try:
        state = {k: await redis.zrange(f"callin:{k}:default", 0, -1, withscores=True) for k in ("wait", "ready")}
        return state | {"owner": await redis.hgetall("callin:waitowner"),
                        "agent": await redis.hgetall("callin:agent:ag0")}
    finally:
        await redis.aclose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_places_and_offers_follow_arrival_over_three_nodes(database_url, redis_url, tmp_path, caller_token):
    settings = {"demo_agents": spread_agents(1), "wrap_up_s": 0, "position_update_interval_s": 0,
                "caller_call_starts_per_address_per_minute": 1000, "node_dead_after_s": 3, "node_beat_s": 0.5,
                "media_workers": 0}
    nodes = [node(database_url, redis_url, tmp_path, f"node-{i}", i == 0, **settings) for i in range(3)]
    sockets: list[WsClient] = []
    balancer = None
    try:
        for gateway in nodes:
            await start(gateway)
        sam = Agent(nodes[1].base_url, "sam", "sam-demo")  # a supervisor, away: watches the wallboard on node 1
        await sam.connect(available=False)
        sockets.append(sam.ws)
        # Callers arrive one after the other, spread over the nodes: 0 on node 0, 1 on node 1, 2 on node 2, 3 on 0...
        callers: list[tuple[WsClient, str]] = []
        tokens = [caller_token(sub=f"line-{i}") for i in range(CALLERS)]
        for i in range(CALLERS):
            ws, call_id = await caller_socket(nodes[i % 3].base_url, tokens[i])
            sockets.append(ws)
            callers.append((ws, call_id))
            await asyncio.sleep(0.01)  # distinct arrival times even on a fast machine
        await places_are(callers, [i + 1 for i in range(CALLERS)])
        # call.queued already counted the callers of every node ahead (each arrived last: the length is its place).
        queued = [next(m for m in ws.messages if m.get("type") == "call.queued") for ws, _ in callers]
        assert [(m["position"], m["queue_length"]) for m in queued] == [(i + 1, i + 1) for i in range(CALLERS)]

        board = await sam.ws.request({"type": "wallboard.subscribe"})
        assert board["type"] == "wallboard", board
        queue = next(q for q in board["queues"] if q["name"] == "default")
        if queue["waiting"] != CALLERS:  # the cluster's count follows the other nodes' lines within about a second
            board = await sam.ws.wait(lambda m: m.get("type") == "wallboard" and next(
                q for q in m["queues"] if q["name"] == "default")["waiting"] == CALLERS, timeout=10)
            queue = next(q for q in board["queues"] if q["name"] == "default")
        assert queue["waiting"] == CALLERS and queue["waiting_here"] == 2, queue  # the cluster's; node 1's
        assert len(board["waiting"]) == 2  # the calls listed are node 1's

        # Node 0 dies (kill -9) with callers 0 and 3: they reconnect (through a balancer in front of the other two)
        # with their resume tokens and keep their places among the others (the dead node's entries leave the line;
        # the calls restored on the node that found it dead keep their age).
        nodes[0].kill()
        balancer = RoundRobin([nodes[1].port, nodes[2].port])
        await balancer.start()
        for i in (0, 3):
            ws, call_id = callers[i]
            welcome = next(m for m in ws.messages if m["type"] == "welcome")
            await ws.close()
            back, again, _ = await resume_through(balancer.base_url, tokens[i], welcome["resume_token"],
                                                  ws.last_seq, timeout=30)
            sockets.append(back)
            assert again["resumed"] is True and again["call"]["call_id"] == call_id, again
            callers[i] = (back, call_id)
        await places_are(callers, [i + 1 for i in range(CALLERS)])

        # One agent, on node 2: offered the callers in the order they arrived, across nodes.
        agent = Agent(nodes[2].base_url, "ag0", "ag0-pass")
        await agent.connect()
        sockets.append(agent.ws)
        order = []
        for turn in range(CALLERS):
            try:
                offer = await agent.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] not in order,
                                            timeout=20)
            except AssertionError:
                raise AssertionError(f"no offer at turn {turn}; {await shared_state(redis_url)}") from None
            order.append(offer["call_id"])
            assert offer["call_id"] == callers[turn][1], (turn, [c for _, c in callers].index(offer["call_id"]))
            accepted = await agent.ws.request({"type": "call.accept", "call_id": offer["call_id"]})
            assert accepted["type"] == "call.accepted", accepted
            if turn == 1:  # two answered: everyone else moved up by two, on every node
                await places_are(callers[2:], [i + 1 for i in range(CALLERS - 2)])
                await wait_until(lambda: any(
                    m.get("type") == "wallboard" and [q["waiting"] for q in m["queues"]] == [CALLERS - 2]
                    for m in sam.ws.messages), 10)
            ended = await agent.ws.request({"type": "call.hangup", "call_id": offer["call_id"]})
            assert ended["type"] == "ack", ended
    finally:
        for ws in sockets:
            await ws.close()
        if balancer is not None:
            await balancer.close()
        for gateway in nodes:
            gateway.close()
