"""A queue of thousands: admission time, head-departure fan-out, memory per waiting caller, media alongside.

A real `callin serve` runs in a subprocess (pinned to CPU 0); signaling-only callers (WebSocket, `hello` and
`call.start`, no media) come from worker processes of this script. The crowd waits in a queue of its own whose skill
no agent has, so it is never offered; optional media calls (bench.loadgen, through the default queue) run
alongside and report their delivered fps.

For each system (this checkout, and a baseline checkout extracted from git in the same run):
  - admit: seconds from the first `call.start` to the last `call.queued` for N callers (the "head" caller, who
    joined first, is not counted);
  - fan-out: the head caller hangs up; for every other caller, the delay until it receives a `queue.position` with
    a smaller position (p50, p99, max; callers never told within the timeout are counted as missed);
  - memory: the server's RSS growth while the N callers were admitted, divided by N;
  - closed: caller sockets the server closed (e.g. 4400 "client too slow": a full outbox);
  - with --media M: M two-way video calls placed before the crowd and measured while it is admitted (fps).

    python -m bench.queue_scale                                   # 10,000 here, 1,000 for both (ratios)
    python -m bench.queue_scale --callers 10000 --baseline-callers 1000 --baseline-ref main --media 10

Writes results/queue-scale-<timestamp>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from tests.support.clients import WsClient  # noqa: E402
from tests.support.process import stop_process  # noqa: E402
from bench.run import (  # noqa: E402
    AGENT_PASSWORD,
    RESULTS,
    SECRET,
    cpus,
    free_port,
    percentile,
    pinned,
    proc_cpu_seconds,
    proc_rss_mb,
    wait_healthy,
)

CROWD_QUEUE = "crowd"
CROWD_SKILL = "crowd-only"  # only the crowd's own agent has it: media calls' agents never take crowd calls
CROWD_AGENT = "crowdagent"
FANOUT_TIMEOUT_S = 20.0
SERVER_LOG = os.environ.get("QUEUE_SCALE_SERVER_LOG")  # keep the server's log there (warnings and errors)


# ------------------------------------------------------------------------------------------------ worker side
class Waiter:
    """One signaling-only caller: connects, starts a call, keeps reading (positions and their arrival times)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ws: Any = None
        self.position: int | None = None
        self.armed_at: int | None = None  # position when armed
        self.moved_at: float | None = None  # monotonic time of the first smaller position after arming
        self.closed_code: int | None = None
        self.positions_received = 0
        self.acked_at: float | None = None  # when the hang-up was acknowledged (the head caller)
        self._queued = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def join(self, http: Any) -> None:
        self.ws = await http.ws_connect(self.url, max_msg_size=0, autoping=True)
        self._reader = asyncio.ensure_future(self._read())
        await self.ws.send_str(json.dumps({"type": "hello", "id": "h", "token": self.token}))
        await self.ws.send_str(json.dumps({"type": "call.start", "id": "s", "call_type": "voice"}))
        await asyncio.wait_for(self._queued.wait(), 600)

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            kind = data.get("type")
            if kind in ("queue.position", "call.queued"):
                self.position = data["position"]
                if kind == "queue.position":
                    self.positions_received += 1
                if self.armed_at is not None and self.moved_at is None and data["position"] < self.armed_at:
                    self.moved_at = time.monotonic()
                if kind == "call.queued":
                    self._queued.set()
            elif kind == "ack" and data.get("id") == "bye":
                self.acked_at = time.monotonic()
            elif kind == "error":
                print(json.dumps({"error": data}), file=sys.stderr, flush=True)
                self._queued.set()
        self.closed_code = self.ws.close_code
        self._queued.set()

    def arm(self) -> None:
        self.armed_at = self.position

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()


