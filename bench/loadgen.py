"""Load generator: N concurrent two-way calls through a gateway, measured without decoding.

Run by bench/run.py (one or more worker processes, pinned away from the gateway's core), or by hand:
    python -m bench.loadgen --url http://127.0.0.1:8080 --secret S --calls 10 --hold 10 --agent-offset 0
    python -m bench.loadgen --janus http://127.0.0.1:8088/janus --admin-key K --address 127.0.0.2 --calls 10

`--janus` places the same calls through Janus's VideoRoom plugin (HTTP API), for the comparison in bench/run.py.
`--generator blaster` (bench.run's default) hands each call's media, once aiortc has set it up, to the C thread of
bench/blaster.py (bench/_blaster.c): 50+ calls on one core instead of ~8-12 with aiortc's peers.

Prints one JSON object: per-call measurements and the worker's own CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from bench.media import EncodedLoop, FrameMeter, ReplayTrack, answer_keyframe_requests  # noqa: E402
from gateway.auth import mint_caller_token  # noqa: E402
from gateway.media import aiortc_internals as internals  # noqa: E402
from tests.support.clients import WsClient  # noqa: E402
from signaling.looplag import LoopLag  # noqa: E402

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
    ended: str | None = None  # the call ended by the system during the run: its reason (e.g. media_failed)
    video_delay_ms: list[float] = field(default_factory=list)
    audio_delay_ms: list[float] = field(default_factory=list)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def tap(pc: RTCPeerConnection, kind: str, meter: FrameMeter) -> None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            internals.tap_receiver(transceiver.receiver, meter)


async def offer(pc: RTCPeerConnection, addresses: list[str]) -> str:
    internals.restrict_host_addresses(pc, addresses)
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


class MeasuredCall:
    """What every system's call shares: the replayed media, the meters at the receivers, and the measurement.

    The caller sends `video` + `audio` (measured at the agent by `video_meter` and `audio_meter`); the agent sends
    `agent_audio` (measured at the caller by `back_meter`).
    """

    def __init__(self, index: int, loop: EncodedLoop, addresses: list[str]) -> None:
        self.index, self.loop, self.addresses = index, loop, addresses
        self.result = CallResult()
        self.video = ReplayTrack("video", loop)
        self.audio = ReplayTrack("audio", loop)
        self.agent_audio = ReplayTrack("audio", loop)
        self.video_meter = FrameMeter("video", loop)
        self.audio_meter = FrameMeter("audio", loop)
        self.back_meter = FrameMeter("audio", loop)
        self.t_accept = 0.0

    async def wait_first_frame(self, timeout: float = 20) -> None:
        """accept_to_first_frame_ms: from `t_accept` to the first caller video frame at the agent."""
        deadline = time.monotonic() + timeout
        while not self.video_meter.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.video_meter.arrivals:
            self.result.accept_to_first_frame_ms = (self.video_meter.arrivals[0] - self.t_accept) * 1000

    def measure(self, window: tuple[float, float], blaster: Any = None) -> None:
        if blaster is not None:  # the media was the blaster's from the end of the set-up on
            blaster.measure(self, window)
            return
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


class Call(MeasuredCall):
    """One caller and one agent through the Callin protocol."""

    def __init__(self, url: str, secret: str, index: int, agent: str, loop: EncodedLoop, addresses: list[str]) -> None:
        super().__init__(index, loop, addresses)
        self.url, self.secret, self.agent_name = url, secret, agent
        self.caller_pc = new_pc()
        self.agent_pc = new_pc()
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
        await self.wait_first_frame()

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

    def measure(self, window: tuple[float, float], blaster: Any = None) -> None:
        super().measure(window, blaster)
        ended = [m for m in self.caller_ws.messages + self.agent_ws.messages if m.get("type") == "call.ended"]
        if ended:
            self.result.ended = str(ended[0].get("reason"))
            self.result.ok = False

    async def close(self) -> None:
        if getattr(self, "call_id", None) and not self.result.ended:
            try:  # hang up first: a peer connection closed under a live call is recorded as media_failed
                await self.caller_ws.request({"type": "call.hangup", "call_id": self.call_id}, timeout=5)
            except Exception:  # noqa: BLE001 - teardown of a load test
                pass
        for ws in (self.caller_ws, self.agent_ws):
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - teardown of a load test
                pass
        await self.caller_pc.close()
        await self.agent_pc.close()


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One session on Janus's HTTP API: requests by POST, events by long-poll GET. With session_timeout = 0 (as
    bench/janus.py configures it) no keepalives are needed."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url
        self.id: int | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._signals: dict[tuple[int, str], asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.url + path, json=body) as r:
            reply = await r.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply.get('error')}")
        return reply

    async def create(self) -> None:
        reply = await self._post("", {"janus": "create", "transaction": secrets.token_hex(6)})
        self.id = reply["data"]["id"]
        self._poller = asyncio.create_task(self._poll())

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> int:
        reply = await self._post(f"/{self.id}", {"janus": "attach", "plugin": plugin,
                                                 "transaction": secrets.token_hex(6)})
        return reply["data"]["id"]

    async def message(self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None,
                      timeout: float = 20) -> tuple[dict[str, Any], dict[str, str] | None]:
        """A plugin request; answered either at once ("success", e.g. VideoRoom's create) or, after an "ack", by an
        event carrying the same transaction on the long poll. Returns the plugin's data and the event's JSEP."""
        transaction = secrets.token_hex(6)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future  # before the POST: the event can beat the POST's reply
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        try:
            reply = await self._post(f"/{self.id}/{handle}", request)
            event = reply if reply.get("janus") == "success" else await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(transaction, None)
        data = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data.get('error_code')} {data['error']}")
        return data, event.get("jsep")

    def _signal(self, handle: int, kind: str) -> asyncio.Future[dict[str, Any]]:
        key = (handle, kind)
        if key not in self._signals:
            self._signals[key] = asyncio.get_running_loop().create_future()
        return self._signals[key]

    async def webrtcup(self, handle: int, timeout: float = 20) -> None:
        """Wait for the handle's peer connection to be up (ICE + DTLS done); fail at once on a hangup."""
        up, hangup = self._signal(handle, "webrtcup"), self._signal(handle, "hangup")
        done, _ = await asyncio.wait([up, hangup], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if up in done:
            return
        if hangup in done:
            raise JanusError(f"hangup before webrtcup: {hangup.result().get('reason')}")
        raise JanusError("no webrtcup")

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.id}", params={"maxev": "10"}) as r:
                    events = await r.json(content_type=None)
            except (aiohttp.ClientError, OSError, ValueError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                if event.get("janus") == "error":  # e.g. the session is gone: stop rather than spin
                    return
                self._dispatch(event)

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        pending = self._pending.get(event.get("transaction", ""))
        if kind == "event" and pending is not None:
            if not pending.done():
                pending.set_result(event)
            return
        sender = event.get("sender")
        if sender is not None and kind in ("webrtcup", "hangup"):
            signal = self._signal(sender, kind)
            if not signal.done():
                signal.set_result(event)

    async def destroy(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.id is not None:
            try:
                await asyncio.wait_for(self._post(f"/{self.id}", {"janus": "destroy",
                                                                  "transaction": secrets.token_hex(6)}), 2)
            except Exception:  # noqa: BLE001 - teardown of a load test
                pass


class JanusCall(MeasuredCall):
    """One caller and one agent through Janus's VideoRoom plugin: a room per call, the caller publishes VP8 + Opus,
    the agent publishes Opus, and each subscribes to the other (so each side has a publishing and a subscribing
    peer connection, and its own Janus session)."""

    def __init__(self, url: str, admin_key: str, index: int, loop: EncodedLoop, addresses: list[str]) -> None:
        super().__init__(index, loop, addresses)
        self.url, self.admin_key = url, admin_key
        self.room = 1000 + index  # Janus restarts for every measured point; indices are unique across workers
        self.caller_pub_pc, self.caller_sub_pc = new_pc(), new_pc()
        self.agent_pub_pc, self.agent_sub_pc = new_pc(), new_pc()
        self.http: aiohttp.ClientSession | None = None
        self.caller: JanusSession | None = None
        self.agent: JanusSession | None = None

    async def place(self, lock_path: str) -> None:
        # One call set up at a time across all workers, as with Callin, so set-up times are comparable.
        async with file_lock(lock_path):
            await self._place()
        await self.wait_first_frame()

    async def _place(self) -> None:
        self.http = aiohttp.ClientSession()
        t_start = time.monotonic()
        # The caller: a session, a room for the call, and its VP8 + Opus published (up once Janus says webrtcup).
        self.caller = JanusSession(self.http, self.url)
        await self.caller.create()
        caller_pub = await self.caller.attach()
        await self.caller.message(caller_pub, {"request": "create", "room": self.room, "admin_key": self.admin_key,
                                               "publishers": 2, "bitrate": 0, "fir_freq": 0, "audiocodec": "opus",
                                               "videocodec": "vp8", "is_private": True, "permanent": False})
        self.caller_pub_pc.addTransceiver(self.audio, direction="sendonly")
        video_sender = self.caller_pub_pc.addTransceiver(self.video, direction="sendonly").sender
        answer_keyframe_requests(video_sender, self.video)  # Janus's PLI when a subscriber starts -> a keyframe
        caller_feed = await self._publish(self.caller, caller_pub, self.caller_pub_pc, "caller")
        # The agent subscribes to the caller. request_to_offered_ms ends when Janus has set up the agent's
        # subscription and offers it to the agent (its SDP offer arrives): Callin's equivalent is call.offered
        # reaching the agent. Unlike Callin's, it includes the caller's ICE + DTLS, because a subscription
        # needs the publisher's media up (webrtcup) first. accept_to_first_frame_ms starts at the agent's
        # subscribe request, where Callin's starts at call.accept: both then cover an SDP exchange, ICE + DTLS
        # on the agent's leg, the keyframe request and the keyframe.
        self.agent = JanusSession(self.http, self.url)
        await self.agent.create()
        agent_sub = await self.agent.attach()
        self.t_accept = time.monotonic()
        offered = await self._subscribe(self.agent, agent_sub, self.agent_sub_pc, caller_feed,
                                        {"video": self.video_meter, "audio": self.audio_meter})
        self.result.request_to_offered_ms = (offered - t_start) * 1000
        # The agent publishes its Opus; the caller subscribes to it.
        agent_pub = await self.agent.attach()
        self.agent_pub_pc.addTransceiver(self.agent_audio, direction="sendonly")
        agent_feed = await self._publish(self.agent, agent_pub, self.agent_pub_pc, "agent")
        caller_sub = await self.caller.attach()
        await self._subscribe(self.caller, caller_sub, self.caller_sub_pc, agent_feed, {"audio": self.back_meter})

    async def _publish(self, session: JanusSession, handle: int, pc: RTCPeerConnection, display: str) -> int:
        joined, _ = await session.message(handle, {"request": "join", "ptype": "publisher", "room": self.room,
                                                   "display": display})
        _, jsep = await session.message(handle, {"request": "publish"},
                                        jsep={"type": "offer", "sdp": await offer(pc, self.addresses)})
        if jsep is None:
            raise JanusError("publish: no answer")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], jsep["type"]))
        await session.webrtcup(handle)
        return joined["id"]

    async def _subscribe(self, session: JanusSession, handle: int, pc: RTCPeerConnection, feed: int,
                         meters: dict[str, FrameMeter]) -> float:
        """Subscribe to `feed`, answer Janus's offer; returns when the offer arrived (monotonic)."""
        _, jsep = await session.message(handle, {"request": "join", "ptype": "subscriber", "room": self.room,
                                                 "streams": [{"feed": feed}]})
        offered = time.monotonic()
        if jsep is None:
            raise JanusError("subscribe: no offer")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], jsep["type"]))
        for kind, meter in meters.items():
            tap(pc, kind, meter)
        internals.restrict_host_addresses(pc, self.addresses)
        await pc.setLocalDescription(await pc.createAnswer())
        await session.message(handle, {"request": "start"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp})
        return offered

    async def close(self) -> None:
        for pc in (self.caller_pub_pc, self.caller_sub_pc, self.agent_pub_pc, self.agent_sub_pc):
            await pc.close()
        for session in (self.caller, self.agent):
            if session is not None:
                await session.destroy()
        if self.http is not None:
            await self.http.close()


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
    blaster = None
    if args.generator == "blaster":
        from bench.blaster import Blaster

        blaster = Blaster(loop)
        blaster.start()
    calls: list[Call | JanusCall]
    if args.janus:
        calls = [JanusCall(args.janus, args.admin_key, args.agent_offset + i, loop, addresses)
                 for i in range(args.calls)]
    else:
        callin = [Call(args.url, args.secret, args.agent_offset + i, f"{args.agent_prefix}{args.agent_offset + i}",
                       loop, addresses) for i in range(args.calls)]
        # Agents sign in one at a time and each takes the next call: a call is placed once its agent is ready.
        for agent_call in callin:
            await agent_call.agent_ready(args.agent_password)
        calls = list(callin)
    errors = 0
    for call in calls:
        try:
            await asyncio.wait_for(call.place(args.lock), 60)
            if blaster is not None:
                await blaster.take(call)
        except Exception as exc:  # noqa: BLE001 - reported per call
            call.result.error = f"{type(exc).__name__}: {exc}"[:300]
            errors += 1
        await asyncio.sleep(args.stagger)
    # Wait until the sweep's start time (all workers measure the same window).
    now_wall = time.time()
    if args.start_at > now_wall:
        await asyncio.sleep(args.start_at - now_wall)
    await asyncio.sleep(args.warmup)
    # This client's own event-loop lag over the window: a late client reports its own delays (and misses ICE
    # consent answers) as if they were the server's. Above ~0.5 s the run measures the client, not the server.
    lags: list[float] = []
    monitor = LoopLag(lags.append, warn_s=float("inf"))
    monitor.start()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.hold)
    cpu1, t1 = cpu_seconds(), time.monotonic()
    await monitor.stop()
    for call in calls:
        if call.result.error is None:
            call.measure((t0, t1), blaster)
    media: dict[str, Any] = {}
    if blaster is not None:  # what the C thread saw: RTCP from the relay, and what went back to aioice
        counters = [c for call in calls for c in blaster.counters(call)]
        media = {"handed_back": blaster.handed_back, **{key: sum(c[key] for c in counters)
                                                        for key in ("nacks", "plis", "firs", "rtcp", "bad_srtp")}}
    for call in calls:
        if blaster is not None:
            blaster.release(call)
        await call.close()
    if blaster is not None:
        await blaster.close()
    return {
        "generator": args.generator,
        "blaster": media,
        "calls": [asdict(c.result) for c in calls],
        "errors": errors,
        "window_s": t1 - t0,
        "worker_cpu": (cpu1 - cpu0) / (t1 - t0),
        "loop_lag_max_s": max(lags, default=0.0),
        "pid": os.getpid(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="Callin's base URL")
    parser.add_argument("--secret", help="Callin's caller token secret")
    parser.add_argument("--janus", help="Janus's HTTP API URL (http://host:port/janus): calls through its VideoRoom")
    parser.add_argument("--admin-key", default="", help="the VideoRoom plugin's admin_key (to create rooms)")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--hold", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--stagger", type=float, default=0.05)
    parser.add_argument("--start-at", type=float, default=0, help="wall-clock time at which the warm-up starts")
    parser.add_argument("--agent-prefix", default="bench")
    parser.add_argument("--agent-offset", type=int, default=0)
    parser.add_argument("--agent-password", default="bench-password")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--generator", choices=("aiortc", "blaster"), default="aiortc",
                        help="who carries the media once a call is set up: aiortc's senders and receivers, or the C "
                             "thread of bench/blaster.py (one core carries 50+ calls)")
    parser.add_argument("--lock", default="/tmp/callin-bench.lock", help="lock file shared by the workers")
    args = parser.parse_args()
    if not args.janus and not (args.url and args.secret):
        parser.error("either --janus, or --url and --secret")
    if os.environ.get("LOADGEN_LOG"):  # the clients' ICE/DTLS story (aioice, aiortc), for a failed run
        import logging

        logging.basicConfig(filename=os.environ["LOADGEN_LOG"], level=logging.INFO,
                            format="%(asctime)s %(name)s %(message)s")
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
