"""Packet-level forwarding: the caller's RTP packets go out on the agent's leg as they arrive (about 1 ms added,
no jitter buffer), rewritten for the outgoing stream (SSRC, payload type, sequence numbers, timestamps, MID).

Each outgoing stream keeps its own retransmission history (aiortc's sender answers the agent's NACKs from it) and
its own RTCP sender reports; receiver reports and NACKs towards the caller come from aiortc's receiver as usual.
A new consumer, or one that had to drop packets, resumes at the first packet of a keyframe; sequence numbers stay
contiguous across what was skipped, so the agent never NACKs packets that were never sent.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any
from collections.abc import Callable

from aiortc import MediaStreamError, MediaStreamTrack, RTCRtpSender

from . import aiortc_internals as internals
from .aiortc_internals import OutgoingPacket, RtpPacket, uint16_gt
from .codecs import CLOCK_RATES
from .forward import ForwardStats
from .viewer import KeyframeBudget, pass_keyframe_request

# Packets older than the resume point are from the skipped range; after this many the check is dropped (wrap).
RESUME_WINDOW = 1000
# Why a native route hands a stream back (gateway/media/_fastpath.c): counters to sync, socket would block, new source.
ATTEND_SYNC, ATTEND_BLOCKED, ATTEND_SOURCE = 1, 2, 3


class PacketTap:
    """Stands in for a receiver's jitter buffer: hands every packet on at once."""

    def __init__(self, sink: Callable[[RtpPacket], None]) -> None:
        self._sink = sink

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._sink(packet)
        return False, None


