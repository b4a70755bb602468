"""The node registry's Redis side on a real redis-server (gateway/store/redis_nodes.py): a silent node is dead
after dead_after_s and claimed by exactly one of the nodes that race to see it; its counts drop out of the totals at
once; a node that leaves is gone (and down at once for everyone who asks); garbage in the registry is skipped, never
a crash."""

from __future__ import annotations

import asyncio

import pytest

from gateway.store.nodes import NodeFenced
from gateway.store.redis_nodes import NodeEntry, RedisNodeRegistry, totals


def entry(instance: str, at: float, **counts: int) -> NodeEntry:
    return NodeEntry(instance=instance, name=instance.split("-")[0], lease=f"lease-{instance}", started=at - 100,
                     heartbeat=at, **counts)


async def test_a_silent_node_is_dead_claimed_once_and_its_counts_drop_out(redis):
    registries = [RedisNodeRegistry(redis, dead_after_s=3) for _ in range(5)]
    now = 1_000_000.0
    await registries[0].beat(entry("a-1", now - 10, calls=2, waiting=7, agents=3))  # silent for 10 s
    await registries[1].beat(entry("b-1", now, calls=1, waiting=4, agents=2, draining=True))
    await registries[2].beat(entry("c-1", now - 1, waiting=1, agents=1))

    listed = await registries[0].nodes(now)
    assert [(e.name, e.alive) for e in listed] == [("b", True), ("c", True), ("a", False)]
    assert totals(listed) == {"nodes": 2, "draining": 1, "calls": 1, "waiting": 5, "agents": 3}
    # The one liveness every part of a node asks (the signaling relay too): silent, unknown or gone is down.
    assert await registries[2].down(["a-1", "b-1", "c-1", "z-9"], now) == {"a-1", "z-9"}

    claims = await asyncio.gather(*(r.claim_dead(now) for r in registries))
    winners = [c for c in claims if c]
    assert len(winners) == 1 and [e.lease for e in winners[0]] == ["lease-a-1"]  # exactly one takes it over
    assert winners[0][0].waiting == 7 and winners[0][0].alive is False
    assert await registries[3].claim_dead(now + 1) == []  # and nobody again
    listed = await registries[4].nodes(now)
    assert [(e.name, e.alive) for e in listed] == [("b", True), ("c", True), ("a", False)]  # still listed, dead

    await registries[1].leave("b-1")
    assert [e.name for e in await registries[0].nodes(now)] == ["c", "a"]
    assert await registries[0].down(["b-1", "c-1"], now) == {"b-1"}

    # The silent node was only frozen: when it beats again it is refused (its callers were taken over), and stays dead.
    with pytest.raises(NodeFenced):
        await registries[0].beat(entry("a-1", now + 2, calls=2, waiting=7, agents=3))
    assert await registries[2].down(["a-1"], now + 2) == {"a-1"}
    assert [(e.name, e.alive, e.waiting) for e in await registries[4].nodes(now + 2)] == [
        ("c", True, 1), ("a", False, 7)]  # its entry as it was when found dead
    await registries[2].beat(entry("c-1", now + 2, waiting=1, agents=1))  # a live node's beat goes on


async def test_garbage_in_the_registry_is_skipped(redis):
    registry = RedisNodeRegistry(redis, dead_after_s=3)
    now = 2_000_000.0
    await redis.hset("callin:nodes:info", mapping={"x-1": "not json", "y-1": '{"name": "y"}'})
    await redis.zadd("callin:nodes", {"x-1": now, "y-1": now, "z-1": now})  # z-1 has no info at all
    await registry.beat(entry("ok-1", now, agents=1))
    listed = await registry.nodes(now)
    assert [e.instance for e in listed] == ["ok-1"] and totals(listed)["agents"] == 1
