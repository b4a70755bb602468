"""Protocol clients with real aiortc peers, used by the integration tests and the measurement scripts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media import aiortc_internals as internals

from .media import CounterVideoTrack, ToneAudioTrack, audio_frame_mono, dominant_frequency, read_counter
from .waiting import until

LOOPBACK = ["127.0.0.1"]
wait_until = until  # the name the tests import from here


class WsClient:
    """A WebSocket client that keeps every message and can wait for one of a type."""

    def __init__(self, base_url: str, path: str) -> None:
        self.url = base_url.replace("http", "ws", 1) + path
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.messages: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.silent = False

    async def connect(self, headers: dict[str, str] | None = None) -> None:
        self.http = aiohttp.ClientSession()
        # Pings are answered by hand (below), so that silence() can stop answering them.
        self.ws = await self.http.ws_connect(self.url, headers=headers, autoping=False)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if self.silent:
                continue  # vanished: what arrives is never processed, pings are never answered
            if msg.type == aiohttp.WSMsgType.PING:
                await self.ws.pong(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self._new.set()
        self.close_code = self.ws.close_code
        self._new.set()

    def silence(self) -> None:
        """Vanish without closing the socket (a phone that lost its network): stop processing what arrives and
        stop answering the gateway's pings."""
        self.silent = True

    @property
    def last_seq(self) -> int:
        """The number of the last event processed (0: none), for hello.last_seq on resume."""
        return max((m["seq"] for m in self.messages if m.get("seq") is not None), default=0)

    def next_id(self) -> str:
        return f"r{next(self._ids)}"

    async def send(self, payload: dict[str, Any] | str) -> None:
        assert self.ws is not None
        await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def request(self, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        payload = {"id": self.next_id(), **payload}
        start = len(self.messages)
        await self.send(payload)
        return await self.wait(lambda m: m.get("id") == payload["id"], timeout=timeout, since=start)

    async def wait(self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float = 10,
                   since: int = 0) -> dict[str, Any]:
        if isinstance(predicate, str):
            kind = predicate
            predicate = lambda m: m.get("type") == kind  # noqa: E731
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.messages):
                message = self.messages[index]
                index += 1
                if predicate(message):
                    return message
            if self.ws is None or self.ws.closed and self._reader is not None and self._reader.done():
                raise AssertionError(f"socket closed (code {self.close_code}) while waiting; got {self.messages}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting; messages so far: {self.messages}")
            self._new.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        if self.http is not None:
            await self.http.close()


