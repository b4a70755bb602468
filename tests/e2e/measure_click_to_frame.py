"""Click-to-first-frame in real browsers: the caller taps "Video call" in the demo app's widget, the agent
console (auto-answer on) shows the first decoded frame of the caller's camera. Prints each call and the p50.

    unshare -rn sh -c 'ip link set lo up; python -m tests.e2e.measure_click_to_frame --calls 7'

The gateway runs in a child process (its own event loop, as in production), not in this process, which
drives the browser. Both pages run in one Chromium, so their clocks agree: the click is the click event's timestamp in the caller
page (performance.timeOrigin + event.timeStamp), the first frame is the console's `callin:firstframe` event
(the earliest of the video element's first frame, requestVideoFrameCallback and getStats framesDecoded > 0).
With --accept-after S the agent instead clicks Accept S seconds after the ring (the console prepares the
call's peer connection while it rings), and "accept -> first frame" is the figure to read. The auto-answer
takes the agent's reaction time out; everything else (permissions prompt auto-accepted, token, queueing, ringing,
both peer connections, the first keyframe) is in the figure. The device's location no longer is: the widget starts
the call on the click and sends the location (call.location) when the browser has it; the "location" step says when
that was (before, the call waited for it, up to 8 s on a real phone). The widget is
opened before the click, as a caller would (its socket and its prepared peer connection are ready by then).

Each call also prints where its time went, in ms after the click, on the one wall clock of this machine: the caller
client's User Timing marks (callin:prepared, media, call-start, offer-sent, answer, queued, location, ice-connected,
connected),
the gateway's steps (tests/e2e/gateway_timeline.py: call started and recorded, each leg's offer, answer, ICE, DTLS,
the caller's first video packet and keyframe, the first video packet sent to the agent; media in the server's
process only) and the console's (ring, accepted, first frame); the p50 of each step closes the run.

    --baseline DIR   measures another checkout (e.g. /work/main) too, one call each in turn in the same run (both
                     meet the same load), and prints the ratio of the p50s: the figure to trust on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
from collections.abc import AsyncIterator
from typing import Any
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from playwright.async_api import async_playwright  # noqa: E402

from tests.e2e.browser import DESKTOP, PHONE, POSITION, eventually, launch, new_page, open_console, open_demo, open_widget  # noqa: E402
from tests.support.server import running_gateway  # noqa: E402

CLICK_PROBE = """
window.__clicks = [];
document.addEventListener("click", (event) => {
  const target = event.composedPath()[0];
  if (target && target.closest && target.closest("[data-call-type]")) window.__clicks.push(performance.timeOrigin + event.timeStamp);
}, true);
"""
# A call whose media had to be set up again (a second offer) is not the figure it seems: say so.
WATCH_RECOVERIES = """
window.__recoveries = [];
Callin.widgets[0].client.addEventListener("mediarecovering", (e) => window.__recoveries.push(e.detail.cause));
"""
# The caller client's User Timing marks (callin:<step>, the latest of each), on the wall clock.
CALLER_MARKS = """
Object.fromEntries(performance.getEntriesByType("mark").filter((m) => m.name.startsWith("callin:"))
  .map((m) => [m.name.slice(7), performance.timeOrigin + m.startTime]))
