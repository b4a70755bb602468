"""One node of the concurrent-routing test (tests/integration/test_redis_routing.py), as its own process: it holds
the consoles of some agents (heartbeats them), runs dispatch passes as fast as it can, and plays its agents: a
ringing agent accepts or declines after a short random delay, a busy one ends its call soon. It stops when the test
sets the `stop` key."""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from redis.asyncio import Redis

from gateway.store.redis_routing import RedisRouting


async def main(url: str, node: str, agents: list[str], skills: dict[str, list[str]], seed: int) -> None:
    rng = random.Random(seed)
    redis = Redis.from_url(url)
    routing = RedisRouting(redis, node)
    for name in agents:
        await routing.agent_online(name, skills.get(name, []), ttl_s=5)
        await routing.set_available(name, time.time())
    beat = time.monotonic()
    due: dict[str, float] = {}  # agent -> when it acts on its ringing or busy call
    try:
        while not await redis.exists(routing.prefix + "stop"):
            if time.monotonic() - beat > 1:
                await routing.heartbeat(agents, ttl_s=5)
                beat = time.monotonic()
            await routing.dispatch(time.time())
            for name in agents:
                state = await routing.agent_state(name)
                if state.get("status") not in ("ringing", "busy") or not state.get("call"):
                    due.pop(name, None)
                    continue
                if name not in due:
                    due[name] = time.monotonic() + rng.uniform(0, 0.02)
                    continue
                if time.monotonic() < due[name]:
                    continue
                del due[name]
                call_id = state["call"]
                call = await routing.call_state(call_id)
                if state["status"] == "ringing":
                    if rng.random() < 0.3:
                        await routing.release(call_id, call.get("queue", "default"), name, time.time())
                    else:
                        await routing.accept(call_id, name)
                else:
                    await routing.end(call_id, time.time())
            await asyncio.sleep(rng.uniform(0, 0.004))
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--agents", required=True, help="comma-separated; name:skill+skill")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names, skills = [], {}
    for entry in args.agents.split(","):
        name, _, have = entry.partition(":")
        names.append(name)
        skills[name] = [s for s in have.split("+") if s]
    asyncio.run(main(args.redis, args.node, names, skills, args.seed))
