"""CPU per forwarded packet of the relay's per-packet paths (relay_fast_path native / python / off), side by side.

    python -m bench.packet_path                               # 4 calls, 10 s per path, every path
    python -m bench.packet_path --paths native,off --calls 8 --seconds 15 --rounds 2
    python -m bench.packet_path --paths native,native-percall,off --rounds 3   # before/after the native route
    python -m bench.packet_path --paths native,native-step2,off --rounds 3     # before/after the native receive
    python -m bench.packet_path --paths native,native-step3,off --rounds 3     # before/after RTCP off the queue
    python -m bench.packet_path --paths native,native-noq,python,python-noq --rounds 3   # before/after the SendQueue
    python -m bench.packet_path --paths native,native-uvloop --rounds 3       # asyncio's loop against uvloop

A path ending in `-uvloop` runs the relay on uvloop's event loop (uvloop must be importable: it is not a dependency,
e.g. `pip install --target /tmp/uvl uvloop` and PYTHONPATH=/tmp/uvl); every path gets a fresh event loop.

The relay (a Relay with one caller and one agent leg per call, no signaling) runs in this process, pinned to the
first CPU; the peers run in a child process on the others: each caller sends the replayed 640x480 VP8 at 30 fps
plus Opus (bench.media), each agent sends Opus back; nothing is decoded. Over the window, the relay's process CPU
time (time.process_time: every thread) is divided by the RTP packets its legs forwarded. CPU time is work done, not
wall time, so the figure holds on a loaded machine better than a throughput limit does; the paths are measured in
turns (`--rounds`), so that a change of load hits them alike. Runs in a loopback-only network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADDRESSES = ["127.0.0.1"]


def _peers(conn: Any, calls: int, cpus: list[int]) -> None:
    """Child process: the callers and agents. Protocol over `conn`: send offers, receive answers, wait for stop."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(_run_peers(conn, calls))


async def _run_peers(conn: Any, calls: int) -> None:
    from aiortc import RTCSessionDescription

    from bench.loadgen import new_pc, offer, tap
    from bench.media import EncodedLoop, FrameMeter, ReplayTrack, answer_keyframe_requests

    loop = EncodedLoop.load()
    pcs = []
    offers = []
    meters = []
    for _ in range(calls):
        caller, agent = new_pc(), new_pc()
        video = ReplayTrack("video", loop)
        caller.addTrack(ReplayTrack("audio", loop))
        answer_keyframe_requests(caller.addTransceiver(video, direction="sendonly").sender, video)
        back = FrameMeter("audio", loop)
        tap(caller, "audio", back)
        agent.addTrack(ReplayTrack("audio", loop))
        agent.addTransceiver("video", direction="recvonly")
        seen = FrameMeter("video", loop)
        tap(agent, "video", seen)
        tap(agent, "audio", FrameMeter("audio", loop))
        offers.append((await offer(caller, ADDRESSES), await offer(agent, ADDRESSES)))
        pcs += [caller, agent]
        meters.append(seen)
    conn.send(offers)
    answers = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    for (caller_answer, agent_answer), i in zip(answers, range(calls)):
        await pcs[2 * i].setRemoteDescription(RTCSessionDescription(caller_answer, "answer"))
        await pcs[2 * i + 1].setRemoteDescription(RTCSessionDescription(agent_answer, "answer"))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # stop
    conn.send([len(m.arrivals) for m in meters])
    for pc in pcs:
        await pc.close()


def _forwarded(relays: list[Any]) -> int:
    return sum(getattr(c, "stats").frames_out for relay in relays for leg in relay.legs.values()
               for c in leg.consumers.values())


async def measure(path: str, calls: int, seconds: float, warmup: float, peer_cpus: list[int],
                  profile: str | None = None, name: str | None = None) -> dict[str, Any]:
    from gateway.media.fastpath import native_module

    if path.startswith("native") and native_module() is None:
        raise SystemExit("the native module is not built (pip install -e . with a C compiler)")
    # native-percall: the native path as before the native route (each packet through the forwarder's Python state
    # machine and one C call per outgoing packet); native-step2: the native routes armed but every packet received
    # in Python (as before the native Inlet); for before/after figures in the same run.
    from gateway.media.aiortc_internals import DirectReceive
    from gateway.media.packets import RtpForwarder

    arm = RtpForwarder._arm
    if path == "native-percall":
        RtpForwarder._arm = lambda self: None  # type: ignore[method-assign]
    # native-step3: the Inlet armed, but SRTCP through aioice's queue and a flush timer per steady stream (step 4
    # took both off the per-packet path).
    from gateway.media.aiortc_internals import _QuietFlush

    DirectReceive.steady_in_c = path not in ("native-percall", "native-step2")
    DirectReceive.rtcp_direct = _QuietFlush.shared = path not in ("native-percall", "native-step2", "native-step3")
    try:
        return await _measure(name or path, "native" if path.startswith("native") else path, calls, seconds,
                              warmup, peer_cpus, profile)
    finally:
        RtpForwarder._arm = arm  # type: ignore[method-assign]
        DirectReceive.steady_in_c = DirectReceive.rtcp_direct = _QuietFlush.shared = True