async def worker(args: argparse.Namespace) -> None:
    """Driven over stdin/stdout by the orchestrator: go -> admitted, arm -> armed, report -> results, quit."""
    import aiohttp

    from gateway.auth import mint_caller_token

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url = args.url.replace("http", "ws", 1) + "/ws/caller"
    waiters = [Waiter(url, mint_caller_token(SECRET, sub=f"crowd-{args.offset + i}", name=f"Crowd {i}",
                                             extra={"queue": CROWD_QUEUE}))
               for i in range(args.count)]
    loop = asyncio.get_running_loop()

    async def line() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    def say(**data: Any) -> None:
        print(json.dumps(data), flush=True)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(args.concurrency)

        async def admit(waiter: Waiter) -> None:
            async with gate:
                await waiter.join(http)

        say(ready=True)
        assert await line() == "go"
        started = time.monotonic()
        results = await asyncio.gather(*(admit(w) for w in waiters), return_exceptions=True)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        say(admitted=sum(1 for w in waiters if w.position is not None), started=started, done=time.monotonic(),
            failures=failures[:3], failed=len(failures))
        assert await line() == "arm"
        for waiter in waiters:
            waiter.arm()
        say(armed=True)
        assert await line() == "report"
        say(moved=[w.moved_at for w in waiters if w.moved_at is not None],
            missed=sum(1 for w in waiters if w.moved_at is None and w.closed_code is None),
            closed=sum(1 for w in waiters if w.closed_code is not None),
            close_codes=sorted({w.closed_code for w in waiters if w.closed_code is not None}),
            positions_received=sum(w.positions_received for w in waiters))
        assert await line() == "quit"
        await asyncio.gather(*(w.close() for w in waiters), return_exceptions=True)


# ------------------------------------------------------------------------------------------------ orchestrator
class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"worker exited: {(await self.proc.stderr.read()).decode()[-2000:]}")  # type: ignore[union-attr]
        return json.loads(raw)

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())


def extract(ref: str) -> Path:
    """A checkout of `ref` (git archive) in a temporary folder: the baseline's code."""
    folder = Path(tempfile.mkdtemp(prefix="callin-baseline-"))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


async def cpu_use(pid: int, seconds: float) -> float:
    """The process's CPU use over the next `seconds`, in cores."""
    before = proc_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (proc_cpu_seconds(pid) - before) / seconds


async def settle(pid: int, quiet: float, limit_s: float = 60.0) -> float:
    """Wait (at least 2 s) until the process is back to its quiet CPU use (`quiet` cores: media calls, if any)."""
    started = time.monotonic()
    await asyncio.sleep(2)
    while time.monotonic() - started < limit_s and await cpu_use(pid, 0.5) > quiet + 0.1:
        pass
    return time.monotonic() - started


async def start_server(tree: Path, callers: int, agents: int, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    demo_agents = [{"username": f"bench{i}", "password": AGENT_PASSWORD, "display_name": f"Bench {i}"}
                   for i in range(max(1, agents))]
    demo_agents.append({"username": CROWD_AGENT, "password": AGENT_PASSWORD, "display_name": "Crowd",
                        "skills": [CROWD_SKILL]})
    env = dict(os.environ, CALLIN_HOST="127.0.0.1", CALLIN_PORT=str(port), CALLIN_DEMO="true",
               CALLIN_CALLER_TOKEN_SECRET=SECRET, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_LOG_LEVEL="info" if SERVER_LOG else "warning", CALLIN_RELAY_MODE="packet", CALLIN_DEMO_AGENTS=json.dumps(demo_agents),
               CALLIN_RING_TIMEOUT_S="600", CALLIN_MAX_QUEUE_LENGTH=str(callers + 100),
               CALLIN_QUEUES=json.dumps([{"name": CROWD_QUEUE, "skills": [CROWD_SKILL]}]),
               # every simulated caller shares 127.0.0.1: lift the per-address limits (as bench/run.py does)
               CALLIN_CALLER_MAX_SESSIONS_PER_ADDRESS="100000",
               CALLIN_CALLER_CALL_STARTS_PER_ADDRESS_PER_MINUTE="100000",
               CALLIN_DATA_DIR=data_dir,  # fresh records for every run
               PYTHONPATH=str(tree))
    # not a pipe: a server that logs a lot must never block on it
    log = open(SERVER_LOG, "w+b") if SERVER_LOG else tempfile.TemporaryFile()
    proc = subprocess.Popen(pinned([cpus()[0]], [sys.executable, "-m", "signaling.cli", "serve"]), cwd=tree,
                            env=env, stdout=subprocess.DEVNULL, stderr=log,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                  (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2))
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc)
    except (RuntimeError, AttributeError):
        log.seek(0)
        raise RuntimeError(f"the server did not start: {log.read().decode()[-2000:]}") from None
    return proc, url