class Sink:
    """Consumes a received track, keeping what the assertions need (decoded at the test client, not the relay)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.counters: list[int | None] = []
        self.arrivals: list[float] = []
        self.sizes: list[tuple[int, int]] = []
        self.audio: list[np.ndarray] = []
        self.audio_total = 0  # audio frames received so far (self.audio keeps only the latest)
        self.sample_rate = 48000
        self.first_at: float | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if self.first_at is None:
                self.first_at = now
            self.arrivals.append(now)
            if self.track.kind == "video":
                self.counters.append(read_counter(frame))
                self.sizes.append((frame.width, frame.height))
            else:
                self.sample_rate = frame.sample_rate
                self.audio.append(audio_frame_mono(frame))
                self.audio_total += 1
                if len(self.audio) > 500:
                    del self.audio[:250]

    def mark(self) -> int:
        return self.audio_total

    def audio_since(self, mark: int) -> int:
        return self.audio_total - mark

    def frequency_since(self, mark: int, at_most: int = 50) -> float:
        """Dominant frequency of the audio received after `mark` (at most the last `at_most` frames)."""
        count = min(self.audio_total - mark, len(self.audio), at_most)
        assert count > 0, "no audio since the mark"
        return dominant_frequency(np.concatenate(self.audio[-count:]), self.sample_rate)

    def dominant_frequency(self, last_frames: int = 50) -> float:
        assert self.audio, "no audio received"
        return dominant_frequency(np.concatenate(self.audio[-last_frames:]), self.sample_rate)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def hears(sink: Sink, expected_hz: float, frames: int = 30, timeout: float = 10) -> None:
    """`frames` new audio frames reach `sink` within `timeout` s, and their tone is `expected_hz` (within 30 Hz)."""
    mark = sink.mark()
    await until(lambda: sink.audio_since(mark) >= frames, timeout)
    freq = sink.frequency_since(mark, at_most=frames)
    assert abs(freq - expected_hz) < 30, f"heard {freq:.0f} Hz, expected {expected_hz} Hz"


class Peer:
    """An aiortc peer connection on loopback only (or the given addresses of this host), with no ICE servers (or
    the given ones: a TURN server in the test's namespace)."""

    def __init__(self, addresses: list[str] | None = None, ice_servers: list[RTCIceServer] | None = None) -> None:
        self.addresses = addresses or LOOPBACK
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers or []))
        self.sinks: dict[str, Sink] = {}  # the first received track of each kind
        self.slots: dict[str, Sink] = {}  # every received track by the gateway's slot name: audio, audio:1, video
        self.track_event = asyncio.Event()

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            sink = Sink(track)
            self.sinks.setdefault(track.kind, sink)
            same_kind = [t for t in self.pc.getTransceivers() if t.kind == track.kind]
            index = next(i for i, t in enumerate(same_kind) if t.receiver.track is track)
            self.slots[track.kind if index == 0 else f"{track.kind}:{index}"] = sink
            self.track_event.set()

    async def offer(self) -> str:
        internals.restrict_host_addresses(self.pc, self.addresses)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        for sink in self.slots.values():
            await sink.stop()
        await self.pc.close()


class Caller:
    def __init__(self, base_url: str, token: str, addresses: list[str] | None = None) -> None:
        self.ws = WsClient(base_url, "/ws/caller")
        self.token = token
        self.peer = Peer(addresses)
        self.video: CounterVideoTrack | None = None
        self.call_id: str | None = None
        self.welcome: dict[str, Any] = {}

    async def connect(self) -> dict[str, Any]:
        await self.ws.connect()
        self.welcome = await self.ws.request({"type": "hello", "token": self.token})
        return self.welcome

    async def start(self, call_type: str = "video", tone_hz: float = 880.0, *, location: dict[str, Any] | None = None,
                    context: dict[str, Any] | None = None, fps: int = 30, width: int = 320, height: int = 240,
                    receive_video: bool = False, aux_audio: bool = False,
                    audio: MediaStreamTrack | None = None) -> dict[str, Any]:
        """`audio`: the caller's microphone (default: a tone at `tone_hz`)."""
        body: dict[str, Any] = {"type": "call.start", "call_type": call_type}
        if location is not None:
            body["location"] = location
        if context is not None:
            body["context"] = context
        queued = await self.ws.request(body)
        assert queued["type"] == "call.queued", queued
        self.call_id = queued["call_id"]
        self.peer.pc.addTrack(audio or ToneAudioTrack(tone_hz))
        if aux_audio:  # a second audio section: a barging supervisor
            self.peer.pc.addTransceiver("audio", direction="recvonly")
        if call_type != "voice":
            self.video = CounterVideoTrack(fps=fps, width=width, height=height)
            if receive_video:
                self.peer.pc.addTrack(self.video)
            else:
                self.peer.pc.addTransceiver(self.video, direction="sendonly")
        answer = await self.ws.request({"type": "sdp.offer", "sdp": await self.peer.offer()})
        assert answer["type"] == "sdp.answer", answer
        await self.peer.answer(answer["sdp"])
        return queued

    async def hangup(self) -> dict[str, Any]:
        return await self.ws.request({"type": "call.hangup"})

    async def close(self) -> None:
        await self.peer.close()
        await self.ws.close()


