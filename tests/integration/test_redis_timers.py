"""Timers that survive their node (issue 10, item 2) on a real redis-server: a timer fires once, on one node, with
its arguments, whoever set it; a node killed with SIGKILL leaves its timers to the others; cancelling (by name, by
group) takes effect on every node."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.store.live import TimerRegistry
from gateway.store.redis_timers import RedisTimers
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]


def test_it_is_a_timer_registry():
    members = {n for n in vars(TimerRegistry) if not n.startswith("_") or n in ("__contains__", "__len__")}
    assert members and all(hasattr(RedisTimers, name) for name in members)


async def test_two_nodes_fire_each_timer_once_with_its_arguments_and_settle_after(redis_url):
    redis = Redis.from_url(redis_url)
    fired: Counter[tuple[str, str]] = Counter()
    settled: list[str] = []
    nodes = []
    try:
        for name in ("a", "b"):
            timers = RedisTimers(redis, after=lambda name=name: settled.append(name), poll_s=0.01)
            timers.on("ring", lambda call, agent, name=name: fired.update([(call, agent)]))
            timers.on("wait", lambda call: fired.update([(call, "wait")]))
            timers.start()
            nodes.append(timers)
        a, b = nodes
        for i in range(50):
            a.set(f"call:c{i}:ring", (i % 10) / 20, f"c{i}", "alice")
        a.set("call:x:wait", 0.1, "x")
        assert "call:c3:ring" in a and "call:c3:ring" not in b and a.pending("call:c3:ring")[1] == ("c3", "alice")
        await until(lambda: sum(fired.values()) == 51, 20)
        await asyncio.sleep(0.3)  # nothing fires twice afterwards either
        assert sum(fired.values()) == 51 and set(fired.values()) == {1}
        assert fired[("c7", "alice")] == 1 and fired[("x", "wait")] == 1
        assert len(settled) == 51 and set(settled) <= {"a", "b"}
        assert len(a) == 0 and await redis.zcard("callin:timers:due") == 0 and await redis.hlen("callin:timers:args") == 0
    finally:
        for timers in nodes:
            timers.close()
        await redis.aclose()


async def test_cancel_by_name_and_group_reaches_every_node(redis_url):
    redis = Redis.from_url(redis_url)
    fired: list[str] = []
    a, b = RedisTimers(redis, poll_s=0.01), RedisTimers(redis, poll_s=0.01)
    try:
        for timers in (a, b):
            timers.on("ring", lambda call: fired.append("ring:" + call))
            timers.on("wait", lambda call: fired.append("wait:" + call))
            timers.start()
        a.set("call:c1:ring", 1.5, "c1")
        a.set("call:c1:wait", 1.5, "c1")
        a.set("call:c2:ring", 1.5, "c2")
        a.set("call:c3:ring", 1.5, "c3")
        assert a.cancel_group("call:c1") == 2 and a.cancel("call:c2:ring") and not a.cancel("call:nonesuch:ring")
        await until(lambda: fired == ["ring:c3"], 10)  # b polls too, and neither fires what was cancelled
        await asyncio.sleep(0.5)
        assert fired == ["ring:c3"]
        with pytest.raises(KeyError):
            a.set("call:c4:nonesuch", 1.0, "c4")
        with pytest.raises(TypeError):
            a.set("call:c4:ring", 1.0, 4)  # type: ignore[arg-type]
    finally:
        a.close()
        b.close()
        await redis.aclose()


async def test_the_timers_of_a_node_killed_with_sigkill_fire_on_another(redis_url):
    redis = Redis.from_url(redis_url)
    victim = subprocess.Popen([sys.executable, "-m", "tests.support.timer_node", "--redis", redis_url,
                               "--count", "20", "--delay", "2"], cwd=ROOT)
    survivor = RedisTimers(redis, poll_s=0.01)
    fired: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 30
        while not await redis.exists("timers-written"):
            assert victim.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        survivor.on("ring", lambda call, agent: fired.update([call]))
        survivor.start()
        await until(lambda: len(fired) == 20, 20)
        await asyncio.sleep(0.2)
        assert set(fired) == {f"c{i}" for i in range(20)} and set(fired.values()) == {1}
    finally:
        if victim.poll() is None:
            victim.kill()
        survivor.close()
        await redis.aclose()
