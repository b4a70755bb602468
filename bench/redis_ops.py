"""Redis commands per call and per node, measured on a real redis-server (issue 10, item 10: the capacity model in
docs/deployment.md is built from these figures).

Counts come from `INFO commandstats` before and after each scripted step (every command Redis executed, those run
inside a Lua script included) and, separately, the round trips the client made (a pipeline or a script is one).

    PYTHONPATH=. unshare -rn sh -c 'ip link set lo up && exec python -m bench.redis_ops'

Steps measured:
- one call's routing (gateway/store/redis_routing.py): join a line, one dispatch pass that offers it (claim),
  accept, end (a call's timers, its max wait and ring, are kept in its home node's process: no Redis command);
- a dispatch pass with W calls waiting and no agent free (what every node pays per settle while the line is long);
- the node registry (gateway/store/redis_nodes.py): one beat with its dead check, one listing of N nodes;
- the shared line (gateway/store/redis_line.py): one call's part in it (mirrored when it joins, when it rings, when
  it is answered; the claim that checks no earlier call of another node waits for the agent), and one read of the
  places of a node's W waiting callers.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway.store.redis_line import LineEntry, RedisLine
from gateway.store.redis_nodes import NodeEntry, RedisNodeRegistry
from gateway.store.redis_routing import RedisRouting, line_score
from tests.support.redisserver import running_redis


class Counted:
    """Round trips made through one client (pipelines and scripts count once)."""

    def __init__(self, redis: Redis) -> None:
        self.trips = 0
        original = redis.execute_command

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.trips += 1
            return await original(*args, **kwargs)

        redis.execute_command = counting  # type: ignore[method-assign]
        pipeline = redis.pipeline

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def run(*a: Any, **kw: Any) -> Any:
                self.trips += 1
                return await execute(*a, **kw)

            pipe.execute = run  # type: ignore[method-assign]
            return pipe

        redis.pipeline = counted_pipeline  # type: ignore[method-assign]


async def commands(admin: Redis) -> dict[str, int]:
    stats = await admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    out.pop("info", None)
    return {k: v for k, v in out.items() if v}


async def measure(admin: Redis, client: Redis, counter: Counted, step: Any) -> tuple[int, int, dict[str, int]]:
    before = await commands(admin)
    trips = counter.trips
    await step()
    trips = counter.trips - trips
    d = delta(before, await commands(admin))
    return sum(d.values()), trips, d


async def main(calls: int = 200, agents: int = 20, waiting: int = 1000, nodes: int = 100) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_redis(Path(tmp)) as url:
            admin = Redis.from_url(url)
            client = Redis.from_url(url)
            counter = Counted(client)
            routing = RedisRouting(client, "node-a")
            for i in range(agents):
                await routing.agent_online(f"agent{i}", ["general"], ttl_s=600)
                await routing.set_available(f"agent{i}", time.time())
            now = time.time()

            async def one_call(i: int) -> None:
                call_id = f"call{i}"
                await routing.join(call_id, "default", 0, now + i, ["general"])
                offered = await routing.dispatch(now + i)
                assert offered and offered[0][0] == call_id, offered
                await routing.accept(call_id, offered[0][1])
                await routing.end(call_id, now + i)

            await one_call(-1)  # scripts loaded, keys made
            totals = {"commands": 0, "trips": 0}
            by_command: dict[str, int] = {}
            for i in range(calls):
                n, trips, d = await measure(admin, client, counter, lambda i=i: one_call(i))
                totals["commands"] += n
                totals["trips"] += trips
                for k, v in d.items():
                    by_command[k] = by_command.get(k, 0) + v
            per_call = {"commands": totals["commands"] / calls, "round_trips": totals["trips"] / calls,
                        "by_command": {k: round(v / calls, 2) for k, v in sorted(by_command.items())}}

            # A long line and nobody free: what one dispatch pass costs.
            for i in range(agents):
                await client.hset(routing.agent_key(f"agent{i}"), "status", "busy")
                await client.zrem(routing.idle_key, f"agent{i}")
            await routing.agent_online("spare", ["tech"], ttl_s=600)
            await routing.set_available("spare", now)  # one free agent, but not skilled for the line
            for i in range(waiting):
                await routing.join(f"w{i}", "default", 0, now + i, ["general"])
            n, trips, _ = await measure(admin, client, counter, lambda: routing.dispatch(now))
            dispatch_long_line = {"waiting": waiting, "commands": n, "round_trips": trips}

            # The node registry.
            registry = RedisNodeRegistry(client, dead_after_s=5)
            for i in range(nodes):
                await registry.beat(NodeEntry(f"n{i}", f"n{i}", f"l{i}", now, now, calls=3, waiting=1000, agents=100))

            async def beat() -> None:
                await registry.beat(NodeEntry("n0", "n0", "l0", now, now + 1))
                await registry.claim_dead(now + 1)

            beat_n, beat_trips, _ = await measure(admin, client, counter, beat)
            list_n, list_trips, _ = await measure(admin, client, counter, lambda: registry.nodes(now + 1))

            # The shared line: a call joins (mirrored), is claimed for an agent (the claim looks at the ready line for
            # an earlier call), rings (mirrored: no longer offerable), is answered (dropped). Other nodes' calls wait.
            line = RedisLine(client, "node-a")
            other = RedisLine(client, "node-b")
            await other.sync([LineEntry(f"b{i}", "default", line_score(0, now + 10_000 + i), True, frozenset())
                              for i in range(waiting)])
            await routing.agent_online("lina", ["general"], ttl_s=600)
            mine: list[LineEntry] = []

            async def line_call(i: int, shared: bool = True) -> None:
                call_id, score = f"l{i}", line_score(0, now + i)
                await routing.set_available("lina", now + i)
                if shared:
                    await line.sync(mine + [LineEntry(call_id, "default", score, True, frozenset())])
                node = await routing.claim_agent(call_id, "lina", ["general"], score=score if shared else None,
                                                 before=[line.ready_key("default")] if shared else [])
                assert node == "node-a", node
                if shared:
                    await line.sync(mine + [LineEntry(call_id, "default", score, False, frozenset())])
                    await line.sync(mine)
                await routing.unclaim(call_id, "lina", now + i)

            await line_call(-1)
            line_n = line_trips = base_n = base_trips = 0
            for i in range(calls):  # alternating: with the shared line, and the same agent steps without it
                n, trips, _ = await measure(admin, client, counter, lambda i=i: line_call(i))
                line_n, line_trips = line_n + n, line_trips + trips
                n, trips, _ = await measure(admin, client, counter, lambda i=i: line_call(calls + i, shared=False))
                base_n, base_trips = base_n + n, base_trips + trips
            mine = [LineEntry(f"m{i}", "default", line_score(0, now + 5_000 + i), True, frozenset())
                    for i in range(waiting)]
            await line.sync(mine)
            places_n, places_trips, _ = await measure(admin, client, counter,
                                                      lambda: line.places((e.call_id, e.queue) for e in mine))
            shared_line = {"per_call": {"commands": (line_n - base_n) / calls,
                                        "round_trips": (line_trips - base_trips) / calls,
                                        "agent_steps_without_it": {"commands": base_n / calls,
                                                                   "round_trips": base_trips / calls}},
                           "places_read": {"waiting_here": waiting, "waiting_elsewhere": waiting,
                                           "commands": places_n, "round_trips": places_trips}}

            await client.aclose()
            await admin.aclose()
            return {"calls": calls, "per_call": per_call, "dispatch_pass_long_line": dispatch_long_line,
                    "registry": {"beat": {"commands": beat_n, "round_trips": beat_trips},
                                 "list": {"nodes": nodes, "commands": list_n, "round_trips": list_trips}},
                    "shared_line": shared_line}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