"""
# The breakdown's columns: (label, where, step); where: caller (the widget's marks), gateway (gateway_timeline),
# console (the console's timings since its accept, or its ring event).
STEPS = (
    ("prepared", "caller", "prepared"),
    ("media", "caller", "media"),
    ("call.start", "caller", "call-start"),
    ("offer", "caller", "offer-sent"),
    ("gw start", "gateway", "call.start"),
    ("gw durable", "gateway", "call.durable"),
    ("gw offer", "gateway", "caller.offer"),
    ("gw answer", "gateway", "caller.answer"),
    ("answer", "caller", "answer"),
    ("queued", "caller", "queued"),
    ("location", "caller", "location"),
    ("ring", "console", "ring"),
    ("gw ice", "gateway", "caller.ice"),
    ("ice", "caller", "ice-connected"),
    ("gw dtls", "gateway", "caller.dtls"),
    ("connected", "caller", "connected"),
    ("gw rtp", "gateway", "caller.rtp"),
    ("gw key", "gateway", "caller.keyframe"),
    ("agent offer", "gateway", "agent.offer"),
    ("agent dtls", "gateway", "agent.dtls"),
    ("accepted", "console", "accepted"),
    ("to agent", "gateway", "agent.video"),
    ("frame", "console", "firstFrame"),
)
CONSOLE_PROBE = """
window.__frames = []; window.__rings = [];
window.addEventListener("callin:firstframe", (e) => window.__frames.push(e.detail));
window.addEventListener("callin:ring", (e) => window.__rings.push(e.detail));
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * q
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


ROOT = Path(__file__).resolve().parents[2]
TIMELINE = "timeline "  # the gateway child's lines: timeline {"call", "step", "at"}


class GatewayProcess:
    def __init__(self, base_url: str, root: Path = ROOT) -> None:
        self.base_url = base_url
        self.root = root
        self.steps: dict[str, dict[str, float]] = {}  # call id -> the gateway's steps (gateway_timeline)

    async def read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode().strip()
            if text.startswith(TIMELINE):
                entry = json.loads(text[len(TIMELINE):])
                self.steps.setdefault(entry["call"], {}).setdefault(entry["step"], entry["at"])


@contextlib.asynccontextmanager
async def gateway_process(relay_mode: str, media_workers: int = 0, root: Path = ROOT) -> AsyncIterator[GatewayProcess]:
    """The test gateway (demo mode, loopback media) in a child process, with the code (and web pages) of the checkout
    at `root`; yields once it serves."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.e2e.measure_click_to_frame", "--serve", "--relay-mode", relay_mode,
        "--media-workers", str(media_workers), cwd=str(root), env={**os.environ, "PYTHONPATH": str(root)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert child.stdout is not None
        line = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().strip()
        if not line.startswith("http"):
            raise RuntimeError(f"the gateway did not start: {line!r}")
        gateway = GatewayProcess(line, root)
        reader = asyncio.ensure_future(gateway.read(child.stdout))
        try:
            yield gateway
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 10)
            except asyncio.TimeoutError:
                child.kill()
                await child.wait()


async def serve(relay_mode: str, media_workers: int = 0) -> None:
    from tests.e2e import gateway_timeline

    gateway_timeline.install(lambda call_id, step, at: print(
        TIMELINE + json.dumps({"call": call_id, "step": step, "at": at}), flush=True))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running_gateway(relay_mode=relay_mode, media_workers=media_workers) as gateway:
        print(gateway.base_url, flush=True)
        await stop.wait()


def breakdown(click: float, marks: dict[str, float], gateway: dict[str, float], ring: dict[str, Any],
              frame: dict[str, Any]) -> dict[str, float]:
    """Each step of STEPS that was seen, in ms after the click (negative: before it), in the order they happened."""
    accepted = frame["at"] - frame["sinceAcceptMs"]
    console = {"ring": ring["at"], **{name: accepted + ms for name, ms in (frame.get("timings") or {}).items()}}
    where = {"caller": marks, "gateway": gateway, "console": console}
    seen = {label: where[side][step] - click for label, side, step in STEPS if step in where[side]}
    return dict(sorted(seen.items(), key=lambda kv: kv[1]))


class Side:
    """One gateway being measured: its console (auto-answer unless Accept is clicked) and its caller's page."""

    def __init__(self, label: str, gateway: GatewayProcess) -> None:
        self.label = label
        self.gateway = gateway
        self.results: list[dict[str, Any]] = []

    async def open(self, browser: Any, auto_answer: bool) -> None:
        self.agent_ctx, self.agent = await new_page(browser, self.gateway.base_url, viewport=DESKTOP)
        await self.agent.add_init_script(CONSOLE_PROBE)
        await open_console(self.agent, auto_answer=auto_answer)
        self.caller_ctx, self.caller = await new_page(browser, self.gateway.base_url, viewport=PHONE,
                                                      geolocation=POSITION, is_mobile=True)
        await self.caller.add_init_script(CLICK_PROBE)

    async def close(self) -> None:
        await self.caller_ctx.close()
        await self.agent_ctx.close()


