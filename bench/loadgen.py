"""Load generator: N concurrent two-way calls through a gateway, measured without decoding.

Run by bench/run.py (one or more worker processes, pinned away from the gateway's core), or by hand:
    python -m bench.loadgen --url http://127.0.0.1:8080 --secret S --calls 10 --hold 10 --agent-offset 0

Prints one JSON object: per-call measurements and the worker's own CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from bench.media import EncodedLoop, FrameMeter, ReplayTrack, answer_keyframe_requests  # noqa: E402
from gateway.auth import mint_caller_token  # noqa: E402
from gateway.media import hooks  # noqa: E402
from tests.support.clients import LOOPBACK, WsClient  # noqa: E402

FREEZE_S = 0.2


@dataclass
class CallResult:
    ok: bool = False
    error: str | None = None
    request_to_offered_ms: float | None = None
    accept_to_first_frame_ms: float | None = None
    video_sent: int = 0
    video_received: int = 0
    video_identified: int = 0
    video_fps: float = 0.0
    video_packets_received: int = 0
    video_packets_expected: int = 0
    audio_sent: int = 0
    audio_received: int = 0
    audio_packets_expected: int = 0
    audio_back_sent: int = 0
    audio_back_received: int = 0
    freezes: int = 0
    video_delay_ms: list[float] = field(default_factory=list)
    audio_delay_ms: list[float] = field(default_factory=list)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def tap(pc: RTCPeerConnection, kind: str, meter: FrameMeter) -> None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            hooks.tap_receiver(transceiver.receiver, meter)


async def offer(pc: RTCPeerConnection, addresses: list[str]) -> str:
    hooks.restrict_host_addresses(pc, addresses)
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


def delays(track: ReplayTrack, meter: FrameMeter, period: int, window: tuple[float, float]) -> list[float]:
    """Match each identified arrival to the latest send of that loop index before it."""
    out = []
    sent = track.sent_at
    for arrival, index in zip(meter.arrivals, meter.indices):
        if index is None or not (window[0] <= arrival <= window[1]):
            continue
        n = ((len(sent) - 1 - index) // period) * period + index
        while n >= 0 and sent[n] > arrival:
            n -= period
        if n >= 0:
            out.append((arrival - sent[n]) * 1000)
    return out


class Call:
    """One caller and one agent through the Callin protocol."""

    def __init__(self, url: str, secret: str, index: int, agent: str, loop: EncodedLoop, addresses: list[str]) -> None:
        self.url, self.secret, self.index, self.agent_name = url, secret, index, agent
        self.loop, self.addresses = loop, addresses
        self.result = CallResult()
        self.caller_pc = new_pc()
        self.agent_pc = new_pc()
        self.video = ReplayTrack("video", loop)
        self.audio = ReplayTrack("audio", loop)
        self.agent_audio = ReplayTrack("audio", loop)
        self.video_meter = FrameMeter("video", loop)
        self.audio_meter = FrameMeter("audio", loop)
        self.back_meter = FrameMeter("audio", loop)
        self.caller_ws = WsClient(url, "/ws/caller")
        self.agent_ws = WsClient(url, "/ws/agent")

    async def agent_ready(self, password: str) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/api/v1/agent/login",
                                 json={"username": self.agent_name, "password": password}) as r:
                token = (await r.json())["token"]
        await self.agent_ws.connect()
        await self.agent_ws.request({"type": "hello", "token": token})  # signed in, away

    async def place(self, lock_path: str) -> None:
        # Calls are placed one at a time across all workers, each while its own agent is the only available one,
        # so every call lands at the agent of the same worker (the router picks any available agent).
        async with file_lock(lock_path):
            await self._place()
        deadline = time.monotonic() + 20
        while not self.video_meter.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.video_meter.arrivals:
            self.result.accept_to_first_frame_ms = (self.video_meter.arrivals[0] - self.t_accept) * 1000

    async def _place(self) -> None:
        await self.agent_ws.request({"type": "agent.status", "status": "available"})
        await self.caller_ws.connect()
        await self.caller_ws.request({"type": "hello", "token": mint_caller_token(self.secret, sub=f"load-{self.index}")})
        self.caller_pc.addTrack(self.audio)
        sender = self.caller_pc.addTransceiver(self.video, direction="sendonly").sender
        answer_keyframe_requests(sender, self.video)
        tap(self.caller_pc, "audio", self.back_meter)
        t_request = time.monotonic()
        queued = await self.caller_ws.request({"type": "call.start", "call_type": "video"})
        answer = await self.caller_ws.request({"type": "sdp.offer", "sdp": await offer(self.caller_pc, self.addresses)})
        await self.caller_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        offered = await self.agent_ws.wait(lambda m: m.get("type") == "call.offered", timeout=30)
        self.result.request_to_offered_ms = (time.monotonic() - t_request) * 1000
        call_id = offered["call_id"]
        assert call_id == queued["call_id"]
        self.t_accept = time.monotonic()
        await self.agent_ws.request({"type": "call.accept", "call_id": call_id})
        self.agent_pc.addTrack(self.agent_audio)
        self.agent_pc.addTransceiver("video", direction="recvonly")
        tap(self.agent_pc, "video", self.video_meter)
        tap(self.agent_pc, "audio", self.audio_meter)
        answer = await self.agent_ws.request({"type": "sdp.offer", "call_id": call_id,
                                              "sdp": await offer(self.agent_pc, self.addresses)})
        await self.agent_pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self.call_id = call_id

    def measure(self, window: tuple[float, float]) -> None:
        r, (start, end) = self.result, window
        seconds = end - start
        in_window = [t for t in self.video_meter.arrivals if start <= t <= end]
        r.video_received = len(in_window)
        r.video_sent = sum(1 for t in self.video.sent_at if start <= t <= end)
        r.video_fps = len(in_window) / seconds
        r.video_identified = sum(1 for t, i in zip(self.video_meter.arrivals, self.video_meter.indices)
                                 if i is not None and start <= t <= end)
        r.freezes = sum(1 for a, b in zip(in_window, in_window[1:]) if b - a > FREEZE_S)
        r.video_packets_received = self.video_meter.packets
        r.video_packets_expected = self.video_meter.expected_packets()
        r.audio_sent = sum(1 for t in self.audio.sent_at if start <= t <= end)
        r.audio_received = sum(1 for t in self.audio_meter.arrivals if start <= t <= end)
        r.audio_packets_expected = self.audio_meter.expected_packets()
        r.audio_back_sent = sum(1 for t in self.agent_audio.sent_at if start <= t <= end)
        r.audio_back_received = sum(1 for t in self.back_meter.arrivals if start <= t <= end)
        r.video_delay_ms = delays(self.video, self.video_meter, len(self.loop.delta), window)
        r.audio_delay_ms = delays(self.audio, self.audio_meter, len(self.loop.opus), window)
        r.ok = r.video_received > 0 and r.audio_received > 0

    async def close(self) -> None:
        for ws in (self.caller_ws, self.agent_ws):
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - teardown of a load test
                pass
        await self.caller_pc.close()
        await self.agent_pc.close()


class file_lock:  # noqa: N801 - used as `async with file_lock(path)`
    """An exclusive lock shared by the worker processes (flock), taken without blocking the event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    async def __aenter__(self) -> None:
        import fcntl

        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                await asyncio.sleep(0.005)

    async def __aexit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = EncodedLoop.load()
    addresses = [args.address]
    calls = [Call(args.url, args.secret, args.agent_offset + i, f"{args.agent_prefix}{args.agent_offset + i}", loop,
                  addresses) for i in range(args.calls)]
    # Agents sign in one at a time and each takes the next call: a call is placed once its agent is ready.
    for call in calls:
        await call.agent_ready(args.agent_password)
    errors = 0
    for call in calls:
        try:
            await asyncio.wait_for(call.place(args.lock), 60)
        except Exception as exc:  # noqa: BLE001 - reported per call
            call.result.error = f"{type(exc).__name__}: {exc}"[:300]
            errors += 1
        await asyncio.sleep(args.stagger)
    # Wait until the sweep's start time (all workers measure the same window).
    now_wall = time.time()
    if args.start_at > now_wall:
        await asyncio.sleep(args.start_at - now_wall)
    await asyncio.sleep(args.warmup)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.hold)
    cpu1, t1 = cpu_seconds(), time.monotonic()
    for call in calls:
        if call.result.error is None:
            call.measure((t0, t1))
    for call in calls:
        await call.close()
    return {
        "calls": [asdict(c.result) for c in calls],
        "errors": errors,
        "window_s": t1 - t0,
        "worker_cpu": (cpu1 - cpu0) / (t1 - t0),
        "pid": os.getpid(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--hold", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--stagger", type=float, default=0.05)
    parser.add_argument("--start-at", type=float, default=0, help="wall-clock time at which the warm-up starts")
    parser.add_argument("--agent-prefix", default="bench")
    parser.add_argument("--agent-offset", type=int, default=0)
    parser.add_argument("--agent-password", default="bench-password")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--lock", default="/tmp/callin-bench.lock", help="lock file shared by the workers")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
