"""The agent side of routing that the engine uses across nodes (signaling/cluster_calls.py), on a real redis-server:
a claim rings an agent for one call of one node, atomically; the node that holds the agent's console writes its
status but never frees an agent rung by a claim it has not seen yet; a claim whose call went away gives the agent
back; a node that stops heartbeating is seen down."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from gateway.store.redis_routing import RedisRouting


async def available(routing: RedisRouting, username: str, seen: str = "", skills: tuple[str, ...] = ("general",),
                    status: str = "available", call: str = "") -> bool:
    return await routing.push_presence(username, status, call, seen, skills, time.time(), username.title(), "agent", 1)


async def test_claims_ring_an_agent_once_and_its_node_never_frees_an_unseen_claim(redis_url):
    redis = Redis.from_url(redis_url)
    a, b, c = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b"), RedisRouting(redis, "node-c")
    try:
        assert await available(b, "xena")
        assert await a.claim_agent("c1", "xena", ["general"]) is None  # not alive: no heartbeat from its node yet
        await b.heartbeat(["xena"], ttl_s=5)
        assert await a.claim_agent("c1", "xena", ["billing"]) is None  # lacks the skill
        assert [x.username for x in await c.available()] == ["xena"]
        # Two homes race for her: one script runs first; the other finds her ringing.
        won = await asyncio.gather(a.claim_agent("c1", "xena", ["general"]), c.claim_agent("c9", "xena", []))
        assert sorted(w is not None for w in won) == [False, True] and "node-b" in won  # where her console is
        first = "c1" if won[0] else "c9"
        state = await b.agent_state("xena")
        assert state["status"] == "ringing" and state["call"] == first and await c.available() == []
        # Her node, which has not seen that offer yet, says "available" (or "away"): refused, the claim stands.
        assert not await available(b, "xena", seen="")
        assert not await available(b, "xena", seen="older-call", status="away")
        assert (await b.agent_state("xena"))["status"] == "ringing"
        # Once the offer reached her node, what it says goes.
        assert await available(b, "xena", seen=first, status="busy", call=first)
        assert (await b.agent_state("xena"))["status"] == "busy"
        assert await a.claim_agent("c2", "xena", []) is None
        assert await available(b, "xena", seen=first)
        assert [x.username for x in await a.available()] == ["xena"]
        # A claim whose call went away before it was offered gives her back, once; a stale unclaim does nothing.
        assert await a.claim_agent("c2", "xena", [])
        assert not await a.unclaim("c-other", "xena", time.time())
        assert await a.unclaim("c2", "xena", time.time())
        assert (await a.agent_state("xena"))["status"] == "available"
        ops = [(e["op"], e.get("call", "")) for e in await a.log()]
        assert ops.count(("offer", first)) == 1 and ("unclaim", "c2") in ops
        # Homes (whether a node is alive is the node registry's: test_redis_nodes.py).
        await a.set_home("c1", ttl_s=60)
        assert await b.home_of("c1") == "node-a" and await b.home_of("nope") is None
    finally:
        await redis.aclose()


async def test_an_agent_whose_heartbeats_stop_is_not_claimed(redis_url):
    redis = Redis.from_url(redis_url)
    a, b = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b")
    try:
        assert await available(b, "yuri")
        await b.heartbeat(["yuri"], ttl_s=0.3)
        assert [x.username for x in await a.available()] == ["yuri"]
        await asyncio.sleep(0.5)  # node-b died: no heartbeat
        assert await a.available() == [] and await a.claim_agent("c1", "yuri", []) is None
    finally:
        await redis.aclose()
