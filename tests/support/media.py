"""Synthetic media for tests and the benchmark: the SDK's frame-counter video (callin_sdk/media.py: its pattern,
`counter_frame` and `read_counter`) with send times noted, the SDK's tone with numpy samples, and reading tones back."""

from __future__ import annotations

import math
import time

import av
import numpy as np

from callin_sdk.media import CounterVideoTrack as SdkCounterVideoTrack
from callin_sdk.media import ToneAudioTrack as SdkToneAudioTrack
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


class ToneAudioTrack(SdkToneAudioTrack):
    """The SDK's tone (48 kHz mono, 20 ms frames), its samples computed with numpy: cheap enough for many peers on
    one loaded machine."""

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__(frequency, amplitude)

    def samples_from(self, first: int) -> bytes:
        t = (np.arange(self.samples) + first) / self.rate
        return (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16).tobytes()


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


def busy_counter_frames(make=counter_frame, seed: int = 1):
    """A replacement for callin_sdk.media.counter_frame (`make`): noise below the counter cells, so that a caller's
    encoder really uses its ~500 kbit/s at 320x240 (the slow-viewer test and bench/slow_viewer.py)."""
    rng = np.random.default_rng(seed)

    def frame(counter: int, width: int = 320, height: int = 240) -> av.VideoFrame:
        img = make(counter, width, height).to_ndarray(format="rgb24")
        img[40:] = rng.integers(0, 255, size=img[40:].shape, dtype=np.uint8)
        return av.VideoFrame.from_ndarray(img, format="rgb24")

    return frame