async def _measure(path: str, fast_path: str, calls: int, seconds: float, warmup: float, peer_cpus: list[int],
                   profile: str | None) -> dict[str, Any]:
    from gateway.media.candidates import CandidatePolicy
    from gateway.media.leg import MediaConfig
    from gateway.media.relay import Relay

    config = MediaConfig(host_addresses=ADDRESSES, fast_path=fast_path,
                         candidates=CandidatePolicy(allow_loopback=True))
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_peers, args=(there, calls, peer_cpus), daemon=True)
    child.start()
    loop = asyncio.get_running_loop()
    offers = await loop.run_in_executor(None, here.recv)
    relays, answers = [], []
    for i, (caller_sdp, agent_sdp) in enumerate(offers):
        relay = Relay(f"bench{i}", config)
        _, caller_answer = await relay.caller_offer(caller_sdp)
        _, agent_answer = await relay.agent_offer("agent", agent_sdp)
        relay.set_scene(agent="agent")
        relays.append(relay)
        answers.append((caller_answer, agent_answer))
    here.send(answers)
    await asyncio.sleep(warmup)
    cpu0, t0, n0, times0 = time.process_time(), time.monotonic(), _forwarded(relays), os.times()
    load0 = os.getloadavg()[0]
    spy = None
    if profile:  # py-spy on this process over the window: results/profile-path-<path>.txt (bench.profile sums it)
        (ROOT / "results").mkdir(exist_ok=True)
        spy = await asyncio.create_subprocess_exec(
            profile, "record", "-p", str(os.getpid()), "-r", "200", "-d", str(int(seconds)), "--nonblocking", "--gil",
            "-f", "raw", "-o", str(ROOT / "results" / f"profile-path-{path}.txt"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(seconds)
    cpu1, t1, n1, times1 = time.process_time(), time.monotonic(), _forwarded(relays), os.times()
    load1 = os.getloadavg()[0]
    if spy is not None:
        await spy.wait()
    here.send("stop")
    frames = await loop.run_in_executor(None, here.recv)
    for relay in relays:
        await relay.close()
    child.join(10)
    packets = n1 - n0
    steady = sum(leg.direct.steady_packets for relay in relays for leg in relay.legs.values()
                 if leg.direct is not None)
    direct = sum(leg.direct.packets for relay in relays for leg in relay.legs.values() if leg.direct is not None)
    rtcp = sum(leg.direct.rtcp_packets for relay in relays for leg in relay.legs.values() if leg.direct is not None)
    return {"path": path, "calls": calls, "received_direct": direct, "received_in_c": steady,
            "rtcp_direct": rtcp, "seconds": round(t1 - t0, 2),
            "packets_forwarded": packets,
            "cpu_s": round(cpu1 - cpu0, 3), "us_per_packet": round((cpu1 - cpu0) / max(packets, 1) * 1e6, 2),
            "kernel_share": round((times1.system - times0.system) / max(cpu1 - cpu0, 1e-9), 2),
            "core_per_call_pct": round((cpu1 - cpu0) / (t1 - t0) / calls * 100, 2),
            "packets_per_call_s": round(packets / (t1 - t0) / calls, 1), "agent_video_frames": frames,
            "load_avg": [round(load0, 1), round(load1, 1)]}


def _loop_factory(path: str) -> Any:
    if not path.endswith("-uvloop"):
        return None
    import uvloop

    return uvloop.new_event_loop


@contextlib.contextmanager
def _send_queue(name: str) -> Iterator[None]:
    """A path ending in -noq (before any -uvloop) sends as before aiortc_internals.SendQueue: through the event
    loop's own transport (asyncio's buffer; on uvloop, libuv's queue)."""
    from gateway.media import aiortc_internals

    installed = aiortc_internals.send_queue
    if name.removesuffix("-uvloop").endswith("-noq"):
        aiortc_internals.send_queue = lambda protocol: protocol.transport
    try:
        yield
    finally:
        aiortc_internals.send_queue = installed


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.media import EncodedLoop

    EncodedLoop.load()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, cpus[:1])
    rows = []
    for _ in range(args.rounds):
        for name in args.paths.split(","):
            path = name.removesuffix("-uvloop").removesuffix("-noq")
            with _send_queue(name), asyncio.Runner(loop_factory=_loop_factory(name)) as runner:  # a fresh loop per path
                row = runner.run(measure(path, args.calls, args.seconds, args.warmup, cpus[1:], args.profile, name))
                row["loop"] = type(runner.get_loop()).__module__
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default="native,python,off")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", metavar="PY_SPY", help="sample the relay with this py-spy (last round's files)")
    args = parser.parse_args()
    from bench.netns import ensure_loopback_namespace

    ensure_loopback_namespace()
    rows = run(args)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    print(f"\n{model}, {os.cpu_count()} CPUs\n\n| path | calls | µs CPU per forwarded packet | % of a core per call "
          f"| packets/s per call | load avg |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['path']} | {row['calls']} | {row['us_per_packet']} | {row['core_per_call_pct']} "
              f"| {row['packets_per_call_s']} | {row['load_avg'][0]}–{row['load_avg'][1]} |")


if __name__ == "__main__":
    main()
