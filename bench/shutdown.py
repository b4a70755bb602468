"""Graceful stop under load: SIGTERM -> process gone, for a real `callin serve` process.

    python -m bench.shutdown --connected 50 --waiting 1000

Starts `callin serve` (SQLite records in a temporary folder), signs in `connected` agents and puts each in a call
with a caller (signaling only), queues `waiting` more callers, waits until the setup's call records are written,
then sends SIGTERM and measures until the process has exited. Checks the promise as it goes: every socket got the
`shutdown` message and a 1001 close, every caller in a call got `call.ended` (shutdown), every call record is
ended. The baseline, measured in the same run, is the stop of the same server with nobody connected.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.shutdown import StopResult, stop_under_load  # noqa: E402


def row(label: str, result: StopResult) -> str:
    sockets = result.phase_s("shutdown.sockets_closed")
    records = result.phase_s("shutdown.records_flushed")
    loop = result.phase_s("shutdown.loop_closed")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    return (f"| {label} | {len(result.sockets)} | {fmt(sockets)} | {fmt(records)} | {fmt(loop)} | {result.exit_s:.2f} | "
            f"{'ok' if not result.problems() else '; '.join(result.problems())} |")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connected", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--compare", type=Path, help="another checkout (e.g. the previous release) stopped the same "
                                                     "way in the same run")
    args = parser.parse_args()
    idle = await stop_under_load(0, 0)
    loaded = await stop_under_load(args.connected, args.waiting)
    print("| run | sockets | SIGTERM -> sockets closed (s) | -> records flushed (s) | -> event loop closed (s) "
          "| -> process exited (s) | checks |")
    print("|---|---|---|---|---|---|---|")
    print(row("idle (baseline)", idle))
    print(row(f"{args.connected} calls + {args.waiting} waiting", loaded))
    if args.compare:
        other = await stop_under_load(args.connected, args.waiting, code=args.compare.resolve())
        print(row(f"{args.compare}: {args.connected} calls + {args.waiting} waiting", other))
    print(f"\nexit time ratio loaded/idle: {loaded.exit_s / idle.exit_s:.1f}x")
    return 1 if loaded.problems() or idle.problems() else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
