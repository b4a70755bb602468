"""Synthetic media for tests and the benchmark: video frames whose pixels carry a counter, tones by frequency."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import numpy as np
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90000
BITS = 16
CELL = 16  # pixels per bit cell; survives VP8 compression at low bitrates


def counter_frame(counter: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    """A grey frame with a row of black/white cells spelling `counter` (16 bits) and its complement."""
    img = np.full((height, width, 3), 128, dtype=np.uint8)
    for i in range(BITS):
        bit = (counter >> i) & 1
        x = (i % 16) * (width // 16)
        img[0:CELL, x : x + width // 16] = 255 if bit else 0
        img[CELL : 2 * CELL, x : x + width // 16] = 0 if bit else 255
    return av.VideoFrame.from_ndarray(img, format="rgb24")


def read_counter(frame: av.VideoFrame) -> int | None:
    """Read the counter back; None when the cells are not clean (not our frame, or mangled)."""
    img = frame.to_ndarray(format="gray")
    width = img.shape[1]
    value = 0
    for i in range(BITS):
        x = (i % 16) * (width // 16)
        top = float(img[2 : CELL - 2, x + 3 : x + width // 16 - 3].mean())
        bottom = float(img[CELL + 2 : 2 * CELL - 2, x + 3 : x + width // 16 - 3].mean())
        if abs(top - bottom) < 100:
            return None
        if top > bottom:
            value |= 1 << i
    return value


class CounterVideoTrack(MediaStreamTrack):
    """Video at `fps` whose frame n carries n in its pixels."""

    kind = "video"

    def __init__(self, fps: int = 30, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.fps = fps
        self.width = width
        self.height = height
        self.counter = 0
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.counter / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = counter_frame(self.counter, self.width, self.height)
        frame.pts = int(self.counter * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent_at[self.counter] = time.monotonic()
        self.counter += 1
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