async def one_call(side: Side, n: int, hold_s: float, accept_after: float | None) -> dict[str, Any]:
    """One call on `side`, from a fresh demo page: the click, the first frame at its console, the hang-up."""
    caller, agent, gateway = side.caller, side.agent, side.gateway
    await open_demo(caller)  # a fresh page for every call
    await open_widget(caller)  # token + WebSocket + hello happen when the panel opens, before the click
    frames_before = await agent.evaluate("window.__frames.length")
    await caller.evaluate(WATCH_RECOVERIES)
    await caller.locator('callin-widget .option[data-call-type="video"]').click()
    if accept_after is not None:
        await agent.wait_for_selector("#view-ringing:not([hidden])")
        await asyncio.sleep(accept_after)
        await agent.click("#accept-button")
    try:
        await eventually(lambda: agent.evaluate(f"window.__frames.length > {frames_before}"), timeout=20,
                         what=f"first frame of call {n}")
    except AssertionError:
        print("console:", await agent.evaluate("callinConsole.state"),
              await agent.evaluate("callinConsole.peerConnection && [callinConsole.peerConnection.connectionState, callinConsole.peerConnection.iceConnectionState, callinConsole.peerConnection.signalingState]"),
              await agent.evaluate("callinConsole.stats()"), file=sys.stderr)
        print("caller:", await caller.evaluate("(() => { const c = Callin.widgets[0].client; const pc = c.peerConnection; return [c.state, c.callId, pc && pc.connectionState, pc && pc.iceConnectionState, pc && pc.signalingState]; })()"),
              await caller.evaluate("Callin.widgets[0].client.getStats()"), file=sys.stderr)
        raise
    click = await caller.evaluate("window.__clicks[window.__clicks.length - 1]")
    frame = await agent.evaluate("window.__frames[window.__frames.length - 1]")
    ring = await agent.evaluate("window.__rings[window.__rings.length - 1]")
    call_id = await caller.evaluate("Callin.widgets[0].client.callId")
    marks = await caller.evaluate(CALLER_MARKS)
    steps = breakdown(click, marks, gateway.steps.get(call_id, {}), ring, frame)
    recoveries = await caller.evaluate("window.__recoveries")
    result = {
        "click_to_frame_ms": frame["at"] - click,
        "click_to_ring_ms": ring["at"] - click,
        "accept_to_frame_ms": frame["sinceAcceptMs"],
        "steps": steps,
    }
    name = f"{side.label + ' ' if side.label else ''}{'call ' + str(n) if n > 0 else 'warm-up'}"
    print(f"{name}: click -> first frame {result['click_to_frame_ms']:6.0f} ms   "
          f"(click -> ring {result['click_to_ring_ms']:5.0f} ms, accept -> frame {result['accept_to_frame_ms']:5.0f} ms)\n"
          f"    after the click: {'  '.join(f'{label} {ms:.0f}' for label, ms in steps.items())}"
          + (f"\n    media set up again: {recoveries}" if recoveries else ""),
          flush=True)
    await asyncio.sleep(hold_s)
    await caller.locator('callin-widget [data-action="hangup"]').click()
    await agent.wait_for_selector("#view-ended:not([hidden])")
    await eventually(lambda: agent.evaluate("document.getElementById('status-pill').dataset.status === 'available'"),
                     what="the agent available again")
    await eventually(lambda: caller.evaluate("Callin.widgets[0].client.state === 'ended'"), what="the caller's end")
    return result


