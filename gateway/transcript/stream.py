"""One participant's recognition stream: feed it audio as it arrives, get partial and final results.

Audio is decoded (audio.py) and endpointed (endpoint.py) here, on the media event loop (a few microseconds per
20 ms packet); recognition runs in the engine (a process pool, or a thread for HTTP). Final results come out in
the order their utterances ended; a partial result is asked for at most every `partial_interval_s` while an
utterance grows, only when the engine is idle for this stream, and dropped if its utterance has ended meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .audio import OpusToPcm
from .endpoint import Endpointer, Utterance
from .engine import BYTES_PER_SECOND, EngineFailed, Recognition, SpeechEngine, TranscriptConfig

log = logging.getLogger(__name__)

FRAME_BYTES = 640  # 20 ms at 16 kHz mono s16


@dataclass(frozen=True, slots=True)
class Result:
    utterance: int  # 1, 2, 3 ... within this stream
    text: str
    final: bool
    start_s: float  # from the start of the transcript
    end_s: float


ResultSink = Callable[[Result], None]


class SpeechStream:
    def __init__(self, engine: SpeechEngine, config: TranscriptConfig, sink: ResultSink,
                 started: float | None = None) -> None:
        self._engine = engine
        self._config = config
        self._sink = sink
        self._started = time.monotonic() if started is None else started
        self._endpointer = Endpointer(silence_s=config.endpoint_silence_s, max_s=config.max_utterance_s)
        self._decoder = OpusToPcm()
        self._pending = b""
        self._utterance = 0
        self._anchor: float | None = None  # transcript time minus stream (audio) time, updated as audio arrives
        self._last_partial = 0.0
        self._partial: asyncio.Task[None] | None = None
        self._finals: asyncio.Queue[tuple[int, Utterance, float] | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.closed = False
        self.failures = 0

    def new_source(self) -> None:
        """The participant's audio now comes from a new leg (a new peer connection): a new decoder."""
        self._decoder = OpusToPcm()

    def feed_opus(self, payload: bytes) -> None:
        if not self.closed:
            self.feed_pcm(self._decoder.decode(payload))

    def feed_pcm(self, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        # Transcript time of the stream's audio time: audio that stopped coming (a gap, a late start) moves it on;
        # audio that comes in a burst (after a stall) does not move it back.
        anchor = time.monotonic() - self._started - (self._endpointer.time_s + len(pcm) / BYTES_PER_SECOND)
        self._anchor = anchor if self._anchor is None else max(self._anchor, anchor)
        data = self._pending + pcm
        usable = len(data) - len(data) % FRAME_BYTES
        self._pending = data[usable:]
        for offset in range(0, usable, FRAME_BYTES):
            ended = self._endpointer.feed(data[offset:offset + FRAME_BYTES])
            if ended is not None:
                self._final(ended)
        self._maybe_partial()

    def _final(self, utterance: Utterance) -> None:
        if utterance.speech_s < self._config.min_speech_s:
            return
        self._utterance += 1
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._recognise_finals())
        self._finals.put_nowait((self._utterance, utterance, self._anchor or 0.0))

    def _maybe_partial(self) -> None:
        current = self._endpointer.current
        now = time.monotonic()
        if (current is None or not self._engine.partials or self._partial is not None or self._engine.busy
                or now - self._last_partial < self._config.partial_interval_s or self._finals.qsize()
                or current.duration_s < self._config.partial_interval_s):
            return
        self._last_partial = now
        self._partial = asyncio.ensure_future(self._recognise_partial(self._utterance + 1, current))

    async def _recognise_partial(self, number: int, utterance: Utterance) -> None:
        try:
            result = await self._engine.recognize(bytes(utterance.pcm), final=False)
            if result.text and not self.closed and self._utterance < number and self._endpointer.current is utterance:
                self._emit(number, utterance, self._anchor or 0.0, result, final=False)
        except EngineFailed as exc:
            log.warning("transcript: partial result failed: %s", exc)
        finally:
            self._partial = None

    async def _recognise_finals(self) -> None:
        while True:
            item = await self._finals.get()
            if item is None:
                return
            number, utterance, anchor = item
            try:
                result = await self._engine.recognize(bytes(utterance.pcm), final=True)
            except EngineFailed as exc:
                self.failures += 1
                log.warning("transcript: an utterance could not be recognised: %s", exc)
                continue
            if result.text:
                self._emit(number, utterance, anchor, result, final=True)

    def _emit(self, number: int, utterance: Utterance, anchor: float, result: Recognition, final: bool) -> None:
        start = utterance.start_s + anchor
        self._sink(Result(utterance=number, text=result.text, final=final, start_s=round(max(0.0, start), 2),
                          end_s=round(max(0.0, start + utterance.duration_s), 2)))

    async def finish(self) -> None:
        """No more audio: the utterance in progress is recognised, then every final result is out."""
        if self.closed:
            return
        self.closed = True
        ended = self._endpointer.flush()
        if ended is not None:
            self._final(ended)
        if self._partial is not None:
            self._partial.cancel()
        if self._worker is not None:
            self._finals.put_nowait(None)
            await self._worker

    def cancel(self) -> None:
        """Stop at once (the plane is closing): results not out yet are lost."""
        self.closed = True
        for task in (self._partial, self._worker):
            if task is not None:
                task.cancel()
