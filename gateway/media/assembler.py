"""Reassemble encoded frames from RTP packets without delaying them.

aiortc's JitterBuffer only releases a video frame when the first packet of the *next* frame arrives (one frame
interval of delay) and holds four audio packets (~80 ms). The relay uses these assemblers instead: a video frame
leaves as soon as its marker packet completes it, and an audio packet leaves as soon as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .aiortc_internals import RtpPacket, depayloaded, uint16_add, uint16_gt
from .codecs import is_frame_start

# A gap older than this many packets is given up on (retransmission did not fill it).
MAX_GAP_PACKETS = 96
MAX_BUFFERED_PACKETS = 512


class FrameSink(Protocol):
    def __call__(self, data: bytes, timestamp: int, ssrc: int, discontinuity: bool) -> None: ...


Depayload = Callable[[RtpPacket], bytes]


class AudioAssembler:
    """One audio packet is one frame. Late or duplicate packets are dropped."""

    def __init__(self, sink: FrameSink, depayload: Depayload = depayloaded) -> None:
        self._sink = sink
        self._depayload = depayload
        self._last: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        seq = packet.sequence_number
        if self._last is not None and not uint16_gt(seq, self._last):
            return False, None
        discontinuity = self._last is None or seq != uint16_add(self._last, 1)
        self._last = seq
        self._sink(self._depayload(packet), packet.timestamp, packet.ssrc, discontinuity)
        return False, None


class VideoAssembler:
    """Collects packets by sequence number and releases each frame once its marker packet completes it.
    `depayload`: a packet's codec payload (default: the one a tapped aiortc receiver has depayloaded already)."""

    def __init__(self, codec_name: Callable[[int], str | None], sink: FrameSink,
                 depayload: Depayload = depayloaded) -> None:
        self._codec_name = codec_name
        self._sink = sink
        self._depayload = depayload
        self._packets: dict[int, RtpPacket] = {}
        self._next: int | None = None  # sequence number that starts the next frame
        self._highest: int | None = None
        self._discontinuity = True
        self.frames_dropped = 0

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        """Returns (picture lost, None), the shape of aiortc's JitterBuffer.add."""
        seq = packet.sequence_number
        if self._next is None:
            codec = self._codec_name(packet.payload_type)
            if codec is None or not is_frame_start(codec, packet.payload):
                return False, None
            self._next = seq
        elif uint16_gt(self._next, seq) or seq in self._packets:
            return False, None  # late or duplicate
        self._packets[seq] = packet
        if self._highest is None or uint16_gt(seq, self._highest):
            self._highest = seq
        self._release()
        if self._packets and uint16_add(self._highest, -self._next) > MAX_GAP_PACKETS:
            return self._resync(), None
        if len(self._packets) > MAX_BUFFERED_PACKETS:
            return self._resync(), None
        return False, None

    def _release(self) -> None:
        while self._next is not None:
            first = self._packets.get(self._next)
            if first is None:
                return
            seq = self._next
            parts: list[RtpPacket] = []
            end: int | None = None
            while True:
                packet = self._packets.get(seq)
                if packet is None:
                    return  # incomplete
                if packet.timestamp != first.timestamp:
                    end = uint16_add(seq, -1)  # the previous frame had no marker
                    break
                parts.append(packet)
                if packet.marker:
                    end = seq
                    break
                seq = uint16_add(seq, 1)
            for part in parts:
                del self._packets[part.sequence_number]
            self._next = uint16_add(end, 1)
            data = b"".join(self._depayload(p) for p in parts)
            discontinuity, self._discontinuity = self._discontinuity, False
            self._sink(data, first.timestamp, first.ssrc, discontinuity)

    def _resync(self) -> bool:
        """Give up on a gap: skip to the first frame start after it. The consumers will wait for a keyframe."""
        missing_at = self._next
        candidates = sorted(
            (s for s in self._packets if uint16_gt(s, missing_at)),
            key=lambda s: uint16_add(s, -missing_at),
        )
        self._next = None
        for s in candidates:
            packet = self._packets[s]
            codec = self._codec_name(packet.payload_type)
            if codec is not None and is_frame_start(codec, packet.payload):
                self._next = s
                break
        if self._next is None:
            self._packets.clear()
        else:
            self._packets = {s: p for s, p in self._packets.items() if not uint16_gt(self._next, s)}
        self.frames_dropped += 1
        self._discontinuity = True
        self._release()
        return True