async def measure(calls: int, hold_s: float, relay_mode: str, warmup: int = 1, accept_after: float | None = None,
                  media_workers: int = 0, baseline: Path | None = None) -> list[Side]:
    """`calls` calls on this checkout's gateway; with `baseline` (another checkout, e.g. main's), as many on its
    gateway too, alternately (baseline, this, baseline, ...), so that both meet the same load."""
    async with contextlib.AsyncExitStack() as stack:
        sides = []
        if baseline is not None:
            sides.append(Side("baseline", await stack.enter_async_context(
                gateway_process(relay_mode, media_workers, baseline))))
        sides.append(Side("this" if baseline is not None else "",
                          await stack.enter_async_context(gateway_process(relay_mode, media_workers))))
        pw = await stack.enter_async_context(async_playwright())
        browser = await launch(pw)
        for side in sides:
            await side.open(browser, auto_answer=accept_after is None)
        for n in range(1 - warmup, calls + 1):
            for side in sides:
                result = await one_call(side, n, hold_s, accept_after)
                if n > 0:
                    side.results.append(result)
        for side in sides:
            await side.close()
        await browser.close()
    return sides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=7, help="calls to measure (at least 5)")
    parser.add_argument("--hold", type=float, default=1.0, help="seconds each call stays up after its first frame")
    parser.add_argument("--relay-mode", choices=["packet", "frame"], default="packet")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls first (a fresh gateway's first call "
                        "pays one-off costs)")
    parser.add_argument("--accept-after", type=float, default=None, metavar="S",
                        help="no auto-answer: click Accept S seconds after the ring")
    parser.add_argument("--media-workers", type=int, default=0, metavar="N",
                        help="media in N worker processes, as `callin serve` runs it (one per CPU); 0: in the server's "
                             "process, as `callin demo` and the tests run it")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="another checkout (e.g. main's) measured alternately with this one in the same run")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.relay_mode, args.media_workers))
        return 0
    if args.calls < 5:
        parser.error("measure at least 5 calls")
    interfaces = {name for _, name in socket.if_nameindex()}
    if not interfaces <= {"lo"} and os.environ.get("CALLIN_ALLOW_HOST_NETWORK") != "1":
        print("run inside a loopback-only network namespace: unshare -rn sh -c 'ip link set lo up; python -m "
              "tests.e2e.measure_click_to_frame'", file=sys.stderr)
        return 2
    sides = asyncio.run(measure(args.calls, args.hold, args.relay_mode, args.warmup, args.accept_after,
                                args.media_workers, args.baseline))
    for side in sides:
        if side.label:
            print(f"{side.label} ({side.gateway.root}):")
        for key, label in (("click_to_frame_ms", "click -> first frame"),
                           ("click_to_ring_ms", "click -> ring at the agent"), ("accept_to_frame_ms", "accept -> first frame")):
            values = [r[key] for r in side.results]
            if args.accept_after is not None and key == "click_to_frame_ms":
                label += f" (incl. {args.accept_after:g} s ring)"
            print(f"{label:28s} p50 {statistics.median(values):6.0f} ms   p90 {percentile(values, 0.9):6.0f} ms   "
                  f"min {min(values):6.0f} ms   max {max(values):6.0f} ms   (n={len(values)}, relay {args.relay_mode}, "
                  f"media workers {args.media_workers})")
        print("breakdown, p50 ms after the click:")
        for label, _, _ in STEPS:
            values = [r["steps"][label] for r in side.results if label in r["steps"]]
            if values:
                print(f"  {label:12s} {statistics.median(values):6.0f}   (p90 {percentile(values, 0.9):6.0f}, n={len(values)})")
    if len(sides) == 2:
        key, label = ("accept_to_frame_ms", "accept") if args.accept_after is not None else ("click_to_frame_ms", "click")
        ours, theirs = (statistics.median([r[key] for r in side.results]) for side in sides[::-1])
        print(f"{label} -> first frame, p50 this / baseline: {ours:.0f} / {theirs:.0f} ms = {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
