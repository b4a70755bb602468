"""Synthetic media for tests and the benchmark: the SDK's frame-counter video (callin_sdk/media.py: its pattern,
`counter_frame` and `read_counter`) with send times noted, and tones by frequency (numpy: cheap enough for many
peers on one loaded machine)."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack

from callin_sdk.media import CounterVideoTrack as SdkCounterVideoTrack
from callin_sdk.media import counter_frame, read_counter

__all__ = ["CounterVideoTrack", "ToneAudioTrack", "audio_frame_mono", "counter_frame", "dominant_frequency",
           "read_counter"]


class CounterVideoTrack(SdkCounterVideoTrack):
    """The SDK's frame-counter video (30 fps here) that also notes when each frame was handed to the sender:
    `sent_at[n]` (time.monotonic()) for frame n, for the tests and benchmarks that measure delays."""

    def __init__(self, fps: int = 30, width: int = 320, height: int = 240) -> None:
        super().__init__(fps, width, height)
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        frame = await super().recv()
        self.sent_at[self.counter - 1] = time.monotonic()
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at `frequency` Hz, 48 kHz mono, 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.rate = 48000
        self.samples = int(AUDIO_PTIME * self.rate)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self._pts / self.rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(self.samples) + self._pts) / self.rate
        wave = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += self.samples
        return frame


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency in a block of mono samples."""
    samples = samples.astype(np.float64)
    samples -= samples.mean()
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(freqs[int(np.argmax(spectrum))])


def audio_frame_mono(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if data.shape[0] == 1 and channels > 1:  # packed interleaved
        data = data.reshape(-1, channels).T
    return data.mean(axis=0)
