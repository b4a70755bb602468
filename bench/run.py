"""Relay capacity and call-setup benchmark: Callin (packet and frame forwarding) against a transcoding relay and
Janus, swept over the number of concurrent calls, in one run on this machine.

    python -m bench.run                       # full sweep, all systems (Janus if installed)
    python -m bench.run --systems callin-packet --calls 5,10 --hold 8

Each system runs pinned to CPU 0 (`taskset`), the load generator to the other CPUs: aiortc sets each call up, then
bench/blaster.py's C thread carries its media (`--generator aiortc`: aiortc's peers throughout, in worker processes
of 12 calls, as before). Writes
results/bench-<timestamp>.json, .md (table of ratios) and .png (calls vs CPU and vs fps) under results/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402

RESULTS = ROOT / "results"
SECRET = "bench-secret-0123456789-abcdefghij"
AGENT_PASSWORD = "bench-password"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CALLS_PER_WORKER = 12
FPS_TARGET = 29.0
LOSS_LIMIT = 0.01


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pinned(cpu_list: list[int], argv: list[str]) -> list[str]:
    if shutil.which("taskset") and len(cpus()) > 1:
        return ["taskset", "-c", ",".join(map(str, cpu_list)), *argv]
    return argv


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """The process and every process below it (a server and its media workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants alive now (a system's media workers are long-lived)."""
    total = 0.0
    for member in descendants(pid):
        try:
            total += proc_cpu_seconds(member)
        except (OSError, IndexError, ValueError):
            pass
    return total


def tree_runqueue_wait_seconds(pid: int) -> float:
    """Seconds the threads of a process and its descendants waited, runnable, for a CPU (the second field of
    /proc/PID/task/TID/schedstat): the system is pinned to its CPUs, so another process there takes its time."""
    total = 0.0
    for member in descendants(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                pass
    return total


def cpus_busy_seconds(cpu_list: list[int]) -> float:
    """CPU seconds these CPUs spent running anything (user, nice, system: /proc/stat), whoever ran."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split() or [""]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpu_list:
            total += int(fields[0]) + int(fields[1]) + int(fields[2])
    return total / CLK_TCK


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class CallinSystem:
    def __init__(self, name: str, mode: str, **env: str) -> None:
        self.mode = mode
        self.name = name
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.cpu_list = cpus()[:1]  # where the system runs (--system-cpus)

    async def start(self, calls: int) -> int:
        port = free_port()
        agents = [{"username": f"bench{i}", "password": AGENT_PASSWORD, "display_name": f"Bench {i}"}
                  for i in range(calls)]
        env = dict(os.environ, CALLIN_HOST="127.0.0.1", CALLIN_PORT=str(port), CALLIN_DEMO="true",
                   CALLIN_CALLER_TOKEN_SECRET=SECRET, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
                   CALLIN_LOG_LEVEL="warning", CALLIN_RELAY_MODE=self.mode, CALLIN_DEMO_AGENTS=json.dumps(agents),
                   CALLIN_RING_TIMEOUT_S="60",
                   # every simulated caller comes from 127.0.0.1: lift the per-address caller limits
                   CALLIN_CALLER_MAX_SESSIONS_PER_ADDRESS="100000",
                   CALLIN_CALLER_CALL_STARTS_PER_ADDRESS_PER_MINUTE="100000", **self.env)
        self.proc = subprocess.Popen(pinned(self.cpu_list, [sys.executable, "-m", "signaling.cli", "serve"]), cwd=ROOT,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{port}"
        await wait_healthy(self.url, self.proc)
        return self.proc.pid

    def loadgen_args(self) -> list[str]:
        return ["--url", self.url, "--secret", SECRET, "--agent-password", AGENT_PASSWORD]

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    import aiohttp

    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"system exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                async with http.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("system did not become healthy")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def measure(system: Any, calls: int, hold: float, warmup: float, profile: str | None = None,
                  generator: str = "blaster") -> dict[str, Any]:
    pid = await system.start(calls)
    rss0 = proc_rss_mb(pid)
    # aiortc's media fills a core at ~8-12 calls: split over worker processes; the blaster's C thread carries 50+
    workers = 1 if generator == "blaster" else max(1, math.ceil(calls / CALLS_PER_WORKER))
    placement = 4 + 0.35 * calls
    start_at = time.time() + placement
    lock = RESULTS / f"bench-{os.getpid()}.lock"
    generator_cpus = [c for c in cpus() if c not in system.cpu_list] or cpus()
    procs = []
    for w in range(workers):
        share = calls // workers + (1 if w < calls % workers else 0)
        offset = sum(calls // workers + (1 if i < calls % workers else 0) for i in range(w))
        argv = [sys.executable, "-m", "bench.loadgen", *system.loadgen_args(), "--calls", str(share),
                "--agent-offset", str(offset), "--hold", str(hold), "--warmup", str(warmup),
                "--start-at", str(start_at), "--lock", str(lock), "--generator", generator]
        procs.append(await asyncio.create_subprocess_exec(*pinned(generator_cpus, argv), cwd=ROOT,
                                                          stdout=asyncio.subprocess.PIPE,
                                                          stderr=asyncio.subprocess.PIPE))
    # The system's CPU over the same window as the workers' measurement.
    await asyncio.sleep(max(0.0, start_at + warmup - time.time()))
    cpu0, t0 = tree_cpu_seconds(pid), time.monotonic()  # the server and its media workers together
    wait0, busy0 = tree_runqueue_wait_seconds(pid), cpus_busy_seconds(system.cpu_list)
    spy = None
    if profile and isinstance(system, CallinSystem):  # sample the relay over the measurement window (py-spy)
        out = RESULTS / f"profile-{system.name}-{calls}.txt"
        spy = await asyncio.create_subprocess_exec(
            profile, "record", "-p", str(pid), "-r", "200", "-d", str(int(hold)), "--nonblocking", "-f", "raw",
            "-o", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    # Its wait for its CPU, sampled every 0.5 s: a second in which another process kept it off its CPU for 0.1 s
    # is enough to move the delay p99 past 10 ms, even if the hold's average is low.
    samples = [(t0, wait0, busy0 - cpu0)]
    while time.monotonic() - t0 < hold:
        await asyncio.sleep(min(0.5, max(0.0, hold - (time.monotonic() - t0))))
        samples.append((time.monotonic(), tree_runqueue_wait_seconds(pid),
                        cpus_busy_seconds(system.cpu_list) - tree_cpu_seconds(pid)))
    cpu1, t1 = tree_cpu_seconds(pid), time.monotonic()
    wait1, others1 = samples[-1][1], samples[-1][2]
    windows = list(zip(samples, samples[2:])) or [(samples[0], samples[-1])]
    worst_wait = max((b[1] - a[1]) / max(1e-9, b[0] - a[0]) for a, b in windows)
    worst_others = max((b[2] - a[2]) / max(1e-9, b[0] - a[0]) for a, b in windows)
    rss1 = proc_rss_mb(pid)
    if spy is not None:
        await spy.wait()
    outputs = []
    for proc in procs:
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed: {err.decode()[-3000:]}")
        outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    await system.stop()
    results = [c for o in outputs for c in o["calls"]]
    good = [c for c in results if c["ok"]]
    sent_video = sum(c["video_sent"] for c in good) or 1
    sent_audio = sum(c["audio_sent"] + c["audio_back_sent"] for c in good) or 1
    received_audio = sum(c["audio_received"] + c["audio_back_received"] for c in good)
    fps = [c["video_fps"] for c in good]
    rtp_expected = sum(c["video_packets_expected"] for c in good) or 1
    rtp_received = sum(c["video_packets_received"] for c in good)
    video_loss = max(0.0, 1 - sum(c["video_received"] for c in good) / sent_video)
    audio_loss = max(0.0, 1 - received_audio / sent_audio)
    row = {
        "system": system.name,
        "calls": calls,
        "calls_ok": len(good),
        "errors": [c["error"] for c in results if c["error"]][:3],
        "cpu_core_fraction": (cpu1 - cpu0) / (t1 - t0),
        # seconds per second the system's threads waited for its CPU while runnable (another process was there)
        "system_cpu_wait": (wait1 - wait0) / (t1 - t0),
        "system_cpu_wait_worst": worst_wait,  # the same over the worst ~1 s of the hold
        # of its CPUs, what other processes used (cores): its threads' wait above also counts a multi-threaded
        # system's threads waiting for each other (Janus), this does not
        "others_on_system_cpus": max(0.0, (others1 - samples[0][2]) / (t1 - t0)),  # ± a clock tick
        "others_on_system_cpus_worst": worst_others,
        "rss_mb": rss1,
        "rss_mb_per_call": (rss1 - rss0) / calls,
        "fps_mean": statistics.mean(fps) if fps else 0.0,
        "fps_min": min(fps) if fps else 0.0,
        "video_frame_loss": video_loss,
        "audio_packet_loss": audio_loss,
        "freezes": sum(c["freezes"] for c in good),
        "video_delay_ms_p50": percentile([d for c in good for d in c["video_delay_ms"]], 50),
        "video_delay_ms_p99": percentile([d for c in good for d in c["video_delay_ms"]], 99),
        "audio_delay_ms_p50": percentile([d for c in good for d in c["audio_delay_ms"]], 50),
        "audio_delay_ms_p99": percentile([d for c in good for d in c["audio_delay_ms"]], 99),
        "setup_offered_ms_p50": percentile([c["request_to_offered_ms"] for c in good if c["request_to_offered_ms"]], 50),
        "setup_offered_ms_p99": percentile([c["request_to_offered_ms"] for c in good if c["request_to_offered_ms"]], 99),
        "setup_first_frame_ms_p50": percentile([c["accept_to_first_frame_ms"] for c in good
                                                if c["accept_to_first_frame_ms"]], 50),
        "setup_first_frame_ms_p99": percentile([c["accept_to_first_frame_ms"] for c in good
                                                if c["accept_to_first_frame_ms"]], 99),
        "generator_cpu": sum(o["worker_cpu"] for o in outputs),
        "generator_cpus": len(generator_cpus),
        "generator": generator,
        # RTP sequence gaps at the agent over the whole call (set-up included), retransmissions counted as received
        "video_rtp_loss_whole_call": max(0.0, 1 - rtp_received / rtp_expected),
    }
    row["passed"] = (row["calls_ok"] == calls and row["fps_min"] >= FPS_TARGET and video_loss < LOSS_LIMIT
                     and audio_loss < LOSS_LIMIT)
    row["generator_saturated"] = row["generator_cpu"] > 0.9 * len(generator_cpus)
    # Other processes ran on its CPUs for a tenth of a second or more within ~1 s of the hold (another job on this
    # machine): the system waited for its CPU meanwhile, so its delays and losses are not its own.
    row["system_starved"] = row["others_on_system_cpus_worst"] >= 0.1
    return row


def make_systems(names: list[str], system_cpus: int = 1) -> list[Any]:
    systems = _make_systems(names)
    for system in systems:
        system.cpu_list = cpus()[:system_cpus]
    return systems


def _make_systems(names: list[str]) -> list[Any]:
    systems: list[Any] = []
    for name in names:
        if name == "callin-packet":  # media in the server's own process (as before media workers)
            systems.append(CallinSystem(name, "packet", CALLIN_MEDIA_WORKERS="0"))
        elif name in ("callin-packet-asyncio", "callin-packet-uvloop"):  # callin-packet on this event loop (uvloop:
            # importable by the server, e.g. PYTHONPATH=/tmp/uvl; plain callin-packet takes it too then: event_loop=auto)
            systems.append(CallinSystem(name, "packet", CALLIN_MEDIA_WORKERS="0",
                                        CALLIN_EVENT_LOOP=name.rsplit("-", 1)[1]))
        elif name == "callin-packet-python":  # the fast path without its native module (its fallback)
            systems.append(CallinSystem(name, "packet", CALLIN_MEDIA_WORKERS="0", CALLIN_RELAY_FAST_PATH="python"))
        elif name == "callin-packet-aiortc":  # aiortc's own per-packet path (before the fast path)
            systems.append(CallinSystem(name, "packet", CALLIN_MEDIA_WORKERS="0", CALLIN_RELAY_FAST_PATH="off"))
        elif name.startswith("callin-workers-"):  # media in N worker processes beside the server
            systems.append(CallinSystem(name, "packet", CALLIN_MEDIA_WORKERS=name.rsplit("-", 1)[1]))
        elif name == "callin-packet-stock-receive":  # before the profile-driven receive path (for the ratio)
            systems.append(CallinSystem(name, "packet", CALLIN_RELAY_LEAN_RECEIVE="false", CALLIN_MEDIA_WORKERS="0"))
        elif name == "callin-frame":
            systems.append(CallinSystem(name, "frame", CALLIN_MEDIA_WORKERS="0"))
        elif name == "transcoding-relay":
            systems.append(CallinSystem(name, "transcode", CALLIN_MEDIA_WORKERS="0"))
        elif name == "janus":
            from bench.janus import JanusSystem

            systems.append(JanusSystem())
        else:
            raise SystemExit(f"unknown system {name}")
    return systems


def generator_for(system: Any, generator: str) -> str:
    """The blaster's VP8 frames carry a tag at the end of every packet, so they are not the encoder's bytes: fine for
    relays that forward packets (Callin's packet mode, Janus) or frames (frame mode packetizes them again at the same
    boundaries: checked, every frame identified), not for the transcoding relay, whose decoder would work on other
    bytes than the encoder made: it gets aiortc's generator."""
    return "aiortc" if getattr(system, "mode", "packet") == "transcode" else generator


async def sweep(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(exist_ok=True)
    from bench.media import EncodedLoop

    EncodedLoop.load()  # encode (or load) the replayed media once, before anything is timed
    rows = []
    for system in make_systems(args.systems.split(","), args.system_cpus):
        async def point(calls: int) -> dict[str, Any]:
            row = await measure(system, calls, args.hold, args.warmup, args.profile, generator_for(system, args.generator))
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                              if k not in ("errors",)}), flush=True)
            return row

        last_pass, first_fail = 0, None
        for calls in [int(n) for n in args.calls.split(",")]:
            row = await point(calls)
            if row["passed"]:
                last_pass = calls
            else:
                first_fail = calls
                if not args.keep_going:
                    break
            if row["system_starved"]:
                print(f"{system.name}: at {calls} calls other processes used up to "
                      f"{row['others_on_system_cpus_worst']:.2f} of its CPU within a second (its threads waited "
                      f"{row['system_cpu_wait']:.2f} s per second for it): its delays and losses are not its own",
                      flush=True)
            if row["generator_saturated"]:
                print(f"{system.name}: the load generator is saturated at {calls} calls; stopping this sweep",
                      flush=True)
                break
        # Refine between the last passing and the first failing point (bisection, to within 10%).
        while args.refine and first_fail is not None and first_fail - last_pass > max(1, last_pass // 10):
            mid = (last_pass + first_fail) // 2
            if (await point(mid))["passed"]:
                last_pass = mid
            else:
                first_fail = mid
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "hold_s": args.hold, "rows": rows, "summary": summarize(rows)}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "kernel": platform.release()}


def fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares line cpu = fixed + per_call * calls."""
    if len({n for n, _ in points}) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return mean_y - slope * mean_x, slope


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == name]
        passed = [r for r in mine if r["passed"]]
        best = max(passed, key=lambda r: r["calls"]) if passed else None
        # CPU per call: the slope over the passing points where the load generator still had headroom (its own
        # saturation adds delay and stalls that are not the system's); the fixed part is the intercept.
        clean = [(r["calls"], r["cpu_core_fraction"]) for r in passed
                 if r["generator_cpu"] < 0.85 * r["generator_cpus"]]
        line = fit(clean)
        if line is None and best is not None:
            line = (0.0, best["cpu_core_fraction"] / best["calls"])
        fixed, per_call = line if line else (None, None)
        capacity = (1 - (fixed or 0)) / per_call if per_call and per_call > 0 else None
        reference = max((r for r in passed if r["generator_cpu"] < 0.85 * r["generator_cpus"]),
                        key=lambda r: r["calls"], default=best)
        out[name] = {
            "max_calls_passing": best["calls"] if best else 0,
            "limited_by_generator": any(r["generator_saturated"] for r in mine),
            "cpu_per_call": per_call,
            "cpu_fixed": fixed,
            "calls_per_core_extrapolated": capacity,
            "mb_per_call": reference["rss_mb_per_call"] if reference else None,
            "reference_calls": reference["calls"] if reference else None,
            "setup_first_frame_ms_p50": reference["setup_first_frame_ms_p50"] if reference else None,
            "setup_first_frame_ms_p99": reference["setup_first_frame_ms_p99"] if reference else None,
            "setup_offered_ms_p50": reference["setup_offered_ms_p50"] if reference else None,
            "setup_offered_ms_p99": reference["setup_offered_ms_p99"] if reference else None,
            "video_delay_ms_p99": reference["video_delay_ms_p99"] if reference else None,
            "audio_delay_ms_p99": reference["audio_delay_ms_p99"] if reference else None,
        }
    return out


def write_outputs(result: dict[str, Any]) -> Path:
    stamp = result["date"].replace(":", "").replace("-", "")[:15]
    base = RESULTS / f"bench-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2))
    base.with_suffix(".md").write_text(markdown(result))
    try:
        plot(result, base.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
    return base


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    reference = summary.get("callin-packet")
    m = result["machine"]
    lines = [f"Measured {result['date'][:10]} on {m['cpus']} CPUs ({m['cpu_model']}): each system pinned to one CPU, "
             f"the load generator on the other; {result['hold_s']:.0f} s holds; a point passes when every call gets "
             f"≥ {FPS_TARGET:.0f} fps and < {LOSS_LIMIT:.0%} loss. CPU per call is the slope over the passing points "
             "where the generator had headroom; calls per core extrapolates that line to 100% of one core. "
             "Setup times, delays and MB per call are from the largest such point (its call count in brackets).", "",
             "| system | calls passed (measured) | CPU per call | calls per core (extrapolated) | callin-packet × "
             "| MB per call | accept→first frame p50 / p99 ms | request→offered p50 / p99 ms "
             "| video / audio delay p99 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        ratio = None
        if reference and reference["calls_per_core_extrapolated"] and s["calls_per_core_extrapolated"]:
            ratio = reference["calls_per_core_extrapolated"] / s["calls_per_core_extrapolated"]
        limited = " (generator-bound)" if s["limited_by_generator"] else ""
        lines.append(
            f"| {name} | {s['max_calls_passing']}{limited} | {fmt(s['cpu_per_call'] and s['cpu_per_call'] * 100)}% "
            f"| {fmt(s['calls_per_core_extrapolated'], 0)} | {fmt(ratio, 2)} "
            f"| {fmt(s['mb_per_call'], 2)} "
            f"| {fmt(s['setup_first_frame_ms_p50'], 0)} / {fmt(s['setup_first_frame_ms_p99'], 0)} "
            f"| {fmt(s['setup_offered_ms_p50'], 0)} / {fmt(s['setup_offered_ms_p99'], 0)} "
            f"| {fmt(s['video_delay_ms_p99'])} / {fmt(s['audio_delay_ms_p99'])} ({s['reference_calls']}) |")
    lines += ["", "`callin-packet ×`: how many times more calls per core callin-packet carries than that system "
              "(below 1: fewer). Delays are end to end on loopback (the sender hands an encoded frame to aiortc → the "
              "frame is complete at the receiving peer), load generator scheduling included."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_cpu, ax_fps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in result["summary"]:
        rows = sorted((r for r in result["rows"] if r["system"] == name), key=lambda r: r["calls"])
        calls = [r["calls"] for r in rows]
        ax_cpu.plot(calls, [r["cpu_core_fraction"] * 100 for r in rows], marker="o", label=name)
        ax_fps.plot(calls, [r["fps_min"] for r in rows], marker="o", label=name)
    ax_cpu.set_xlabel("concurrent two-way calls")
    ax_cpu.set_ylabel("system CPU (% of one core)")
    ax_cpu.axhline(100, color="grey", lw=0.8, ls="--")
    ax_fps.set_xlabel("concurrent two-way calls")
    ax_fps.set_ylabel("worst call's delivered fps")
    ax_fps.axhline(FPS_TARGET, color="grey", lw=0.8, ls="--")
    for ax in (ax_cpu, ax_fps):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Callin relay capacity — {result['date'][:10]}, {result['machine']['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="callin-packet,callin-frame,transcoding-relay,janus")
    parser.add_argument("--calls", default="1,5,10,20,30,40,50,60,80,100")
    parser.add_argument("--hold", type=float, default=10)
    parser.add_argument("--system-cpus", type=int, default=1,
                        help="CPUs the measured system is pinned to (the first ones); the load generator gets the rest")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--generator", choices=("aiortc", "blaster"), default="blaster",
                        help="the load generator's media once a call is set up by aiortc: bench/blaster.py's C thread "
                             "(default: 64 calls in ~35%% of a core) or aiortc's peers (Python, ~8-12 calls per core); "
                             "docs/benchmark.md 'Step 5'")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="no bisection between the last passing and the first failing point")
    parser.add_argument("--keep-going", action="store_true", help="continue a system's sweep after a failing point")
    parser.add_argument("--profile", metavar="PY_SPY",
                        help="py-spy executable: sample each Callin system over each point's window into "
                             "results/profile-<system>-<calls>.txt (folded stacks; bench/profile.py sums them up)")
    parser.add_argument("--report", type=Path, help="rewrite the table and plot of an earlier result JSON, no run")
    args = parser.parse_args()
    if args.report is not None:
        result = json.loads(args.report.read_text())
        result["summary"] = summarize(result["rows"])
        base = write_outputs(result)
        print(markdown(result))
        print(f"written: {base}.json .md .png")
        return
    if "janus" in args.systems and not shutil.which("janus"):
        print("janus is not installed (apt-get install janus): leaving it out", flush=True)
        args.systems = ",".join(s for s in args.systems.split(",") if s != "janus")
    ensure_loopback_namespace()
    result = asyncio.run(sweep(args))
    base = write_outputs(result)
    print(markdown(result))
    print(f"written: {base}.json .md .png")


if __name__ == "__main__":
    main()
