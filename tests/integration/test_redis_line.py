"""The shared waiting line on a real redis-server (gateway/store/redis_line.py): the callers of several nodes get
places 1..N in one order, only a call's owner writes or drops it (a caller handed to another node keeps the entry its
new home wrote), a dead node's entries go, and a claim for a later call yields to an earlier call of another node
unless the agent passed on it or it cannot be offered now."""

from __future__ import annotations

import time

from gateway.store.redis_line import LineEntry, RedisLine
from gateway.store.redis_routing import RedisRouting, line_score


def entry(call_id: str, at: float, queue: str = "default", offerable: bool = True, priority: int = 0,
          declined: frozenset[str] = frozenset()) -> LineEntry:
    return LineEntry(call_id, queue, line_score(priority, at), offerable, declined)


async def test_places_count_every_nodes_callers_in_one_order(redis):
    a, b, c = RedisLine(redis, "node-a"), RedisLine(redis, "node-b"), RedisLine(redis, "node-c")
    t = 1_700_000_000.0
    await a.sync([entry("a1", t + 1), entry("a2", t + 4)])
    await b.sync([entry("b1", t + 2), entry("b2", t + 5), entry("bvip", t + 9, priority=5)])
    await c.sync([entry("c1", t + 3), entry("cbill", t + 1, queue="billing")])
    assert await a.places([("a1", "default"), ("a2", "default")]) == {"a1": (2, 6), "a2": (5, 6)}
    assert await b.places([("b1", "default"), ("b2", "default"), ("bvip", "default")]) == \
        {"b1": (3, 6), "b2": (6, 6), "bvip": (1, 6)}
    assert await c.places([("c1", "default"), ("cbill", "billing"), ("gone", "default")]) == \
        {"c1": (4, 6), "cbill": (1, 1)}
    assert await a.lengths(["default", "billing", "sales"]) == {"billing": 1, "default": 6, "sales": 0}
    # Only what changed is written; a call that left is dropped, one that changed queue moves.
    assert await a.sync([entry("a1", t + 1), entry("a2", t + 4)]) == 0
    assert await a.sync([entry("a2", t + 4, queue="billing")]) == 2
    assert await c.places([("c1", "default"), ("cbill", "billing")]) == {"c1": (3, 4), "cbill": (1, 2)}
    assert await b.places([("a2", "billing")]) == {"a2": (2, 2)}


async def test_only_the_owner_drops_a_call_and_a_dead_nodes_calls_go(redis):
    a, b = RedisLine(redis, "node-a"), RedisLine(redis, "node-b")
    t = 1_700_000_000.0
    await a.sync([entry("x", t + 1), entry("y", t + 2)])
    await b.sync([entry("x", t + 1), entry("z", t + 3)])  # x's caller moved to B (drain, failover): B owns it now
    assert await a.sync([entry("y", t + 2)]) == 1  # A forgets x: not its own any more, the entry B wrote stays
    assert await b.places([("x", "default"), ("z", "default")]) == {"x": (1, 3), "z": (3, 3)}
    assert await b.forget_node("node-a") == 1  # A died: y goes, x (B's) stays
    assert await b.places([("x", "default"), ("z", "default")]) == {"x": (1, 2), "z": (2, 2)}
    assert await a.places([("y", "default")]) == {}
    await b.leave()
    assert await a.lengths(["default"]) == {"default": 0}


async def test_a_claim_for_a_later_call_yields_to_an_earlier_call_of_another_node(redis):
    a, b = RedisLine(redis, "node-a"), RedisLine(redis, "node-b")
    ra, rb = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b")
    t = 1_700_000_000.0
    assert await rb.push_presence("xena", "available", "", "", ("general",), time.time(), "Xena", "agent", 1)
    await rb.heartbeat(["xena"], ttl_s=30)
    ready = [a.ready_key("default"), a.ready_key("sales")]
    await b.sync([entry("early", t + 1)])
    await a.sync([entry("late", t + 2)])
    # A's later call may not take xena while B's earlier one waits for her; B's may.
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2), before=ready) is None
    assert (await ra.agent_state("xena"))["status"] == "available"
    # The earlier call cannot be offered now (its caller is away, its queue closed): A goes ahead.
    await b.sync([entry("early", t + 1, offerable=False)])
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2), before=ready) == "node-b"
    assert await ra.unclaim("late", "xena", time.time())
    # Offerable again, but xena passed on it this round: it does not hold her back from later calls.
    await b.sync([entry("early", t + 1)])
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2), before=ready) is None
    await b.sync([entry("early", t + 1, declined=frozenset({"xena"}))])
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2), before=ready) == "node-b"
    assert await ra.unclaim("late", "xena", time.time())
    # A higher priority goes first whatever its age; lines the agent does not serve do not count.
    await b.sync([entry("early", t + 1), entry("vip", t + 9, priority=3)])
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2), before=ready) is None
    assert await rb.claim_agent("early", "xena", [], score=line_score(0, t + 1), before=ready) is None
    assert await ra.claim_agent("late", "xena", [], score=line_score(0, t + 2),
                                before=[a.ready_key("sales")]) == "node-b"
