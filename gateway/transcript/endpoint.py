"""Voice activity and endpointing by energy: where an utterance starts and where it ends.

PCM comes in 20 ms frames. A frame is speech when its level is well above the stream's noise floor (which follows
the quietest recent frames) and above an absolute floor; an utterance starts at the first of a few speech frames
(with a little audio from before it, so the first consonant is kept) and ends after `silence_s` without speech, or
at `max_s` (cut there; the next one starts at once).
"""

from __future__ import annotations

import math
import operator
from array import array
from dataclasses import dataclass, field

from .engine import BYTES_PER_SECOND

FRAME_S = 0.02
ABSOLUTE_FLOOR_DBFS = -50.0
ABOVE_NOISE_DB = 12.0
START_FRAMES = 3  # consecutive speech frames that start an utterance
PRE_ROLL_FRAMES = 15  # 300 ms kept from before the start


def level_dbfs(pcm: bytes) -> float:
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return -120.0
    energy = sum(map(operator.mul, samples, samples)) / len(samples)
    return 10 * math.log10(energy / (32768.0 ** 2)) if energy > 0 else -120.0


@dataclass
class Utterance:
    pcm: bytearray
    start_s: float  # stream time of its first byte
    speech_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / BYTES_PER_SECOND


@dataclass
class Endpointer:
    silence_s: float = 0.5
    max_s: float = 15.0
    noise_db: float = -70.0
    _run: int = 0
    _silent_s: float = 0.0
    _time_s: float = 0.0  # stream time: audio seen so far
    _pre: list[bytes] = field(default_factory=list)
    current: Utterance | None = None

    def is_speech(self, pcm: bytes) -> bool:
        level = level_dbfs(pcm)
        # the floor follows quiet frames quickly and loud ones very slowly (speech must not raise it)
        rate = 0.2 if level < self.noise_db else 0.002
        self.noise_db += (level - self.noise_db) * rate
        return level > ABSOLUTE_FLOOR_DBFS and level > self.noise_db + ABOVE_NOISE_DB

    def feed(self, pcm: bytes) -> Utterance | None:
        """One frame of PCM. Returns an utterance when one has just ended."""
        speech = self.is_speech(pcm)
        duration = len(pcm) / BYTES_PER_SECOND
        start_of_frame = self._time_s
        self._time_s += duration
        if self.current is None:
            self._pre.append(pcm)
            del self._pre[:-PRE_ROLL_FRAMES]
            self._run = self._run + 1 if speech else 0
            if self._run >= START_FRAMES:
                pre = b"".join(self._pre)
                self.current = Utterance(bytearray(pre), start_of_frame + duration - len(pre) / BYTES_PER_SECOND,
                                         speech_s=self._run * duration)
                self._pre, self._run, self._silent_s = [], 0, 0.0
            return None
        utterance = self.current
        utterance.pcm += pcm
        if speech:
            utterance.speech_s += duration
            self._silent_s = 0.0
        else:
            self._silent_s += duration
        if self._silent_s >= self.silence_s or utterance.duration_s >= self.max_s:
            return self.flush()
        return None

    def flush(self) -> Utterance | None:
        """The utterance in progress, ended now (the stream stops)."""
        utterance, self.current = self.current, None
        self._silent_s = 0.0
        return utterance

    @property
    def time_s(self) -> float:
        return self._time_s
