"""CPU of a recorded call against an unrecorded one, in the same run, and disk MB per minute of recording.

    python -m bench.recording                                   # 4 calls, 10 s per mode, plain,tracks,mixed
    python -m bench.recording --calls 8 --seconds 15 --rounds 2

The relay (one Relay per call, a caller and an agent leg, the packet path as `callin serve` runs it) runs in this
process, pinned to the first CPU; the peers run in a child process on the others (bench.packet_path's peers: the
caller sends the replayed 640x480 VP8 at 30 fps plus Opus, the agent sends Opus back). Modes:

- plain: nothing recorded (the baseline);
- tracks: every call recorded (gateway/media/recorder.py): caller video + a track per voice, no decoding;
- mixed: every call recorded with mixed_audio (the voices decoded, mixed and encoded to one Opus track).

Over the window, this process's CPU time (time.process_time: the event loop and the recorders' writer threads) per
call, and the bytes the recordings wrote. The modes are measured in turns (`--rounds`), so that a change of the
machine's load hits them alike; the ratio to plain is taken within each round. Runs in a loopback-only namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADDRESSES = ["127.0.0.1"]
MODES = ("plain", "tracks", "mixed")


async def one_mode(mode: str, calls: int, seconds: float, warmup: float, peer_cpus: list[int],
                   directory: Path) -> dict[str, Any]:
    from bench.packet_path import _peers
    from gateway.media.candidates import CandidatePolicy
    from gateway.media.leg import MediaConfig
    from gateway.media.relay import Relay
    from gateway.media.recorder import Recording

    config = MediaConfig(host_addresses=ADDRESSES, candidates=CandidatePolicy(allow_loopback=True))
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    peers = spawn.Process(target=_peers, args=(theirs, calls, peer_cpus), daemon=True)
    peers.start()
    loop = asyncio.get_running_loop()
    relays: list[Relay] = []
    answers = []
    for n, (caller_sdp, agent_sdp) in enumerate(await loop.run_in_executor(None, ours.recv)):
        relay = Relay(f"rec{n}", config)
        caller_answer = (await relay.caller_offer(caller_sdp))[1]
        agent_answer = (await relay.agent_offer("agent", agent_sdp))[1]
        relay.set_scene(agent="agent")
        relays.append(relay)
        answers.append((caller_answer, agent_answer))
    ours.send(answers)
    await asyncio.sleep(warmup / 2)
    recordings: list[Recording] = []
    if mode != "plain":
        for relay in relays:
            recording = Recording(str(directory / f"{mode}-{relay.call_id}"), video_codec=relay.caller_video_codec,
                                  mixed_audio=mode == "mixed")
            await recording.open()
            relay.record(recording)
            recordings.append(recording)
    await asyncio.sleep(warmup / 2)
    sizes0 = [os.path.getsize(r.path) for r in recordings]
    counts0 = _counts(relays)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.monotonic()
    counts1 = _counts(relays)
    sizes1 = [os.path.getsize(r.path) for r in recordings]
    infos = [await relay.take_recording().stop() for relay in relays if relay.recording is not None]
    ours.send("stop")
    await loop.run_in_executor(None, ours.recv)
    for relay in relays:
        await relay.close()
    peers.join(10)
    for info in infos:
        os.unlink(info.path)
    window = wall1 - wall0
    written = sum(sizes1) - sum(sizes0)
    return {"mode": mode, "calls": calls, "seconds": round(window, 2),
            "core_per_call_pct": round((cpu1 - cpu0) / window / calls * 100, 2),
            "disk_mb_per_min_per_call": round(written / 1e6 / (window / 60) / calls, 2) if recordings else None,
            "dropped": sum(i.dropped_packets for i in infos),
            "packets_in_per_call_s": round((counts1[0] - counts0[0]) / window / calls, 1),
            "keyframe_requests": counts1[1] - counts0[1],
            "load_avg": round(os.getloadavg()[0], 1)}


def _counts(relays: list[Any]) -> tuple[int, int]:
    """Packets received by the calls' legs (a keyframe costs more of them), keyframe requests sent to the callers."""
    producers = [p for relay in relays for leg in relay.legs.values() for p in leg.producers.values()]
    packets = sum(leg.direct.packets for relay in relays for leg in relay.legs.values() if leg.direct is not None)
    return packets, sum(p.keyframe_requests_sent for p in producers)


def relay_cpu_and_peer_cpus() -> list[int]:
    """The relay (this process) keeps the first CPU to itself; the peers' process gets the others."""
    first, *others = sorted(os.sched_getaffinity(0))
    if others:
        os.sched_setaffinity(0, [first])
    return others


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.media import EncodedLoop

    EncodedLoop.load()  # the replayed media, encoded once before any timing
    peer_cpus = relay_cpu_and_peer_cpus()
    rows = []
    with tempfile.TemporaryDirectory(prefix="callin-bench-rec-") as directory:
        for round_ in range(args.rounds):
            for mode in args.modes.split(","):
                row = await one_mode(mode, args.calls, args.seconds, args.warmup, peer_cpus, Path(directory))
                row["round"] = round_
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mode: the median % of a core per call, and its ratio to plain in the same round (median over rounds)."""
    plain = {r["round"]: r["core_per_call_pct"] for r in rows if r["mode"] == "plain"}
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        ratios = [r["core_per_call_pct"] / plain[r["round"]] for r in mine if plain.get(r["round"])]
        disk = [r["disk_mb_per_min_per_call"] for r in mine if r["disk_mb_per_min_per_call"] is not None]
        out.append({"mode": mode, "core_per_call_pct": statistics.median(r["core_per_call_pct"] for r in mine),
                    "vs_plain": round(statistics.median(ratios), 3) if ratios else None,
                    "disk_mb_per_min": statistics.median(disk) if disk else None,
                    "dropped": sum(r["dropped"] for r in mine)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES), help="any of plain,tracks,mixed, in turn")
    parser.add_argument("--calls", type=int, default=4, help="calls per mode")
    parser.add_argument("--seconds", type=float, default=10, help="the measured window")
    parser.add_argument("--warmup", type=float, default=4, help="before the window (recordings start halfway)")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from bench.netns import ensure_loopback_namespace
    from bench.run import machine

    ensure_loopback_namespace()
    table = summary(asyncio.run(run(args)))
    host = machine()
    print(f"\n{host['cpu_model']}, {host['cpus']} CPUs, {args.calls} calls, {args.seconds:g} s x {args.rounds} "
          "round(s)\n\n| mode | % of a core per call | vs plain (same round) | disk MB/min per call | dropped |\n"
          "|---|---|---|---|---|")
    for row in table:
        ratio = f"{row['vs_plain']:.2f}x" if row["vs_plain"] else "–"
        disk = f"{row['disk_mb_per_min']:.2f}" if row["disk_mb_per_min"] is not None else "–"
        print(f"| {row['mode']} | {row['core_per_call_pct']:.2f} | {ratio} | {disk} | {row['dropped']} |")


if __name__ == "__main__":
    main()
