"""The bus between nodes on a real redis-server (issue 10, item 2): pub/sub reaches the nodes subscribed now and no
others; a stream read by a consumer group loses nothing when a consumer is killed with SIGKILL mid-message (its
pending messages are claimed by the others), and hands each message to one consumer (at least once: only the message
the dead consumer was in the middle of may be handled twice)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.store.redis_bus import RedisBus
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]


async def test_pubsub_reaches_the_nodes_subscribed_now_and_refuses_oversized_messages(redis_url):
    redis = Redis.from_url(redis_url)
    a, b = RedisBus(redis, "a", max_bytes=1024), RedisBus(redis, "b")
    got: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    try:
        assert await a.publish("presence", {"agent": "alice", "status": "away"}) == 0  # nobody listens: lost
        for name, bus in (("a", a), ("b", b)):
            async def handler(message: dict[str, Any], name: str = name) -> None:
                got[name].append(message)
            await bus.subscribe("presence", handler)
        assert await a.publish("presence", {"agent": "alice", "status": "available"}) == 2
        await redis.publish("callin:presence", b"not json")  # dropped with a log line, the subscription goes on
        await b.publish("presence", {"agent": "bob", "status": "busy"})

        async def both() -> bool:
            return all(len(v) == 2 for v in got.values())
        await until(both, 30)
        assert got["a"] == got["b"] == [{"agent": "alice", "status": "available"}, {"agent": "bob", "status": "busy"}]
        with pytest.raises(ValueError, match="larger than the limit of 1024"):
            await a.publish("presence", {"blob": "x" * 2000})
    finally:
        await a.close()
        await b.close()
        await redis.aclose()


async def test_a_consumer_killed_mid_message_loses_nothing(redis_url):
    redis = Redis.from_url(redis_url)
    producer = RedisBus(redis, "producer")
    total = 300
    for n in range(total):
        await producer.append("records", {"n": n})
    victim = subprocess.Popen([sys.executable, "-m", "tests.support.bus_consumer", "--redis", redis_url,
                               "--stream", "records", "--group", "writers", "--hang-after", "10"], cwd=ROOT)
    nodes: list[RedisBus] = []
    try:
        await until(lambda: redis.exists("victim-hangs"), 30)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        hung = int(await redis.get("victim-hangs"))

        async def handle(message: dict[str, Any]) -> None:
            await redis.hincrby("handled", str(message["n"]), 1)

        for name in ("node-b", "node-c"):
            bus = RedisBus(redis, name)
            nodes.append(bus)
            await bus.consume("records", "writers", handle, batch=20, block_s=0.2, claim_idle_s=1.0)

        async def all_handled() -> bool:
            return await redis.hlen("handled") == total
        await until(all_handled, 60)
        counts = {int(k): int(v) for k, v in (await redis.hgetall("handled")).items()}
        assert sorted(counts) == list(range(total))  # nothing lost, the dead consumer's pending ones included
        twice = [n for n, c in counts.items() if c > 1]
        assert twice == [hung], twice  # at least once: only the message it died in the middle of came again
        info = await redis.xinfo_groups("callin:records")
        assert info[0]["pending"] == 0, info  # every message acknowledged in the end
    finally:
        if victim.poll() is None:
            victim.kill()
        for bus in nodes:
            await bus.close()
        await redis.aclose()