async def measure(name: str, tree: Path, callers: int, workers: int, media: int, media_hold: float,
                  concurrency: int) -> dict[str, Any]:
    from gateway.auth import mint_caller_token

    import aiohttp

    data_dir = tempfile.mkdtemp(prefix="callin-queue-scale-")
    proc, url = await start_server(tree, callers, media, data_dir)
    row: dict[str, Any] = {"system": name, "callers": callers, "media_calls": media}
    generator_cpus = cpus()[1:] or cpus()
    loadgen = None
    try:
        if media:
            lock = RESULTS / f"queue-scale-{os.getpid()}.lock"
            start_at = time.time() + 5 + 1.0 * media
            argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--secret", SECRET, "--calls", str(media),
                    "--agent-password", AGENT_PASSWORD, "--hold", str(media_hold), "--warmup", "1",
                    "--start-at", str(start_at), "--lock", str(lock)]
            loadgen = await asyncio.create_subprocess_exec(*pinned(generator_cpus, argv), cwd=ROOT,
                                                           stdout=asyncio.subprocess.PIPE,
                                                           stderr=asyncio.subprocess.PIPE)
            await asyncio.sleep(max(0.0, start_at + 1 - time.time()))  # media flowing, measured from now on
            row["media_window_s"] = media_hold
        async with aiohttp.ClientSession() as http:
            # The crowd's queue is staffed by one agent: the head caller rings at it for the whole run (so callers
            # get estimates, not a "no agents" notice); when the head leaves, the next caller rings.
            async with http.post(f"{url}/api/v1/agent/login",
                                 json={"username": CROWD_AGENT, "password": AGENT_PASSWORD}) as response:
                agent_token = (await response.json())["token"]
            agent = WsClient(url, "/ws/agent")
            await agent.connect()
            await agent.request({"type": "hello", "token": agent_token})
            await agent.request({"type": "agent.status", "status": "available"})
            head = Waiter(url.replace("http", "ws", 1) + "/ws/caller",
                          mint_caller_token(SECRET, sub="crowd-head", extra={"queue": CROWD_QUEUE}))
            await head.join(http)
            assert head.position == 1, head.position
            rss0 = proc_rss_mb(proc.pid)
            quiet = await cpu_use(proc.pid, 1.0)  # with media calls, what they cost
            row["server_cpu_before"] = quiet
            procs = []
            for w in range(workers):
                share = callers // workers + (1 if w < callers % workers else 0)
                offset = sum(callers // workers + (1 if i < callers % workers else 0) for i in range(w))
                argv = [sys.executable, "-m", "bench.queue_scale", "--worker", "--url", url, "--count", str(share),
                        "--offset", str(offset), "--concurrency", str(concurrency)]
                # nice 19: the crowd shares the generator CPUs with the media calls' client (bench.loadgen), whose
                # frames are what is measured; a starved client would report its own delay as the server's
                procs.append(Worker(await asyncio.create_subprocess_exec(
                    "nice", "-n", "19", *pinned(generator_cpus, argv), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)))
            for worker_proc in procs:
                await worker_proc.read(60)
            for worker_proc in procs:
                worker_proc.tell("go")
            admitted = [await worker_proc.read(3600) for worker_proc in procs]
            row["admitted"] = sum(a["admitted"] for a in admitted)
            row["admit_failures"] = sum(a["failed"] for a in admitted)
            row["admit_s"] = max(a["done"] for a in admitted) - min(a["started"] for a in admitted)
            # Let the server finish what admission left behind (held position notices, the records writer's
            # backlog) so that the departure is measured on its own.
            row["settle_s"] = await settle(proc.pid, quiet)
            rss1 = proc_rss_mb(proc.pid)
            row["rss_mb"] = rss1
            row["kib_per_waiting_caller"] = (rss1 - rss0) * 1024 / callers
            for worker_proc in procs:
                worker_proc.tell("arm")
            for worker_proc in procs:
                await worker_proc.read(60)
            departed = time.monotonic()
            row["head_closed_by_server"] = head.ws.closed or head.closed_code is not None
            if row["head_closed_by_server"]:  # e.g. 4400 "client too slow": nobody to depart
                row["head_close_code"] = head.closed_code or head.ws.close_code
            else:
                await head.ws.send_str(json.dumps({"type": "call.hangup", "id": "bye"}))
                await asyncio.sleep(FANOUT_TIMEOUT_S if callers > 2000 else FANOUT_TIMEOUT_S / 2)
            for worker_proc in procs:
                worker_proc.tell("report")
            reports = [await worker_proc.read(120) for worker_proc in procs]
            delays = [(t - departed) * 1000 for r in reports for t in r["moved"]]
            row["hangup_ack_ms"] = (head.acked_at - departed) * 1000 if head.acked_at else None
            row["fanout_told"] = len(delays)
            row["fanout_missed"] = sum(r["missed"] for r in reports)
            row["fanout_ms_p50"] = percentile(delays, 50)
            row["fanout_ms_p99"] = percentile(delays, 99)
            row["fanout_ms_max"] = max(delays) if delays else None
            row["closed_by_server"] = sum(r["closed"] for r in reports)
            row["close_codes"] = sorted({c for r in reports for c in r["close_codes"]})
            row["positions_received"] = sum(r["positions_received"] for r in reports)
            for worker_proc in procs:
                worker_proc.tell("quit")
            for worker_proc in procs:
                try:
                    await asyncio.wait_for(worker_proc.proc.wait(), 120)
                except asyncio.TimeoutError:
                    worker_proc.proc.kill()
            await head.close()
            await agent.close()
        if loadgen is not None:
            out, err = await loadgen.communicate()
            if loadgen.returncode != 0:
                row["media_error"] = err.decode()[-500:]
            else:
                report = json.loads(out.decode().strip().splitlines()[-1])
                calls = report["calls"]
                row["media_client_lag_max_s"] = report.get("loop_lag_max_s")
                fps = [c["video_fps"] for c in calls if c["video_received"]]
                row["media_ok"] = sum(1 for c in calls if c["ok"])
                row["media_fps_min"] = min(fps) if fps else 0.0
                row["media_fps_mean"] = sum(fps) / len(fps) if fps else 0.0
                row["media_ended"] = sorted(str(c.get("ended")) for c in calls if c.get("ended"))
    finally:
        if loadgen is not None and loadgen.returncode is None:
            loadgen.kill()
        stop_process(proc, 20)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| system | waiting callers | admit s | admitted/s | head departure p50 / p99 / max ms (told, missed) "
             "| KiB per waiting caller | closed by server | media fps min (calls) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["admitted"] / r["admit_s"] if r.get("admit_s") else None
        media = f"{fmt(r.get('media_fps_min'))} ({r.get('media_ok', 0)}/{r['media_calls']})" if r["media_calls"] else "-"
        lines.append(f"| {r['system']} | {r['callers']} | {fmt(r.get('admit_s'))} | {fmt(rate, 0)} "
                     f"| {fmt(r.get('fanout_ms_p50'), 0)} / {fmt(r.get('fanout_ms_p99'), 0)} / "
                     f"{fmt(r.get('fanout_ms_max'), 0)} ({r.get('fanout_told')}, {r.get('fanout_missed')}) "
                     f"| {fmt(r.get('kib_per_waiting_caller'))} | {r.get('closed_by_server')} | {media} |")
    return "\n".join(lines)


async def orchestrate(args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    if args.media:
        from bench.media import EncodedLoop

        EncodedLoop.load()
    rows = []
    baseline = extract(args.baseline_ref) if args.baseline_callers else None
    runs: list[tuple[str, Path, int]] = []
    if baseline is not None:
        runs.append((f"baseline ({args.baseline_ref})", baseline, args.baseline_callers))
        runs.append(("this checkout", ROOT, args.baseline_callers))
    runs.append(("this checkout", ROOT, args.callers))
    try:
        for name, tree, callers in runs:
            rows.append(await measure(name, tree, callers, args.workers, args.media, args.media_hold,
                                      args.concurrency))
    finally:
        if baseline is not None:
            shutil.rmtree(baseline, ignore_errors=True)
    table = markdown(rows)
    print(table)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"queue-scale-{stamp}.json"
    out.write_text(json.dumps({"date": stamp, "args": vars(args), "rows": rows, "cpus": len(cpus()),
                               "load_average": os.getloadavg()}, indent=2))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=10_000)
    parser.add_argument("--baseline-callers", type=int, default=1000, help="0: no baseline")
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline code")
    parser.add_argument("--workers", type=int, default=4, help="caller worker processes")
    parser.add_argument("--concurrency", type=int, default=200, help="joins in flight per worker")
    parser.add_argument("--media", type=int, default=0, help="two-way video calls alongside (bench.loadgen)")
    parser.add_argument("--media-hold", type=float, default=60.0, help="how long the media calls are measured")
    # worker mode (started by the orchestrator)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    ensure_loopback_namespace()
    asyncio.run(orchestrate(args))


if __name__ == "__main__":
    main()
