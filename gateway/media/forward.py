"""Producers and consumers of encoded frames (mediasoup's object model, frame-level).

A Producer is one incoming track of a leg: it receives whole encoded frames from an assembler. A ForwardTrack
is one outgoing track of another leg: aiortc's sender pulls `av.Packet`s from it and packetizes them without
encoding. A Producer fans out to any number of ForwardTracks; each has a bounded queue and drops to the next
keyframe when its consumer falls behind.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamError, MediaStreamTrack

from .codecs import CLOCK_RATES, is_keyframe, is_keyframe_start
from .viewer import pass_keyframe_request


GOP_CACHE_PACKETS = 600
GOP_CACHE_SECONDS = 1.0


@dataclass(slots=True)
class EncodedFrame:
    data: bytes
    timestamp: int  # RTP timestamp of the source stream
    keyframe: bool
    arrived: float  # time.monotonic() when the frame was complete at the relay


@dataclass(slots=True)
class ForwardStats:
    frames_in: int = 0
    frames_out: int = 0
    dropped_overflow: int = 0
    dropped_waiting_keyframe: int = 0
    keyframe_requests: int = 0
    forwarded_in_c: int = 0  # of frames_out: sent by the native route (packet mode, relay_fast_path=native)


class ForwardTrack(MediaStreamTrack):
    """An outgoing track fed with encoded frames. Bounded: never builds a backlog of stale media."""

    def __init__(self, kind: str, max_frames: int, on_keyframe_needed: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self._max = max_frames
        self._queue: deque[EncodedFrame] = deque()
        self._ready = asyncio.Event()
        self._on_keyframe_needed = on_keyframe_needed
        self._needs_keyframe = kind == "video"
        self._codec: str | None = None
        self._time_base = fractions.Fraction(1, 90000 if kind == "video" else 48000)
        self.paused = False
        self.stats = ForwardStats()
        self.budget: Any = None  # this viewer's KeyframeBudget (video)
        self.source: Any = None  # the Producer this viewer is attached to

    def set_codec(self, codec: str) -> None:
        self._codec = codec
        self._time_base = fractions.Fraction(1, CLOCK_RATES.get(codec, 90000))

    @property
    def needs_keyframe(self) -> bool:
        return self._needs_keyframe

    def push(self, frame: EncodedFrame, discontinuity: bool = False) -> None:
        if self.readyState != "live" or self.paused:
            return
        self.stats.frames_in += 1
        if self.kind == "video":
            if discontinuity and not frame.keyframe:
                self._wait_for_keyframe()
            if self._needs_keyframe:
                if not frame.keyframe:
                    self.stats.dropped_waiting_keyframe += 1
                    return
                self._needs_keyframe = False
            if len(self._queue) >= self._max:
                # The consumer is behind: drop the backlog, resume at the next keyframe.
                self.stats.dropped_overflow += len(self._queue)
                self._queue.clear()
                if not frame.keyframe:
                    self.stats.dropped_overflow += 1
                    self._wait_for_keyframe()
                    return
        elif len(self._queue) >= self._max:
            self._queue.popleft()
            self.stats.dropped_overflow += 1
        self._queue.append(frame)
        self._ready.set()

    def _wait_for_keyframe(self) -> None:
        self._needs_keyframe = True
        self.request_keyframe()

    def request_keyframe(self) -> None:
        """The remote side of this track asked for a keyframe (PLI/FIR), or it needs one: within its budget."""
        self.stats.keyframe_requests += 1
        pass_keyframe_request(self._on_keyframe_needed, self.budget, paused=self.paused, waiting=self._needs_keyframe)

    def restart(self) -> None:
        """A new source: drop what is queued from the old one and start the new one at a keyframe."""
        self._queue.clear()
        if self.kind == "video":
            self._needs_keyframe = True

    def pause(self) -> None:
        self.paused = True
        self._queue.clear()

    def resume(self) -> None:
        self.paused = False
        if self.kind == "video":
            self._wait_for_keyframe()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = self._time_base
        self.stats.frames_out += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._ready.set()
        if self.budget is not None:
            self.budget.close()


@dataclass
class Producer:
    """One incoming track of a leg. Fans its encoded frames out to the attached ForwardTracks."""

    kind: str
    codec: str
    send_keyframe_request: Callable[[], None]
    min_request_interval: float = 0.3
    consumers: list[Any] = field(default_factory=list)  # ForwardTrack (frames) or RtpForwarder (packets)
    # Read-only observers of the same media (recorder.RecordingTap): `on_frame(frame, discontinuity)` in frame mode,
    # `on_packet(packet, keyframe_start)` in packet mode. Not viewers: no keyframe budget, no replay, no backlog.
    taps: list[Any] = field(default_factory=list)
    _frames: int = 0  # `frames`
    keyframes: int = 0
    keyframe_requests_sent: int = 0
    last_frame_at: float | None = None
    _last_request: float = -1e9
    _pending_request: asyncio.TimerHandle | None = None
    _closed: bool = False
    # The packets since the latest keyframe (RtpPacket, or the native Inlet's field tuples: see `gop_packets`); the same
    # list object for the producer's life, since the native Inlet appends to it.
    gop: list[Any] = field(default_factory=list)
    gop_frames: list[bytes] = field(default_factory=list)
    gop_started: float = 0.0
    # Consumers whose native route is armed (forwarded in C by one `fanout` call per packet), their routes, and the
    # rest (forwarded in Python after the C fan-out: streams not steady yet, taps such as a recorder's).
    armed: tuple[Any, ...] = ()
    routes: tuple[Any, ...] = ()
    slow: list[Any] = field(default_factory=list)
    _fanout: Any = None
    # The incoming stream whose steady packets the native Inlet takes (aiortc_internals.DirectReceive): given back to
    # Python whenever the routes change.
    steady: Any = None

    @property
    def frames(self) -> int:
        """Frames received (packet mode: packets that end a video frame, audio packets); up to date when read, also
        while the native Inlet counts them (it hands its counts over in batches)."""
        if self.steady is not None:
            self.steady.flush()
        return self._frames

    @frames.setter
    def frames(self, value: int) -> None:
        self._frames = value

    def on_frame(self, data: bytes, timestamp: int, discontinuity: bool) -> None:
        key = is_keyframe(self.codec, data)
        now = time.monotonic()
        frame = EncodedFrame(data=data, timestamp=timestamp, keyframe=key, arrived=now)
        self.frames += 1
        self.keyframes += key
        self.last_frame_at = now
        for consumer in self.consumers:
            consumer.push(frame, discontinuity)
        for tap in self.taps:
            tap.on_frame(frame, discontinuity)
        if self.kind == "video":  # frames since the latest keyframe, for snapshots
            if key:
                self.gop_frames = [data]
                self.gop_started = now
            elif self.gop_frames and len(self.gop_frames) < GOP_CACHE_PACKETS:
                self.gop_frames.append(data)

    def on_packet(self, packet: Any) -> None:
        """Packet-level forwarding: hand one RTP packet to every consumer at once: the streams whose native route
        is armed in one C call (gateway/media/_fastpath.c `fanout`), then every other consumer in Python (streams
        not steady yet), then the read-only taps (a recording, a transcript: `taps`), after the C fan-out."""
        now = time.monotonic()
        self.last_frame_at = now
        key = self.kind == "video" and is_keyframe_start(self.codec, packet.payload)
        if packet.marker or self.kind == "audio":
            self._frames += 1
        self.keyframes += key
        slow = self.slow
        if self.routes:
            level = packet.extensions.audio_level
            attention = self._fanout(self.routes, packet.ssrc, packet.sequence_number, packet.timestamp,
                                     packet.marker, packet.payload, packet.padding_size,
                                     -1 if level is None else (0x80 if level[0] else 0) | level[1])
            if attention is not None:
                armed, slow = self.armed, list(slow)
                for index in attention:
                    if armed[index].attend():  # handed back before sending this packet: Python forwards it
                        slow.append(armed[index])
        for consumer in slow:
            consumer.forward(packet, key)
        for tap in self.taps:
            tap.on_packet(packet, key)
        if self.kind == "video":
            # Keep the packets since the latest keyframe, so a consumer whose leg just came up starts at once.
            if key:
                self.gop[:] = (packet,)
                self.gop_started = now
            elif self.gop:
                self.gop.append(packet)
                if len(self.gop) > GOP_CACHE_PACKETS:
                    self.gop.clear()

    def gop_packets(self) -> list[Any]:
        """The cached packets since the latest keyframe, as packets (the native Inlet caches field tuples)."""
        from .aiortc_internals import packet_from_fields

        return [packet_from_fields(p) if p.__class__ is tuple else p for p in self.gop]

    def replay(self, consumer: Any) -> bool:
        """Send the cached packets since the latest keyframe to one consumer, if that keyframe is recent."""
        if not self.gop or time.monotonic() - self.gop_started > GOP_CACHE_SECONDS:
            return False
        for i, packet in enumerate(self.gop_packets()):
            consumer.forward(packet, i == 0)
        return True

    def attach(self, consumer: Any) -> None:
        if hasattr(consumer, "restart"):
            consumer.restart()
        consumer.set_codec(self.codec)
        consumer._on_keyframe_needed = self.request_keyframe
        consumer.source = self
        if hasattr(consumer, "_replay"):
            consumer._replay = self.replay
        self.consumers.append(consumer)
        self.routes_changed()
        if self.kind == "video":
            # A new consumer starts with a picture: the cached keyframe and what followed it, sent at once if recent
            # and its leg is up (one that connected while its agent's console rang, opened by the accept); else ask
            # the source for a keyframe now. (A packet consumer whose leg is not up yet gets the cache when it is.)
            sent = consumer.stats.frames_out
            if not (self.gop and self.replay(consumer) and consumer.stats.frames_out > sent):
                self.request_keyframe()

    def detach(self, consumer: Any) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self.routes_changed()
        if getattr(consumer, "source", None) is self:
            consumer.source = None

    def routes_changed(self) -> None:
        """A consumer's native route was armed or handed back (or the consumers changed): who goes through C."""
        if self.steady is not None:
            self.steady.disarm()  # the incoming stream comes back to Python, which arms it again if it may
        armed = tuple(c for c in self.consumers if getattr(c, "route_armed", False))
        self.armed = armed
        self.routes = tuple(c.route for c in armed)
        self.slow = [c for c in self.consumers if c not in armed]
        if armed and self._fanout is None:
            from .fastpath import native_module

            self._fanout = native_module().fanout

    def request_keyframe(self) -> None:
        """Rate-limited: at most one request per interval, but a request inside the interval is not lost."""
        if self._closed or self.kind != "video":
            return
        now = time.monotonic()
        wait = self._last_request + self.min_request_interval - now
        if wait <= 0:
            self._send(now)
        elif self._pending_request is None:
            self._pending_request = asyncio.get_running_loop().call_later(wait, self._send_pending)

    def _send_pending(self) -> None:
        self._pending_request = None
        if not self._closed:
            self._send(time.monotonic())

    def _send(self, now: float) -> None:
        self._last_request = now
        self.keyframe_requests_sent += 1
        self.send_keyframe_request()

    def close(self) -> None:
        self._closed = True
        self.gop.clear()
        if self._pending_request is not None:
            self._pending_request.cancel()
            self._pending_request = None
        self.consumers.clear()
        self.routes_changed()
        self.taps.clear()