class Agent:
    def __init__(self, base_url: str, username: str = "alice", password: str = "alice-demo",
                 addresses: list[str] | None = None) -> None:
        self.base_url = base_url
        self.addresses = addresses
        self.username = username
        self.password = password
        self.ws = WsClient(base_url, "/ws/agent")
        self.peer: Peer | None = None
        self.token: str | None = None

    async def login(self) -> str:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.base_url}/api/v1/agent/login",
                                 json={"username": self.username, "password": self.password}) as response:
                body = await response.json()
                assert response.status == 200, body
        self.token = body["token"]
        return self.token

    async def connect(self, available: bool = True) -> dict[str, Any]:
        token = self.token or await self.login()
        await self.ws.connect()
        welcome = await self.ws.request({"type": "hello", "token": token})
        assert welcome["type"] == "welcome", welcome
        if available:
            status = await self.ws.request({"type": "agent.status", "status": "available"})
            assert status["status"] in ("available", "ringing"), status  # a waiting call may ring at once
        return welcome

    async def wait_offer(self, timeout: float = 10) -> dict[str, Any]:
        return await self.ws.wait("call.offered", timeout=timeout)

    async def accept(self, call_id: str, *, tone_hz: float = 440.0, send_video: bool = False,
                     aux_audio: bool = False, audio: MediaStreamTrack | None = None) -> dict[str, Any]:
        accepted = await self.ws.request({"type": "call.accept", "call_id": call_id})
        assert accepted["type"] == "call.accepted", accepted
        await self.join_media(call_id, tone_hz=tone_hz, send_video=send_video, aux_audio=aux_audio, audio=audio)
        return accepted

    async def join_media(self, call_id: str, *, tone_hz: float = 440.0, send_video: bool = False,
                         aux_audio: bool = False, audio: MediaStreamTrack | None = None) -> None:
        """Set up this console's peer connection for the call: mic (a tone), a second audio section if asked
        (a consulted colleague or a whispering supervisor), and the caller's video."""
        self.peer = Peer(self.addresses)
        self.peer.pc.addTrack(audio or ToneAudioTrack(tone_hz))
        if aux_audio:
            self.peer.pc.addTransceiver("audio", direction="recvonly")
        if send_video:
            self.peer.pc.addTrack(CounterVideoTrack())
        else:
            self.peer.pc.addTransceiver("video", direction="recvonly")
        answer = await self.ws.request({"type": "sdp.offer", "call_id": call_id, "sdp": await self.peer.offer()})
        assert answer["type"] == "sdp.answer", answer
        await self.peer.answer(answer["sdp"])

    async def hangup(self, call_id: str) -> dict[str, Any]:
        return await self.ws.request({"type": "call.hangup", "call_id": call_id})

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        await self.ws.close()


async def answered_call(base_url: str, token: str, call_type: str = "video", *, video_frames: int = 0,
                        caller_hz: float = 880.0, agent_hz: float = 440.0, caller_aux: bool = False,
                        agent_aux: bool = False, timeout: float = 15) -> tuple[Caller, Agent, str]:
    """A caller's call (its voice a `caller_hz` tone) answered by the demo agent alice (hers `agent_hz`), once
    `video_frames` of the caller's video have reached her (0: as soon as she has accepted); `*_aux`: a second audio
    section on that side (for a supervisor or a colleague). Returns the caller, the agent and the call id; the test
    closes both."""
    agent = Agent(base_url)
    await agent.connect()
    caller = Caller(base_url, token)
    await caller.connect()
    await caller.start(call_type, tone_hz=caller_hz, aux_audio=caller_aux)
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"], tone_hz=agent_hz, aux_audio=agent_aux)
    if video_frames:
        await wait_until(lambda: agent.peer is not None and "video" in agent.peer.sinks
                         and len(agent.peer.sinks["video"].counters) > video_frames, timeout)
    return caller, agent, offer["call_id"]
