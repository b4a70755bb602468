"""Media recovery after a network change: how long until the agent sees the caller's video again.

    unshare -rn sh -c 'ip link set lo up && python -m bench.recovery --changes 20'

A real gateway (in-process unless --media-workers N) with a Python SDK caller (callin_sdk, synthetic counter video
at 15 fps and a tone) and an aiortc agent. The caller gathers only on an address of its own on lo; each change takes
that address away and gives it another one (Wi-Fi to cellular and back), without telling the SDK: it notices by
itself (its peer connection goes silent, or the gateway says it hears nothing from it) and sends a new offer in the
same call. Recovery time: from `ip addr del` to the first frame at the agent whose counter is above the last one
seen before (the frame counter is read from the pixels). Prints one JSON line: p50, p99, max, every sample.
Needs a loopback-only namespace (it refuses to change the addresses of any other).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))

ADDRESSES = ("10.77.9.2", "10.77.9.3")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def main(changes: int, media_workers: int, silence_s: float, settle_s: float) -> dict[str, Any]:
    from callin_sdk import CallinCaller, synthetic
    from tests.support import netns
    from tests.support.clients import Agent, wait_until
    from tests.support.server import TEST_SECRET, running_gateway
    from gateway.auth import mint_caller_token

    samples: list[float] = []
    failures = 0
    async with running_gateway(media_workers=media_workers, media_silence_s=silence_s) as gw:
        for address in ADDRESSES:
            await netns.run("ip", "addr", "del", f"{address}/32", "dev", "lo", check=False)
        await netns.add_address(ADDRESSES[0])
        current = [ADDRESSES[0]]
        agent = Agent(gw.base_url)
        await agent.connect()
        token = mint_caller_token(TEST_SECRET, sub="bench-commuter", name="Bench Commuter", extra={})
        caller = CallinCaller(gw.base_url, token, host_addresses=lambda: list(current))
        try:
            await caller.connect()
            await caller.start_call(video=synthetic(fps=15, tone_hz=880))
            offer = await agent.wait_offer(timeout=15)
            await agent.accept(offer["call_id"], tone_hz=440)
            assert agent.peer is not None
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 10, 20)
            video = agent.peer.sinks["video"]
            for n in range(changes):
                old, new = current[0], ADDRESSES[(n + 1) % 2]
                await asyncio.sleep(settle_s)
                last = max((c for c in video.counters if c is not None), default=-1)
                await netns.add_address(new)
                current[:] = [new]
                await netns.remove_address(old)
                removed_at = time.monotonic()

                def resumed() -> bool:
                    return any(at > removed_at and c is not None and c > last
                               for at, c in zip(video.arrivals[-200:], video.counters[-200:]))

                try:
                    await wait_until(resumed, timeout=15, interval=0.005)
                except AssertionError:
                    failures += 1
                    print(f"change {n + 1}: no video within 15 s", file=sys.stderr)
                    continue
                first = next(at for at, c in zip(video.arrivals[-200:], video.counters[-200:])
                             if at > removed_at and c is not None and c > last)
                samples.append(first - removed_at)
                print(f"change {n + 1}: {samples[-1] * 1000:.0f} ms", file=sys.stderr)
            ended = gw.board.calls[offer["call_id"]].state.value
        finally:
            await caller.close()
            await agent.close()
            for address in ADDRESSES:
                await netns.run("ip", "addr", "del", f"{address}/32", "dev", "lo", check=False)
    return {
        "bench": "recovery",
        "changes": changes,
        "recovered": len(samples),
        "failed": failures,
        "call_state_after": ended,
        "media_workers": media_workers,
        "media_silence_s": silence_s,
        "p50_s": round(statistics.median(samples), 3) if samples else None,
        "p99_s": round(percentile(samples, 0.99), 3) if samples else None,
        "max_s": round(max(samples), 3) if samples else None,
        "samples_s": [round(s, 3) for s in samples],
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=20, help="network changes to measure (default 20)")
    parser.add_argument("--media-workers", type=int, default=0, help="media worker processes (default 0: in process)")
    parser.add_argument("--silence", type=float, default=4.0,
                        help="the gateway's media_silence_s (default 4, the production default)")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds of steady media between changes")
    args = parser.parse_args()
    from tests.support.netns import _check_namespace

    _check_namespace()
    print(json.dumps(asyncio.run(main(args.changes, args.media_workers, args.silence, args.settle))))


if __name__ == "__main__":
    cli()
