"""Mixing the participants' voices of a recording into one Opus track (`mixed_audio`): audio only is decoded.

Runs in the recording's writer thread. Each participant's Opus frames are decoded by a decoder of its own and added,
at their place on the file's timeline, into 20 ms slots; a slot is encoded (one mono Opus frame) once the newest
audio is MIX_DELAY_MS past it, so that the other voices of the same moment (their packets arrive with some jitter)
are in it. Slots nobody spoke in (a paused span, a gap in every stream) are not written: the file has no audio
packets there, as in a recording with separate tracks.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator

import av
import numpy as np

RATE = 48000
SLOT = 960  # samples: 20 ms
MIX_DELAY_MS = 300


class Mixer:
    def __init__(self) -> None:
        self._decoders: dict[str, av.CodecContext] = {}
        self._slots: dict[int, np.ndarray] = {}
        self._newest = 0  # sample position of the end of the newest audio
        self._encoder = av.CodecContext.create("libopus", "w")
        self._encoder.sample_rate = RATE
        self._encoder.layout = "mono"
        self._encoder.format = "s16"
        self._encoder.time_base = fractions.Fraction(1, RATE)
        self._encoder.bit_rate = 48000
        self._last_out = -1  # ms of the last packet out (monotonic)

    def add(self, participant: str, data: bytes, pts_ms: int) -> Iterator[tuple[bytes, int]]:
        """One Opus frame of one participant; yields the mixed Opus packets (data, pts in ms) now due."""
        decoder = self._decoders.get(participant)
        if decoder is None:
            decoder = self._decoders[participant] = av.CodecContext.create("opus", "r")
        position = pts_ms * RATE // 1000
        try:
            frames = decoder.decode(av.Packet(data))
        except av.FFmpegError:
            frames = []
        for frame in frames:
            samples = frame.to_ndarray().astype(np.float32)
            if frame.format.is_planar:
                mono = samples.mean(axis=0)
            else:
                mono = samples.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if frame.format.name.startswith("s16"):
                mono /= 32768.0
            self._place(mono, position)
            position += len(mono)
        self._newest = max(self._newest, position)
        yield from self._due(self._newest - MIX_DELAY_MS * RATE // 1000)

    def flush(self) -> Iterator[tuple[bytes, int]]:
        """Everything still held (the end of the recording)."""
        yield from self._due(None)
        yield from self._packets(self._encoder.encode(None))

    def _place(self, mono: np.ndarray, position: int) -> None:
        done = 0
        while done < len(mono):
            index, offset = divmod(position + done, SLOT)
            slot = self._slots.get(index)
            if slot is None:
                slot = self._slots[index] = np.zeros(SLOT, dtype=np.float32)
            take = min(SLOT - offset, len(mono) - done)
            slot[offset:offset + take] += mono[done:done + take]
            done += take

    def _due(self, before: int | None) -> Iterator[tuple[bytes, int]]:
        for index in sorted(self._slots):
            if before is not None and (index + 1) * SLOT > before:
                break
            mixed = np.clip(self._slots.pop(index), -1.0, 1.0)
            frame = av.AudioFrame.from_ndarray((mixed * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate = RATE
            frame.pts = index * SLOT
            yield from self._packets(self._encoder.encode(frame))

    def _packets(self, packets: list[av.Packet]) -> Iterator[tuple[bytes, int]]:
        for packet in packets:
            pts = max(int((packet.pts or 0) * 1000 // RATE), self._last_out + 1)
            self._last_out = pts
            yield bytes(packet), pts
