"""Call setup with the caller and the agent on one node, and on two nodes, in one run (issue 10, item 11).

    unshare -rn sh -c 'ip link set lo up && exec python -m bench.cluster_setup --calls 20'

Starts a real redis-server on a free loopback port and two `callin serve` nodes sharing it and one PostgreSQL
database (through its Unix socket), then places calls one after another, alternating the layout so that both see the
same machine: the caller always on node A, the agent (real aiortc peers, VP8 + Opus) on node A ("one node") or on
node B ("two nodes": offers, the accept, SDP and candidates relayed between the nodes over Redis). Prints p50/p99
of request -> offered (the caller's call.start -> the agent's call.offered) and accept -> first frame (the agent's
call.accept -> the first caller video frame decoded at the agent), and the Redis commands per call (every command
the redis-server processed during that layout's calls, heartbeats included, divided by its calls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from bench.run import percentile  # noqa: E402

LAYOUTS = ("one node", "two nodes")


async def one_call(caller_base: str, agent_base: str, index: int) -> tuple[float, float]:
    from gateway.auth import mint_caller_token
    from tests.support.clients import Agent, Caller, wait_until
    from tests.support.server import TEST_SECRET

    agent = Agent(agent_base)
    await agent.connect()
    caller = Caller(caller_base, mint_caller_token(TEST_SECRET, sub=f"bench-{index}", name="Bench"))
    await caller.connect()
    try:
        t_request = time.monotonic()
        await caller.start("video")
        offer = await agent.wait_offer(timeout=20)
        t_offered = time.monotonic()
        t_accept = time.monotonic()
        await agent.accept(offer["call_id"])
        await wait_until(lambda: agent.peer is not None and "video" in agent.peer.sinks
                         and agent.peer.sinks["video"].first_at is not None, 20, 0.001)
        first = agent.peer.sinks["video"].first_at
        assert agent.peer.sinks["video"].counters[0] is not None, "first frame not intact"
        await agent.hangup(offer["call_id"])
        await caller.ws.wait("call.ended", timeout=10)
        return t_offered - t_request, first - t_accept
    finally:
        await caller.close()
        await agent.close()


async def commands(redis_url: str) -> int:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        return int((await client.info("stats"))["total_commands_processed"])
    finally:
        await client.aclose()


async def main(args: argparse.Namespace) -> dict:
    from tests.support.cluster_nodes import start
    from tests.support.databases import create_pg_database, drop_pg_database, pg_url
    from tests.support.process import GatewayProcess
    from tests.support.redisserver import running_redis

    work = Path(tempfile.mkdtemp(prefix="callin-cluster-bench-"))
    (work / "redis").mkdir()
    database = create_pg_database()
    results: dict[str, dict[str, list[float]]] = {name: {"offered": [], "first_frame": []} for name in LAYOUTS}
    redis_commands = {name: 0 for name in LAYOUTS}
    try:
        async with running_redis(work / "redis") as redis_url:
            nodes = []
            for name, first in (("node-a", True), ("node-b", False)):
                (work / name).mkdir()
                extra = {} if first else {"migrate_on_start": "false"}
                nodes.append(GatewayProcess(pg_url(database), work / name, node_name=name, redis_url=redis_url,
                                            media_workers=args.media_workers, **extra))
            a, b = nodes
            try:
                await start(a)
                await start(b)
                for i in range(2 * (args.warmup + args.calls)):
                    layout = LAYOUTS[i % 2]
                    before = await commands(redis_url)
                    offered, first_frame = await one_call(a.base_url, a.base_url if layout == "one node"
                                                          else b.base_url, i)
                    if i >= 2 * args.warmup:
                        redis_commands[layout] += await commands(redis_url) - before - 1  # less our own INFO
                        results[layout]["offered"].append(offered * 1000)
                        results[layout]["first_frame"].append(first_frame * 1000)
            finally:
                a.close()
                b.close()
    finally:
        drop_pg_database(database)
    summary: dict[str, dict] = {}
    for layout in LAYOUTS:
        row = {}
        for key, values in results[layout].items():
            row[key] = {"p50_ms": round(statistics.median(values), 1), "p99_ms": round(percentile(values, 99), 1),
                        "max_ms": round(max(values), 1)}
        row["redis_commands_per_call"] = round(redis_commands[layout] / args.calls, 1)
        summary[layout] = row
    return {"calls_per_layout": args.calls, "media_workers": args.media_workers, "layouts": summary}


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20, help="measured calls per layout")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls per layout first")
    parser.add_argument("--media-workers", type=int, default=0, help="media worker processes per node (0: in-process)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    ensure_loopback_namespace()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.calls} calls per layout, one after another, layouts alternating; media workers per node: "
          f"{args.media_workers}")
    for layout, row in result["layouts"].items():
        o, f = row["offered"], row["first_frame"]
        print(f"{layout:9s}  request -> offered p50 {o['p50_ms']:6.1f} ms  p99 {o['p99_ms']:6.1f} ms   "
              f"accept -> first frame p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms   "
              f"Redis commands per call {row['redis_commands_per_call']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
