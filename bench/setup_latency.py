"""Call-setup latency through a real gateway process: agent accept -> first caller frame at the agent.

    python -m bench.setup_latency --calls 20

Starts `callin serve` on a free loopback port (in a loopback-only network namespace), places the calls one after
another with real aiortc peers (caller: VP8 320x240@30 + Opus; agent: Opus), and prints p50/p90/max of
  - request -> offered: caller's call.start sent -> agent receives call.offered
  - accept -> first frame: agent sends call.accept -> first caller video frame decoded at the agent
    (includes the agent's SDP offer/answer, ICE + DTLS on the agent leg and the keyframe request)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from bench.run import percentile, wait_healthy  # noqa: E402


async def one_call(base: str, secret: str, index: int) -> tuple[float, float]:
    from gateway.auth import mint_caller_token
    from tests.support.clients import Agent, Caller, wait_until

    agent = Agent(base)
    await agent.connect()
    caller = Caller(base, mint_caller_token(secret, sub=f"bench-{index}", name="Bench"))
    await caller.connect()
    t_request = time.monotonic()
    await caller.start("video")
    offer = await agent.wait_offer()
    t_offered = time.monotonic()
    t_accept = time.monotonic()
    await agent.accept(offer["call_id"])
    await wait_until(lambda: "video" in agent.peer.sinks and agent.peer.sinks["video"].first_at is not None, 15, 0.001)
    first = agent.peer.sinks["video"].first_at
    assert agent.peer.sinks["video"].counters[0] is not None, "first frame not intact"
    await agent.hangup(offer["call_id"])
    await caller.close()
    await agent.close()
    return t_offered - t_request, first - t_accept


async def main(args: argparse.Namespace) -> dict:
    from tests.support.server import free_port

    port = free_port()
    secret = "bench-secret-0123456789-abcdefghij"
    env = dict(os.environ, CALLIN_PORT=str(port), CALLIN_HOST="127.0.0.1", CALLIN_DEMO="true",
               CALLIN_CALLER_TOKEN_SECRET=secret, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        offered, first_frame = [], []
        for i in range(args.warmup + args.calls):
            o, f = await one_call(base, secret, i)
            if i >= args.warmup:
                offered.append(o * 1000)
                first_frame.append(f * 1000)
    finally:
        proc.terminate()
        proc.wait(10)
    result = {
        "calls": args.calls,
        "request_to_offered_ms": {"p50": statistics.median(offered), "p90": percentile(offered, 90), "max": max(offered)},
        "accept_to_first_frame_ms": {"p50": statistics.median(first_frame), "p90": percentile(first_frame, 90),
                                     "max": max(first_frame)},
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    ensure_loopback_namespace()
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    print(json.dumps(outcome, indent=2))
    a, o = outcome["accept_to_first_frame_ms"], outcome["request_to_offered_ms"]
    print(f"accept -> first frame at agent: p50 {a['p50']:.1f} ms, p90 {a['p90']:.1f} ms, max {a['max']:.1f} ms "
          f"({outcome['calls']} calls)")
    print(f"request -> agent offered:       p50 {o['p50']:.1f} ms, p90 {o['p90']:.1f} ms, max {o['max']:.1f} ms")
