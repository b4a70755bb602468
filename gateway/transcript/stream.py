"""One participant's recognition stream: feed it audio as it arrives, get partial and final results.

Audio is decoded (audio.py) and endpointed (endpoint.py) here, on the media event loop (a few microseconds per
20 ms packet); recognition runs in the engine (a process pool, or a thread for HTTP). Final results come out in
the order their utterances ended; a partial result is asked for at most every `partial_interval_s` while an
utterance grows, only when the engine is idle for this stream, and dropped if its utterance has ended meanwhile.

With an engine that decodes incrementally (engine.StreamingEngine), the utterance's audio is sent to the stream's
RecognitionStream as it arrives (every FEED_S), a partial asks only for the words so far, and the final sends the
tail; a final whose incremental decoding was lost (its recognition process died) is recognised whole instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .audio import OpusToPcm
from .endpoint import Endpointer, Utterance
from .engine import BYTES_PER_SECOND, EngineFailed, Recognition, SpeechEngine, TranscriptConfig, open_stream

log = logging.getLogger(__name__)

FRAME_BYTES = 640  # 20 ms at 16 kHz mono s16
FEED_S = 0.1  # incremental engines get the utterance's audio in pieces of this length (and before each partial)


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
        self._finals: asyncio.Queue[tuple[int, Utterance, float, Awaitable[Recognition] | None] | None] = \
            asyncio.Queue()
        self._stream = open_stream(engine)  # None: whole utterances only
        self._fed: Utterance | None = None  # the utterance being fed to `_stream` ...
        self._fed_bytes = 0  # ... and how much of it
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
        self._feed_stream(FEED_S)
        self._maybe_partial()

    def _feed_stream(self, at_least_s: float) -> None:
        """Sends the current utterance's new audio to the incremental engine (when there is `at_least_s` of it)."""
        current = self._endpointer.current
        if self._stream is None or current is None:
            return
        if self._fed is not current:
            self._fed, self._fed_bytes = current, 0
        if len(current.pcm) - self._fed_bytes >= max(1, at_least_s * BYTES_PER_SECOND):
            self._stream.feed(bytes(current.pcm[self._fed_bytes:]))
            self._fed_bytes = len(current.pcm)

    def _final(self, utterance: Utterance) -> None:
        fed = self._fed is utterance
        tail = bytes(utterance.pcm[self._fed_bytes:]) if fed else bytes(utterance.pcm)
        self._fed, self._fed_bytes = None, 0
        if utterance.speech_s < self._config.min_speech_s:
            if fed and self._stream is not None:
                self._stream.abandon()
            return
        self._utterance += 1
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._recognise_finals())
        # an incremental engine is sent the end now, before any audio of the next utterance
        pending = self._stream.final(tail) if self._stream is not None else None
        self._finals.put_nowait((self._utterance, utterance, self._anchor or 0.0, pending))

    def _maybe_partial(self) -> None:
        current = self._endpointer.current
        now = time.monotonic()
        if (current is None or not self._engine.partials or self._partial is not None
                or (self._stream is None and self._engine.busy)  # (incremental partials cost next to nothing)
                or now - self._last_partial < self._config.partial_interval_s or self._finals.qsize()
                or current.duration_s < self._config.partial_interval_s):
            return
        self._last_partial = now
        if self._stream is not None:
            self._feed_stream(0)
            pending = self._stream.partial()
        else:
            pending = self._engine.recognize(bytes(current.pcm), final=False)
        self._partial = asyncio.ensure_future(self._recognise_partial(self._utterance + 1, current, pending))

    async def _recognise_partial(self, number: int, utterance: Utterance, pending: Awaitable[Recognition]) -> None:
        try:
            result = await pending
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
            number, utterance, anchor, pending = item
            try:
                result = await self._recognised(utterance, pending)
            except EngineFailed as exc:
                self.failures += 1
                log.warning("transcript: an utterance could not be recognised: %s", exc)
                continue
            if result.text:
                self._emit(number, utterance, anchor, result, final=True)

    async def _recognised(self, utterance: Utterance, pending: Awaitable[Recognition] | None) -> Recognition:
        if pending is not None:
            try:
                return await pending
            except EngineFailed as exc:
                log.warning("transcript: incremental recognition lost (%s): the utterance is recognised whole", exc)
        return await self._engine.recognize(bytes(utterance.pcm), final=True)

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
            try:
                await self._worker
            finally:
                self._close_stream()
        else:
            self._close_stream()

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def cancel(self) -> None:
        """Stop at once (the plane is closing): results not out yet are lost."""
        self.closed = True
        for task in (self._partial, self._worker):
            if task is not None:
                task.cancel()
        if self._stream is not None:
            self._stream.abandon()
            self._close_stream()
