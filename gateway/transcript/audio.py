"""Opus packets to 16 kHz mono PCM (PyAV's decoder and resampler): what the recognisers take."""

from __future__ import annotations

import av

from .engine import SAMPLE_RATE


class OpusToPcm:
    """One incoming audio stream's decoder. A packet that does not decode is skipped (its 20 ms are lost)."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("opus", "r")
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self.decoded = 0
        self.errors = 0

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            return b""
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except (av.error.FFmpegError, ValueError):
            self.errors += 1
            return b""
        out = []
        for frame in frames:
            for resampled in self._resampler.resample(frame):
                out.append(bytes(resampled.planes[0])[: resampled.samples * 2])
        self.decoded += 1
        return b"".join(out)
