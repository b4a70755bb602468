"""A node of the timers test (tests/integration/test_redis_timers.py) in its own process: it sets timers (due in a
moment), makes sure Redis has them, says so, then waits to be killed with SIGKILL before any of them is due."""

from __future__ import annotations

import argparse
import asyncio

from redis.asyncio import Redis

from gateway.store.redis_timers import RedisTimers


async def main(url: str, count: int, delay: float) -> None:
    redis = Redis.from_url(url)
    timers = RedisTimers(redis)
    timers.on("ring", lambda *args: None)  # never runs here: this node is killed first
    for i in range(count):
        timers.set(f"call:c{i}:ring", delay, f"c{i}", "alice")
    await timers.flush()
    await redis.set("timers-written", count)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.redis, args.count, args.delay))
