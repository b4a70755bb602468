"""Webhook isolation: how long a healthy receiver waits for call.ended while other webhooks point at a receiver
that never answers, as a ratio to the same wait with no silent webhook (baseline, measured in the same run).

    python -m bench.webhook_isolation --silent 40 --calls 5

Runs the gateway in-process on a loopback port (inside a loopback-only network namespace), one healthy receiver
(answers 204 at once) and one silent receiver (accepts, never answers), with `--silent` webhooks to the silent one.
With the old shared delivery slots, each silent delivery held a slot through all its retries, and the healthy
receiver's events waited behind them (minutes); with per-destination queues the ratio stays near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402


async def measure(silent_hooks: int, calls: int, timeout_s: float, retry_base_s: float) -> list[float]:
    from gateway.auth import mint_caller_token
    from tests.integration.test_webhooks import Receiver, SilentEndpoint
    from tests.support.api import Api, caller_socket
    from tests.support.server import TEST_SECRET, running_gateway

    waits: list[float] = []
    async with SilentEndpoint() as silent, Receiver(fail_first=0) as healthy, \
            running_gateway(webhook_timeout_s=timeout_s, webhook_retry_base_s=retry_base_s) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        for _ in range(silent_hooks):
            await admin.post("/api/v1/webhooks", {"url": silent.url, "events": ["call.queued", "call.ended"]})
        await admin.post("/api/v1/webhooks", {"url": healthy.url, "events": ["call.queued", "call.ended"]})
        for index in range(calls):
            token = mint_caller_token(TEST_SECRET, sub=f"bench-hook-{index}", name="Bench")
            caller, call_id = await caller_socket(gw.base_url, token)
            await caller.request({"type": "call.hangup"})
            await caller.close()
            ended = time.monotonic()
            deadline = ended + 600
            while not any(e == "call.ended" and call_id in str(body)
                          for e, (_, body) in zip(healthy.events(), healthy.requests)):
                if time.monotonic() > deadline:
                    raise SystemExit(f"no call.ended for {call_id} in 600 s")
                await asyncio.sleep(0.005)
            waits.append(time.monotonic() - ended)
        await admin.close()
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--silent", type=int, default=40, help="webhooks to the silent receiver")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0, help="CALLIN_WEBHOOK_TIMEOUT_S")
    parser.add_argument("--retry-base", type=float, default=1.0, help="CALLIN_WEBHOOK_RETRY_BASE_S")
    args = parser.parse_args()
    ensure_loopback_namespace()
    baseline = asyncio.run(measure(0, args.calls, args.timeout, args.retry_base))
    loaded = asyncio.run(measure(args.silent, args.calls, args.timeout, args.retry_base))
    b, s = statistics.median(baseline), statistics.median(loaded)
    print(f"healthy receiver's call.ended after hang-up, median of {args.calls} calls")
    print(f"  no silent webhook       : {b * 1000:8.1f} ms")
    print(f"  {args.silent:3d} silent webhooks     : {s * 1000:8.1f} ms   (max {max(loaded) * 1000:.1f} ms)")
    print(f"  ratio                   : {s / b:8.2f}")


if __name__ == "__main__":
    main()