class IdleTrack(MediaStreamTrack):
    """Keeps an aiortc sender's own RTP loop parked (packets are sent by an RtpForwarder instead)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> None:  # type: ignore[override]
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped.set()


class RtpForwarder:
    """Consumer of a Producer's packets, sending them on one outgoing aiortc sender."""

    def __init__(self, kind: str, sender: RTCRtpSender, payload_type: int, max_backlog_bytes: int = 256 * 1024) -> None:
        self.kind = kind
        self._port = internals.SenderPort(sender)
        self._payload_type = payload_type
        self._max_backlog = max_backlog_bytes
        self._clock_rate = 90000 if kind == "video" else 48000
        self._needs_keyframe = kind == "video"
        self._source: int | None = None
        self._seq_offset: int | None = None
        self._ts_offset = random.getrandbits(32)
        self._last_seq = random.getrandbits(15)  # next packet is _last_seq + 1
        self._last_ts: int | None = None
        self._last_time = 0.0
        self._resume_seq: int | None = None
        self._since_resume = 0
        self._on_keyframe_needed: Callable[[], None] | None = None
        self._replay: Callable[[RtpForwarder], bool] | None = None
        self._unready = True
        self.paused = False
        self.closed = False
        self._stats = ForwardStats()
        self._route: Any = None  # the native Route (use_native): forwards in C while armed
        self._armed = False  # armed by us, its state not yet taken back
        self.budget: KeyframeBudget | None = None  # this viewer's keyframe budget (video)
        self.source: Any = None  # the Producer this viewer is attached to (forward.Producer)

    @property
    def stats(self) -> ForwardStats:
        if self._armed:
            self._sync()
        return self._stats

    def set_codec(self, codec: str) -> None:
        self._clock_rate = CLOCK_RATES.get(codec, self._clock_rate)

    @property
    def needs_keyframe(self) -> bool:
        return self._needs_keyframe

    def request_keyframe(self) -> None:
        """The agent asked this stream for a keyframe (PLI/FIR), or it needs one: pass it on to the source, within
        this viewer's budget."""
        self._stats.keyframe_requests += 1
        pass_keyframe_request(self._on_keyframe_needed, self.budget, paused=self.paused, waiting=self._needs_keyframe)

    def _skip_to_keyframe(self) -> None:
        if not self._needs_keyframe:
            self._needs_keyframe = True
            self._seq_offset = None
            self.request_keyframe()

    def forward(self, packet: RtpPacket, keyframe_start: bool) -> None:
        if self._armed:  # a packet given to us directly (a replayed keyframe): Python takes the stream back
            self._disarm()
        if self.paused or self.closed:
            return
        self._stats.frames_in += 1
        port = self._port
        if not port.ready:
            if self.kind == "video":
                self._needs_keyframe = True
                self._seq_offset = None
            self._unready = True
            self._stats.dropped_waiting_keyframe += 1
            return
        if self._unready:
            # The outgoing leg just came up: whatever keyframe came before went nowhere, ask for a fresh one.
            self._unready = False
            if self._needs_keyframe and not keyframe_start:
                if self._replay is None or not self._replay(self):
                    self.request_keyframe()
        if packet.ssrc != self._source:
            # A new source stream: re-anchor sequence numbers and timestamps, start at a keyframe.
            self._source = packet.ssrc
            self._seq_offset = None
            if self._last_ts is not None:
                elapsed = int((time.monotonic() - self._last_time) * self._clock_rate) + 1
                self._ts_offset = (self._last_ts + elapsed - packet.timestamp) & 0xFFFFFFFF
            else:
                self._ts_offset = (self._ts_offset - packet.timestamp) & 0xFFFFFFFF
            if self.kind == "video" and not keyframe_start:
                self._skip_to_keyframe()
        if self._needs_keyframe:
            if not keyframe_start:
                self._stats.dropped_waiting_keyframe += 1
                return
            self._needs_keyframe = False
        if self._seq_offset is None:
            self._seq_offset = (self._last_seq + 1 - packet.sequence_number) & 0xFFFF
            self._resume_seq = packet.sequence_number
            self._since_resume = 0
        elif self._resume_seq is not None:
            if uint16_gt(self._resume_seq, packet.sequence_number):
                return  # late packet from before the resume point: it was never announced downstream
            self._since_resume += 1
            if self._since_resume > RESUME_WINDOW:
                self._resume_seq = None
        if port.backlog() > self._max_backlog:
            self._stats.dropped_overflow += 1
            if self.kind == "video":
                self._skip_to_keyframe()
            return
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        port.send(OutgoingPacket(self._payload_type, packet.marker, seq, ts, port.ssrc, packet.payload,
                                 packet.padding_size, packet.extensions.audio_level))
        self._stats.frames_out += 1
        if uint16_gt(seq, self._last_seq) or self._last_ts is None:
            self._last_seq = seq
            self._last_ts = ts
            self._last_time = time.monotonic()
        if self._route is not None:
            self._arm()

    # The native route: while armed, the source's packets for this stream are rewritten, protected and sent in C
    # (Producer.on_packet calls the module's fanout once per packet for all armed routes); its state comes back
    # here whenever anything but steady forwarding happens.

    @property
    def route(self) -> Any:
        return self._route

    @property
    def source_ssrc(self) -> int | None:
        """The SSRC of the source stream this one forwards (its route is armed for it)."""
        return self._source

    @property
    def route_armed(self) -> bool:
        return self._armed

    def _arm(self) -> None:
        """After a packet sent in Python: hand the stream to C if it runs steadily."""
        if (self._armed or self._needs_keyframe or self._seq_offset is None or self._source is None
                or self._last_ts is None or self.paused or self.closed or self.source is None
                or not self._port.connect_route(self._payload_type)):
            return
        resume = -1 if self._resume_seq is None else self._resume_seq
        self._route.arm(self._source, self._seq_offset, self._ts_offset, self._last_seq, self._last_ts, resume,
                        self._since_resume)
        self._armed = True
        self.source.routes_changed()

    def _disarm(self) -> None:
        """Take the stream's state back from C (it may have stopped on its own: new source, blocked socket)."""
        if not self._armed:
            return
        self._sync()
        last_seq, last_ts, age, resume, since_resume = self._route.disarm()
        self._armed = False
        if age is not None:
            self._last_seq, self._last_ts, self._last_time = last_seq, last_ts, time.monotonic() - age
        self._resume_seq = None if resume < 0 else resume
        self._since_resume = since_resume
        if self.source is not None:
            self.source.routes_changed()

    def _sync(self) -> None:
        packets, payload_bytes, wire_bytes, ntp, rtp_timestamp = self._route.take_counters()
        if packets:
            self._port.sent_by_route(packets, payload_bytes, wire_bytes, ntp, rtp_timestamp)
            self._stats.frames_in += packets
            self._stats.frames_out += packets
            self._stats.forwarded_in_c += packets

    def attend(self) -> bool:
        """The route needs us (its `attend` says why); True when the packet at hand was left for `forward`."""
        why = self._route.attend
        if why == ATTEND_SOURCE:
            self._disarm()
            return True
        if why == ATTEND_BLOCKED:
            pending = self._route.take_pending()
            self._disarm()
            if pending is not None:
                self._port.queue(pending)
            return False
        self._sync()
        if not self._port.route_valid():
            self._disarm()
        return False

    def use_native(self, native: Any) -> None:
        """Send through the native fast path (fastpath.for_leg), and forward in C once the stream runs steadily."""
        self._port.use_native(native)
        self._route = self._port.route

    @property
    def sent_natively(self) -> int:
        """Packets sent by the native fast path (the rest took aiortc's way)."""
        if self._armed:
            self._sync()
        return getattr(self._port, "sent_natively", 0)

    @property
    def ssrc(self) -> int:
        return self._port.ssrc

    def rewind(self, first_unsent: int) -> None:
        """Packets from `first_unsent` on were taken back before they left (a paused viewer): continue numbering
        from there, so that the viewer sees no gap. Call while paused."""
        self._disarm()
        self._last_seq = (first_unsent - 1) & 0xFFFF
        self._seq_offset = None

    def restart(self) -> None:
        """Attached to a source (again): continue our sequence numbers with no gap (a gap would make the remote
        wait for packets that will never come), and for video start at a keyframe."""
        self._disarm()
        self._seq_offset = None
        self._source = None
        if self.kind == "video":
            self._needs_keyframe = True

    def pause(self) -> None:
        self._disarm()
        self.paused = True

    def resume(self) -> None:
        """Forward again from the next keyframe: the cached one if recent, else a fresh one (see `forward`)."""
        self._disarm()
        self.paused = False
        if self.kind == "video":
            self._needs_keyframe = True
            self._seq_offset = None
            self._unready = True

    def stop(self) -> None:
        self._disarm()
        if self._route is not None:
            self._route.close()
        self.closed = True
        if self.budget is not None:
            self.budget.close()
