"""A consumer of the bus test (tests/integration/test_redis_bus.py) in its own process: it handles messages of the
group like any node (counting each in Redis), then hangs in the middle of one, holding the rest of its batch
unacknowledged, until the test kills it with SIGKILL."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from redis.asyncio import Redis

from gateway.store.redis_bus import RedisBus


async def main(url: str, stream: str, group: str, hang_after: int) -> None:
    redis = Redis.from_url(url)
    bus = RedisBus(redis, "victim")
    handled = 0

    async def handle(message: dict[str, Any]) -> None:
        nonlocal handled
        await redis.hincrby("handled", str(message["n"]), 1)
        handled += 1
        if handled == hang_after:
            await redis.set("victim-hangs", message["n"])
            await asyncio.Event().wait()  # never returns: this message and the rest of the batch stay pending

    await bus.consume(stream, group, handle, batch=50, block_s=0.2, claim_idle_s=3600)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--hang-after", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.stream, args.group, args.hang_after))
