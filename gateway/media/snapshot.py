"""A still of the caller's camera or screen, decoded on demand only (the relay itself never decodes)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
from ..errors import GatewayError
from .aiortc_internals import h264_depayload, vp8_depayload
from .forward import Producer


class SnapshotError(GatewayError):
    code = "snapshot_failed"
    status = 409


def _frames_from_packets(codec: str, packets: list) -> list[bytes]:
    """Whole encoded frames (keyframe first) from the producer's cached packets."""
    depayload = vp8_depayload if codec == "VP8" else h264_depayload
    frames: list[bytes] = []
    current: list[bytes] = []
    timestamp = None
    for packet in packets:
        if timestamp is not None and packet.timestamp != timestamp:
            frames.append(b"".join(current))
            current = []
        timestamp = packet.timestamp
        if packet.payload:
            current.append(depayload(packet.payload))
        if packet.marker:
            frames.append(b"".join(current))
            current, timestamp = [], None
    return frames


def _decode_to_jpeg(codec: str, frames: list[bytes], quality: int = 5) -> tuple[bytes, int, int]:
    decoder = av.CodecContext.create("vp8" if codec == "VP8" else "h264", "r")
    picture = None
    for data in frames:
        for frame in decoder.decode(av.Packet(data)):
            picture = frame
    if picture is None:
        raise SnapshotError("the caller's video could not be decoded yet", retryable=True)
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = picture.width, picture.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 30)
    encoder.options = {"qscale": str(quality)}
    encoder.qmin = encoder.qmax = quality
    packets = encoder.encode(picture.reformat(format="yuvj420p"))
    packets += encoder.encode(None)
    return b"".join(bytes(p) for p in packets), picture.width, picture.height


async def snapshot(producer: Producer, timeout: float = 3.0) -> tuple[bytes, int, int]:
    """JPEG of the latest picture: from the cached keyframe and what followed it, or a fresh keyframe."""
    if producer.kind != "video" or producer.codec not in ("VP8", "H264"):
        raise SnapshotError("the caller sends no video", code="no_video")
    deadline = time.monotonic() + timeout
    def cached() -> bool:
        return bool(producer.gop or producer.gop_frames)

    if not cached() or time.monotonic() - producer.gop_started > 1.0:
        started = producer.gop_started
        producer.request_keyframe()
        while producer.gop_started == started or not cached():
            if time.monotonic() > deadline:
                raise SnapshotError("no picture from the caller in time", retryable=True)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the keyframe's packets all arrive
    frames = list(producer.gop_frames) or _frames_from_packets(producer.codec, producer.gop_packets())
    if not frames:
        raise SnapshotError("no complete picture yet", retryable=True)
    return await asyncio.get_running_loop().run_in_executor(None, _decode_to_jpeg, producer.codec, frames)
