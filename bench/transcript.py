"""Live transcripts: how soon a final caption follows the end of speech, what transcription costs in CPU, and
whether it disturbs the relay, transcription off and on in one run.

    unshare -rn sh -c 'ip link set lo up && exec python -m bench.transcript --calls 2 --utterances 6'
    ... --baseline /path/to/an/older/checkout   (the same, first with that code's gateway: before/after in one run)

Starts one `callin serve` (media in its own process, SQLite) with two queues, "plain" (transcript off) and
"transcribed" (on, pocketsphinx). For each mode, `--calls` calls at once: real aiortc callers sending 30 fps video
and speech (espeak-ng phrases, a pause after each) to real aiortc agents. With `--baseline DIR`, the same is run
first on a gateway started from DIR's code (e.g. a checkout from before incremental decoding), then on this one, and
the ratios of the two are printed. Measured over the speaking window:
- final caption latency: from the caller's last speech sample of an utterance to the final caption at the agent's
  socket (p50/p99; "on" only);
- first partial caption: from the caller's first speech sample of an utterance to its first partial caption at the
  agent's socket (p50/p99, and how many utterances got one; "on" only);
- CPU of the gateway process and its children (the recognition processes), seconds per call per minute;
- the agents' received video: frames per second and frames lost (gaps in the frame counters);
- the resident memory of the gateway process and its children at the end of the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from bench.run import percentile  # noqa: E402

MODES = ("off", "on")
AGENTS = (("alice", "alice-demo"), ("bob", "bob-demo"), ("sam", "sam-demo"))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SPEECH_RATE = 48000  # tests.support.speech: what synthesize() gives


def gateway_class(code: Path | None):
    """GatewayProcess, or one that runs the gateway of another checkout (`code`: its root) with the same settings."""
    from tests.support.process import GatewayProcess

    if code is None:
        return GatewayProcess

    class OtherGateway(GatewayProcess):
        async def start(self) -> None:
            self.env["PYTHONPATH"] = str(code)
            with open(self.log, "ab") as err:
                self.proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=code,
                                             env=self.env, stdout=subprocess.DEVNULL, stderr=err)
            await self.wait_healthy()

    return OtherGateway


def process_tree(pid: int) -> list[tuple[int, list[str]]]:
    """`pid` and every process below it that is alive now, with the fields of their /proc/*/stat."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            tree.append((current, stats[current]))
        todo.extend(child for child, fields in stats.items() if int(fields[1]) == current)
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and of every process below it that is alive now."""
    return sum((int(fields[11]) + int(fields[12])) / TICK for _, fields in process_tree(pid))


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` and of every process below it (the recognition processes), MiB."""
    return sum(int(fields[21]) * PAGE for _, fields in process_tree(pid)) / 2**20


class Stamped:
    """Arrival times of an agent socket's messages (polled every 5 ms: finer than what is measured)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.at: list[float] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            while len(self.at) < len(self.ws.messages):
                self.at.append(now)
            await asyncio.sleep(0.005)

    def finals(self) -> list[tuple[float, dict]]:
        return self.captions(final=True)

    def captions(self, final: bool) -> list[tuple[float, dict]]:
        return [(self.at[i], m) for i, m in enumerate(self.ws.messages[:len(self.at)])
                if m.get("type") == "caption" and m["final"] is final and m["speaker"]["role"] == "caller"]

    def stop(self) -> None:
        self.task.cancel()


async def run_mode(base_url: str, pid: int, mode: str, calls: int, utterances: int, phrases: list[bytes]) -> dict:
    from gateway.auth import mint_caller_token
    from tests.support.clients import Agent, Caller, wait_until
    from tests.support.server import TEST_SECRET
    from tests.support.speech import SpeechTrack

    queue = "transcribed" if mode == "on" else "plain"
    parties = []
    for i in range(calls):
        agent = Agent(base_url, *AGENTS[i])
        await agent.connect()
        caller = Caller(base_url, mint_caller_token(TEST_SECRET, sub=f"bench-{mode}-{i}", name="Bench Caller",
                                                    extra={"queue": queue}))
        await caller.connect()
        mic = SpeechTrack()
        queued = await caller.start("video", audio=mic)
        offer = await agent.wait_offer(30)
        assert offer["call_id"] == queued["call_id"]
        await agent.accept(offer["call_id"], audio=SpeechTrack())
        parties.append((caller, agent, mic, Stamped(agent.ws)))
    for _, agent, _, _ in parties:
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) > 30, 60)
    await asyncio.sleep(2)  # settle
    marks = [len(agent.peer.sinks["video"].counters) for _, agent, _, _ in parties]
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for _, _, mic, _ in parties:
        for k in range(utterances):
            mic.say(phrases[k % len(phrases)], pause_s=1.5)
    for _, _, mic, _ in parties:
        await wait_until(lambda: not mic.saying, 30 + utterances * 6)
    if mode == "on":  # the last finals (an utterance the recogniser split or merged is counted as it came)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(len(s.finals()) < utterances for *_, s in parties):
            await asyncio.sleep(0.1)
    cpu1, t1, rss = cpu_seconds(pid), time.monotonic(), rss_mib(pid)
    window = t1 - t0
    latencies, partial_latencies, fps, lost = [], [], [], []
    for (caller, agent, mic, stamped), mark in zip(parties, marks):
        counters = [c for c in agent.peer.sinks["video"].counters[mark:] if c is not None]
        fps.append(len(counters) / window)
        expected = counters[-1] - counters[0] + 1 if counters else 0
        lost.append(max(0, expected - len(set(counters))))
        if mode == "on":
            # each utterance's final: the first final caption that arrived after its speech ended
            arrivals = sorted(arrived for arrived, _ in stamped.finals())
            for said in mic.said_at:
                later = [a for a in arrivals if a > said]
                if later:
                    latencies.append((later[0] - said) * 1000)
                    arrivals.remove(later[0])
            # each utterance's first partial: the first partial caption after its speech started, before it ended
            partials = sorted(arrived for arrived, _ in stamped.captions(final=False))
            for k, said in enumerate(mic.said_at):
                began = said - len(phrases[k % len(phrases)]) / 2 / SPEECH_RATE
                first = next((a for a in partials if began < a <= said + 0.5), None)
                if first is not None:
                    partial_latencies.append((first - began) * 1000)
        stamped.stop()
        await caller.hangup()
        await caller.close()
        await agent.close()
    await asyncio.sleep(2)
    result = {"cpu_s_per_call_minute": round((cpu1 - cpu0) / calls / window * 60, 2),
              "video_fps": round(statistics.mean(fps), 1), "video_frames_lost": sum(lost),
              "window_s": round(window, 1), "rss_mib": round(rss)}
    if mode == "on":
        result["final_latency_ms"] = {"n": len(latencies), "p50": round(statistics.median(latencies)),
                                      "p99": round(percentile(latencies, 99)), "max": round(max(latencies)),
                                      "each": [round(v) for v in latencies]}
        result["first_partial_ms"] = {
            "n": len(partial_latencies), "of": utterances * calls,
            "p50": round(statistics.median(partial_latencies)) if partial_latencies else None,
            "p99": round(percentile(partial_latencies, 99)) if partial_latencies else None}
    return result


async def run_gateway(code: Path | None, args: argparse.Namespace, phrases: list[bytes]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="callin-transcript-bench-"))
    queues = [{"name": "default"}, {"name": "plain"}, {"name": "transcribed", "transcript": "on"}]
    gateway = gateway_class(code)(f"sqlite+aiosqlite:///{work / 'callin.db'}", work, media_workers=0,
                                  queues=json.dumps(queues), transcript_workers=args.recognisers)
    await gateway.start()
    try:
        assert gateway.proc is not None
        results = {}
        for mode in MODES:
            results[mode] = await run_mode(gateway.base_url, gateway.proc.pid, mode, args.calls, args.utterances,
                                           phrases)
        return results
    finally:
        gateway.close()


async def main(args: argparse.Namespace) -> dict:
    from tests.support.speech import PHRASES, synthesize

    phrases = [synthesize(p) for p in PHRASES]
    load_before = os.getloadavg()
    runs = {}
    if args.baseline is not None:
        runs["baseline"] = await run_gateway(args.baseline, args, phrases)
    runs["this"] = await run_gateway(None, args, phrases)
    return {"calls": args.calls, "utterances_per_call": args.utterances, "recognisers": args.recognisers,
            "baseline": str(args.baseline) if args.baseline else None, "runs": runs,
            "load_before": [round(v, 1) for v in load_before], "load_after": [round(v, 1) for v in os.getloadavg()]}


def print_run(name: str, modes: dict) -> None:
    for mode, row in modes.items():
        line = (f"{name:8s} transcript {mode:3s}  gateway CPU {row['cpu_s_per_call_minute']:5.2f} s per call-minute"
                f"   video {row['video_fps']:4.1f} fps, {row['video_frames_lost']} frames lost"
                f"   memory {row['rss_mib']} MiB")
        if "final_latency_ms" in row:
            lat, part = row["final_latency_ms"], row["first_partial_ms"]
            line += (f"\n{'':8s}   final caption after speech ends p50 {lat['p50']} ms p99 {lat['p99']} ms "
                     f"(n={lat['n']}); first partial after speech starts p50 {part['p50']} ms p99 {part['p99']} ms "
                     f"({part['n']} of {part['of']} utterances)")
        print(line)
    off, on = modes["off"], modes["on"]
    if off["cpu_s_per_call_minute"]:
        print(f"{name:8s} CPU ratio on/off: {on['cpu_s_per_call_minute'] / off['cpu_s_per_call_minute']:.2f}")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2, help="calls at once per mode (at most 3: the demo staff)")
    parser.add_argument("--utterances", type=int, default=6, help="phrases each caller says per mode")
    parser.add_argument("--recognisers", type=int, default=1, help="CALLIN_TRANSCRIPT_WORKERS of the gateway")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="first run the gateway of another checkout (its root) the same way, as the baseline")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= len(AGENTS):
        parser.error(f"--calls must be 1..{len(AGENTS)}")
    if args.baseline is not None and not (args.baseline / "signaling" / "cli.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a Callin checkout (no signaling/cli.py)")
    ensure_loopback_namespace()
    result = asyncio.run(main(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"load average before: {result['load_before']}, after: {result['load_after']}")
    print(f"{args.calls} calls at once per mode (30 fps video + speech), {args.utterances} utterances per caller, "
          f"{args.recognisers} recognition process(es)")
    for name, modes in result["runs"].items():
        print_run(name, modes)
    if "baseline" in result["runs"]:
        base, this = result["runs"]["baseline"], result["runs"]["this"]
        extra = [run["on"]["cpu_s_per_call_minute"] - run["off"]["cpu_s_per_call_minute"] for run in (base, this)]
        print(f"this/baseline: transcript CPU (on - off) {extra[1] / extra[0]:.2f}, "
              f"CPU with transcript {this['on']['cpu_s_per_call_minute'] / base['on']['cpu_s_per_call_minute']:.2f}, "
              f"final p50 {this['on']['final_latency_ms']['p50'] / base['on']['final_latency_ms']['p50']:.2f}, "
              f"final p99 {this['on']['final_latency_ms']['p99'] / base['on']['final_latency_ms']['p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
