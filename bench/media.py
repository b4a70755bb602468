"""Load-generator media: video encoded once and replayed, receivers that never decode.

A Python load generator that encodes and decodes fills its cores long before the gateway does, so:
- `EncodedLoop` holds 640x480 VP8 frames encoded once (each frame's pixels carry its index; a key and a delta
  version of every frame, so a keyframe request is answered at once) and 1 s of Opus, cached on disk;
- `ReplayTrack` hands those `av.Packet`s to aiortc's sender at 30 fps (aiortc packetizes them without encoding);
- `FrameMeter` is tapped into a receiver in place of its jitter buffer (gateway.media.aiortc_internals.tap_receiver): it
  reassembles frames, identifies each by a hash of its bytes and records arrival, so delay and freezes are
  measured with no decoding at all.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from gateway.media import aiortc_internals as internals
from gateway.media.assembler import AudioAssembler, VideoAssembler

CACHE = Path(__file__).resolve().parent.parent / "results" / "cache"
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000


def _frame_image(index: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(index // 30)
    img = np.empty((height, width, 3), dtype=np.uint8)
    # a moving gradient (some motion for the encoder) plus a counter strip
    x = np.arange(width, dtype=np.uint16)
    img[:, :, 0] = ((x + index * 4) % 256).astype(np.uint8)[None, :]
    img[:, :, 1] = (np.arange(height)[:, None] + index * 2) % 256
    img[:, :, 2] = int(rng.integers(0, 255))
    for bit in range(16):
        value = 255 if (index >> bit) & 1 else 0
        img[0:24, bit * (width // 16) : (bit + 1) * (width // 16)] = value
    return img


@dataclass
class EncodedLoop:
    width: int
    height: int
    fps: int
    delta: list[bytes]
    key: list[bytes]
    opus: list[bytes]
    index_of: dict[bytes, int] = field(default_factory=dict)
    audio_index_of: dict[bytes, int] = field(default_factory=dict)

    @classmethod
    def load(cls, seconds: int = 10, width: int = 640, height: int = 480, fps: int = 30,
             bitrate: int = 800_000) -> "EncodedLoop":
        CACHE.mkdir(parents=True, exist_ok=True)
        path = CACHE / f"loop-{width}x{height}-{fps}-{seconds}-{bitrate}.pickle"
        if path.exists():
            data = pickle.loads(path.read_bytes())
        else:
            data = cls._encode(seconds, width, height, fps, bitrate)
            path.write_bytes(pickle.dumps(data))
        loop = cls(width, height, fps, data["delta"], data["key"], data["opus"])
        for i, (d, k) in enumerate(zip(loop.delta, loop.key)):
            loop.index_of[hashlib.blake2b(d, digest_size=8).digest()] = i
            loop.index_of[hashlib.blake2b(k, digest_size=8).digest()] = i
        seen: dict[bytes, int] = {}
        for packet in loop.opus:
            digest = hashlib.blake2b(packet, digest_size=8).digest()
            seen[digest] = seen.get(digest, 0) + 1
        for i, packet in enumerate(loop.opus):
            digest = hashlib.blake2b(packet, digest_size=8).digest()
            if seen[digest] == 1:  # packets that repeat within the loop cannot be told apart: not timed
                loop.audio_index_of[digest] = i
        return loop

    @staticmethod
    def _encode(seconds: int, width: int, height: int, fps: int, bitrate: int) -> dict[str, list[bytes]]:
        count = seconds * fps

        def encoder(gop: int) -> av.CodecContext:
            codec = av.CodecContext.create("libvpx", "w")
            codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
            codec.bit_rate = bitrate
            codec.framerate = fractions.Fraction(fps, 1)
            codec.time_base = fractions.Fraction(1, fps)
            codec.gop_size = gop
            codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
            return codec

        def encode(codec: av.CodecContext, i: int, key: bool) -> bytes:
            frame = av.VideoFrame.from_ndarray(_frame_image(i, width, height), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            if key:
                frame.pict_type = av.video.frame.PictureType.I
            packets = codec.encode(frame)
            assert packets, "libvpx buffered a frame despite lag-in-frames=0"
            return b"".join(bytes(p) for p in packets)

        stream = encoder(count)
        delta = [encode(stream, i, key=(i == 0)) for i in range(count)]
        key = []
        for i in range(count):
            single = encoder(1)
            key.append(encode(single, i, key=True))
        opus = av.CodecContext.create("libopus", "w")
        opus.sample_rate = AUDIO_RATE
        opus.layout = "stereo"
        opus.format = "s16"
        opus.bit_rate = 32000
        packets: list[bytes] = []
        t = np.arange(AUDIO_RATE) / AUDIO_RATE
        wave = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        stereo = np.repeat(wave[None, :], 2, axis=0).T.reshape(1, -1)
        chunk = 960
        for start in range(0, AUDIO_RATE, chunk):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start * 2 : (start + chunk) * 2]),
                                               format="s16", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = start
            packets += [bytes(p) for p in opus.encode(frame)]
        return {"delta": delta, "key": key, "opus": packets}

    def identify(self, data: bytes) -> int | None:
        return self.index_of.get(hashlib.blake2b(data, digest_size=8).digest())

    def identify_audio(self, data: bytes) -> int | None:
        return self.audio_index_of.get(hashlib.blake2b(data, digest_size=8).digest())


class ReplayTrack(MediaStreamTrack):
    """Pre-encoded frames in real time. `sent_at[n]` is when frame n (global count) was handed to the sender."""

    def __init__(self, kind: str, loop: EncodedLoop) -> None:
        super().__init__()
        self.kind = kind
        self.loop = loop
        self.count = 0
        self.sent_at: list[float] = []
        self._start: float | None = None
        self._key_next = kind == "video"
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._key_next = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self.kind == "video":
            interval, clock = 1 / self.loop.fps, VIDEO_CLOCK
        else:
            interval, clock = 0.02, AUDIO_RATE
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.count * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n = self.count
        if self.kind == "video":
            i = n % len(self.loop.delta)
            data = self.loop.key[i] if (self._key_next or i == 0) else self.loop.delta[i]
            self._key_next = False
            pts = n * (clock // self.loop.fps)
        else:
            data = self.loop.opus[n % len(self.loop.opus)]
            pts = n * 960
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, clock)
        self.sent_at.append(time.monotonic())
        self.count += 1
        return packet


def answer_keyframe_requests(sender: RTCRtpSender, track: ReplayTrack) -> None:
    internals.on_keyframe_request(sender, track.request_keyframe)


class FrameMeter:
    """Stands in for a receiver's jitter buffer and records what arrives; never decodes."""

    def __init__(self, kind: str, loop: EncodedLoop | None = None) -> None:
        self.kind = kind
        self.loop = loop
        self.arrivals: list[float] = []
        self.indices: list[int | None] = []
        self.packets = 0
        self.first_seq: int | None = None
        self.max_seq_ext: int | None = None
        self._cycles = 0
        self._last_seq: int | None = None
        sink = self._on_frame
        self._assembler = VideoAssembler(lambda pt: "VP8", sink) if kind == "video" else AudioAssembler(sink)

    def add(self, packet) -> tuple[bool, None]:  # noqa: ANN001 - aiortc RtpPacket
        self.packets += 1
        seq = packet.sequence_number
        if self._last_seq is not None and seq < 0x1000 and self._last_seq > 0xF000:
            self._cycles += 1 << 16
        if self._last_seq is None or ((seq - self._last_seq) & 0xFFFF) < 0x8000:
            self._last_seq = seq
        ext = self._cycles + seq
        if self.first_seq is None:
            self.first_seq = ext
        if self.max_seq_ext is None or ext > self.max_seq_ext:
            self.max_seq_ext = ext
        return self._assembler.add(packet)

    def _on_frame(self, data: bytes, timestamp: int, ssrc: int, discontinuity: bool) -> None:
        self.arrivals.append(time.monotonic())
        if self.loop is not None:
            self.indices.append(self.loop.identify(data) if self.kind == "video" else self.loop.identify_audio(data))

    def expected_packets(self) -> int:
        if self.first_seq is None or self.max_seq_ext is None:
            return 0
        return self.max_seq_ext - self.first_seq + 1
