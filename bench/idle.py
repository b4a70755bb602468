"""The server's fixed cost: CPU and wake-ups of an idle `callin serve`, this checkout against a baseline, same run.

`callin serve` starts as bench/run.py starts its callin-packet system (demo agents, packet relay, media in the
server's process, pinned to CPU 0) with a fresh data folder, and is measured after it settled, in two states:
  - idle: nothing connected;
  - waiting: one agent signed in (away) and one caller waiting in line (signaling only, the clients in this
    process, on the other CPUs).
Per state: the CPU of the server's process (all its threads, from /proc/<pid>/task/*/schedstat: the scheduler's
time on the CPU in ns; bench/run.py's utime + stime count whole 10 ms ticks, too coarse for ~1%) in % of a core, the
part of the event loop thread and of the others (records writer, database threads), and wake-ups per second: voluntary context
switches of all threads (each return from epoll_wait/futex that slept is one), from /proc/<pid>/task/*/status.

The two builds run side by side, pinned to the same CPU, and are measured over the same windows (a round starts
both afresh): measured one after the other, a burst of other jobs on that CPU in one build's window and not the
other's moved a round's ratio to 3x.

    python -m bench.idle --seconds 60 --rounds 3                    # this checkout against main
    python -m bench.idle --seconds 30 --rounds 2 --baseline-ref HEAD~3 --states idle

Writes results/idle-<timestamp>.json and prints a markdown table (per round and the median ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from bench.run import AGENT_PASSWORD, CLK_TCK, RESULTS, SECRET, cpus, free_port, pinned, wait_healthy  # noqa: E402
from bench.queue_scale import extract  # noqa: E402
from tests.support.process import stop_process  # noqa: E402


def thread_stats(pid: int) -> dict[str, tuple[float, int]]:
    """Per thread name (numbered when repeated): (CPU seconds, voluntary context switches)."""
    out: dict[str, tuple[float, int]] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name)):
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except OSError:
            continue
        try:  # time on the CPU in ns, from the scheduler: exact, where utime + stime count 10 ms ticks
            cpu = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            fields = stat.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        switches = 0
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
        key = "main" if task.name == str(pid) else (name or "thread")  # Python does not name its threads here
        n = 1
        while f"{key}#{n}" in out:
            n += 1
        out[f"{key}#{n}"] = (cpu, switches)
    return out


def diff(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]],
         seconds: float) -> dict[str, Any]:
    threads = {}
    for key, (cpu, sw) in after.items():
        cpu0, sw0 = before.get(key, (0.0, 0))
        threads[key] = {"cpu_pct": 100 * (cpu - cpu0) / seconds, "wakeups_per_s": (sw - sw0) / seconds}
    return {"cpu_pct": sum(t["cpu_pct"] for t in threads.values()),
            "wakeups_per_s": sum(t["wakeups_per_s"] for t in threads.values()), "threads": threads}


def start_server(tree: Path, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    agents = [{"username": "bench0", "password": AGENT_PASSWORD, "display_name": "Bench 0"}]
    env = dict(os.environ, CALLIN_HOST="127.0.0.1", CALLIN_PORT=str(port), CALLIN_DEMO="true",
               CALLIN_CALLER_TOKEN_SECRET=SECRET, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_LOG_LEVEL="warning", CALLIN_RELAY_MODE="packet", CALLIN_DEMO_AGENTS=json.dumps(agents),
               CALLIN_RING_TIMEOUT_S="60", CALLIN_MEDIA_WORKERS="0",  # bench/run.py's callin-packet
               CALLIN_CALLER_MAX_SESSIONS_PER_ADDRESS="100000",
               CALLIN_CALLER_CALL_STARTS_PER_ADDRESS_PER_MINUTE="100000",
               CALLIN_DATA_DIR=data_dir, PYTHONPATH=str(tree))
    log = tempfile.TemporaryFile()  # not a pipe: never blocks the server
    proc = subprocess.Popen(pinned(cpus()[:1], [sys.executable, "-m", "signaling.cli", "serve"]), cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


async def sign_in_and_wait(url: str) -> list[Any]:
    """One agent signed in (away) and one caller queued; returns the clients (to close)."""
    import aiohttp

    from gateway.auth import mint_caller_token
    from tests.support.clients import WsClient

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/agent/login",
                             json={"username": "bench0", "password": AGENT_PASSWORD}) as r:
            token = (await r.json())["token"]
    agent = WsClient(url, "/ws/agent")
    await agent.connect()
    await agent.request({"type": "hello", "token": token})
    caller = WsClient(url, "/ws/caller")
    await caller.connect()
    await caller.request({"type": "hello", "token": mint_caller_token(SECRET, sub="idle-caller")})
    queued = await caller.request({"type": "call.start", "call_type": "voice"})
    if queued.get("type") == "error":
        raise RuntimeError(f"call.start failed: {queued}")
    return [agent, caller]


async def measure(systems: list[tuple[str, Path]], states: list[str], seconds: float,
                  settle_s: float) -> list[dict[str, Any]]:
    """Both builds run at once, pinned to the same CPU, and are measured over the same windows: whatever else the
    machine does then (other jobs on that CPU evict caches, and a cold wake-up costs several times a warm one)
    touches both alike. Apart, one build's window met such a burst and the other's did not, ±50% or more."""
    started: list[tuple[str, subprocess.Popen[bytes], str, str]] = []
    clients: list[Any] = []
    rows: list[dict[str, Any]] = [{"system": name} for name, _ in systems]
    try:
        for name, tree in systems:
            data_dir = tempfile.mkdtemp(prefix="callin-idle-")
            proc, url = start_server(tree, data_dir)
            started.append((name, proc, url, data_dir))
        for _, proc, url, _ in started:
            await wait_healthy(url, proc)
        for state in states:
            if state == "waiting":
                for _, _, url, _ in started:
                    clients += await sign_in_and_wait(url)
            await asyncio.sleep(settle_s)
            before, t0 = [thread_stats(proc.pid) for _, proc, _, _ in started], time.monotonic()
            await asyncio.sleep(seconds)
            after, t1 = [thread_stats(proc.pid) for _, proc, _, _ in started], time.monotonic()
            for row, b, a in zip(rows, before, after):
                row[state] = diff(b, a, t1 - t0)
    finally:
        for client in clients:
            await client.close()
        for _, proc, _, data_dir in started:
            stop_process(proc, 15)
            shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def markdown(rows: list[dict[str, Any]], states: list[str]) -> str:
    lines = ["| round | state | system | CPU % of a core | of it: event loop / other threads (records writer, database) "
             "| wake-ups/s (event loop / others) | this × baseline (CPU) |", "|---|---|---|---|---|---|---|"]
    ratios: dict[str, list[float]] = {s: [] for s in states}
    for row in rows:
        for state in states:
            m = row[state]
            main = m["threads"].get("main#1", {"cpu_pct": 0.0, "wakeups_per_s": 0.0})
            ratio = ""
            if row["system"] == "this checkout":
                base = next((r for r in rows if r["round"] == row["round"] and r["system"] != "this checkout"), None)
                if base is not None and base[state]["cpu_pct"] > 0:
                    ratios[state].append(m["cpu_pct"] / base[state]["cpu_pct"])
                    ratio = f"{ratios[state][-1]:.2f}"
            lines.append(f"| {row['round']} | {state} | {row['system']} | {m['cpu_pct']:.2f} "
                         f"| {main['cpu_pct']:.2f} / {m['cpu_pct'] - main['cpu_pct']:.2f} "
                         f"| {m['wakeups_per_s']:.1f} ({main['wakeups_per_s']:.1f} / "
                         f"{m['wakeups_per_s'] - main['wakeups_per_s']:.1f}) | {ratio} |")
    for state, values in ratios.items():
        if values:
            lines.append(f"\n{state}: this checkout × baseline, median CPU ratio {statistics.median(values):.2f}")
    return "\n".join(lines) + "\n"


async def orchestrate(args: argparse.Namespace) -> None:
    states = args.states.split(",")
    baseline = extract(args.baseline_ref) if args.baseline_ref else None
    if baseline is not None:  # the native module is a build output (not in git): the same one for both
        for built in (ROOT / "gateway" / "media").glob("_fastpath*.so"):
            shutil.copy(built, baseline / "gateway" / "media" / built.name)
    rows: list[dict[str, Any]] = []
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    try:
        for n in range(1, args.rounds + 1):
            systems = [("this checkout", ROOT)]
            if baseline is not None:
                systems.insert(0, (f"baseline ({args.baseline_ref})", baseline))
            for row in await measure(systems, states, args.seconds, args.settle):
                row["round"] = n
                rows.append(row)
                print(json.dumps({"round": n, "system": row["system"],
                                  **{s: {"cpu_pct": round(row[s]["cpu_pct"], 3),
                                         "wakeups_per_s": round(row[s]["wakeups_per_s"], 1)} for s in states}}),
                      flush=True)
    finally:
        if baseline is not None:
            shutil.rmtree(baseline, ignore_errors=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seconds": args.seconds, "rounds": args.rounds, "baseline_ref": args.baseline_ref,
              "load_before": load_before, "load_after": load_after, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "")[:15]
    path = RESULTS / f"idle-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(markdown(rows, states))
    print(f"load average {' '.join(load_before)} -> {' '.join(load_after)}; written: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="measurement window per state")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10, help="seconds before each measurement")
    parser.add_argument("--states", default="idle,waiting")
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline ('' for none)")
    args = parser.parse_args()
    ensure_loopback_namespace()
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
