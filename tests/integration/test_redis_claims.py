"""The agent side of routing that the engine uses across nodes (signaling/cluster_calls.py), on a real redis-server:
a claim rings an agent for one call of one node, atomically; the node that holds the agent's console writes its
status but never frees an agent rung by a claim it has not seen yet, unless that claim is stale (past its deadline,
or its claimer dead in the node registry); a claim whose call went away gives the agent back; a node that stops
heartbeating is seen down."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from gateway.store.redis_nodes import NodeEntry, RedisNodeRegistry
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


async def test_a_claim_never_outlives_its_deadline(redis_url):
    """A claim whose offer its agent's node never saw (lost: pub/sub is at most once) holds the agent only until its
    deadline (the ring timeout plus a margin): before it, her node's "available" is refused; after it, written over
    the claim (2, logged claim_dropped expired), and she is claimed again."""
    redis = Redis.from_url(redis_url)
    a, b = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b")
    try:
        assert await available(b, "xena")
        await b.heartbeat(["xena"], ttl_s=30)
        assert await a.claim_agent("c1", "xena", [], hold_s=0.6) == "node-b"
        until = int(await redis.zscore(a.claims_key, "xena"))
        seconds, micros = await redis.time()
        assert 0 < until - (seconds * 1000 + micros // 1000) <= 600  # on the Redis clock
        assert await available(b, "xena") == 0  # held: the offer may still be on its way
        assert (await a.agent_state("xena"))["status"] == "ringing"
        assert await b.heartbeat(["xena"], ttl_s=30) == []  # her node's heartbeat: nothing stale yet
        await asyncio.sleep(0.8)
        assert await b.heartbeat(["xena"], ttl_s=30) == ["xena"]  # tells her node to push her status again
        assert await a.claim_agent("c2", "xena", []) is None  # past its deadline, still hers until her node says
        assert await available(b, "xena") == 2
        state = await a.agent_state("xena")
        assert state["status"] == "available" and state["call"] == ""
        assert await redis.zscore(a.claims_key, "xena") is None
        dropped = [e for e in await a.log() if e["op"] == "claim_dropped"]
        assert [(e["call"], e["agent"], e["claimer"], e["reason"]) for e in dropped] == [
            ("c1", "xena", "node-a", "expired")]
        assert await available(b, "xena") == 1  # nothing stale any more
        assert await b.heartbeat(["xena"], ttl_s=30) == []
        assert await a.claim_agent("c2", "xena", []) == "node-b"
        # Once her node saw that offer, its own "ringing" ends the deadline (what her node says goes).
        assert await available(b, "xena", seen="c2", status="ringing", call="c2") == 1
        assert await redis.zscore(a.claims_key, "xena") is None
        # A pending claim's entry left over while she is not ringing any more: the heartbeat drops it, reports nothing.
        assert await available(b, "xena", seen="c2") == 1
        await redis.zadd(a.claims_key, {"xena": 1})
        assert await b.heartbeat(["xena"], ttl_s=30) == [] and await redis.zscore(a.claims_key, "xena") is None
    finally:
        await redis.aclose()


async def test_a_claim_of_a_dead_node_is_written_over_a_live_ones_is_not(redis_url):
    """With the node registry (CALLIN_NODE_DEAD_AFTER_S), a claim of a node that stopped heartbeating there, was
    found dead or left, no longer holds the agent: her node writes her status over it (logged claimer_dead). A claim
    of a live node holds until its deadline: a late status write never frees a ringing agent."""
    redis = Redis.from_url(redis_url)
    registry = RedisNodeRegistry(redis, dead_after_s=2)
    a, b = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b", claimer_dead_after_s=2)
    now = time.time()

    async def beat(instance: str, at: float) -> None:
        await registry.beat(NodeEntry(instance=instance, name=instance, lease="l-" + instance, started=now,
                                      heartbeat=at))

    try:
        await beat("node-a", now)
        await beat("node-b", now)
        assert await available(b, "xena")
        await b.heartbeat(["xena"], ttl_s=30)
        assert await a.claim_agent("c1", "xena", [], hold_s=60) == "node-b"
        for status in ("available", "away", "offline"):  # node-a alive: refused, whatever her node says
            assert await available(b, "xena", status=status) == 0
        # node-a silent for less than dead_after_s: still alive
        assert await b.push_presence("xena", "available", "", "", ("general",), now, "Xena", "agent", 1,
                                     now=now + 1.5) == 0
        assert (await a.agent_state("xena"))["status"] == "ringing"
        assert await b.heartbeat(["xena"], ttl_s=30, now=now + 1.5) == []
        assert await b.heartbeat(["xena"], ttl_s=30, now=now + 2.5) == ["xena"]
        # ... for longer: dead (the registry's rule, registry.down), though not found dead by anyone yet
        assert await registry.down(["node-a"], now + 2.5) == {"node-a"}
        assert await b.push_presence("xena", "available", "", "", ("general",), now, "Xena", "agent", 1,
                                     now=now + 2.5) == 2
        assert (await a.agent_state("xena"))["status"] == "available"
        dropped = [(e["call"], e["claimer"], e["reason"]) for e in await a.log() if e["op"] == "claim_dropped"]
        assert dropped == [("c1", "node-a", "claimer_dead")]
        # A node that left the registry (stopped, or moved to the dead list by claim_dead) is dead too.
        assert await a.claim_agent("c2", "xena", [], hold_s=60) == "node-b"
        assert await available(b, "xena") == 0
        await registry.leave("node-a")
        assert await available(b, "xena") == 2
        # A node without the registry's rule (claimer_dead_after_s None) keeps a dead node's claim until its deadline.
        plain = RedisRouting(redis, "node-b")
        assert await a.claim_agent("c3", "xena", [], hold_s=60) == "node-b"
        assert await available(plain, "xena") == 0
        # The claimer's own unclaim still gives her back at once.
        assert await a.unclaim("c3", "xena", time.time())
        assert (await a.agent_state("xena"))["status"] == "available"
    finally:
        await redis.aclose()
