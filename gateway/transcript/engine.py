"""What a speech-to-text engine is to the transcript pipeline, and how one is chosen by setting.

An engine recognises one utterance of 16 kHz mono signed 16-bit little-endian PCM at a time, as a whole (a final
result) or as it is so far (a partial result); stream.py keeps the utterance and asks for partials while it grows.
An engine that can decode incrementally (StreamingEngine: pocketsphinx) also opens a RecognitionStream per
participant, fed the utterance's audio as it arrives, so a partial or a final costs only the audio not yet decoded.
Engines run their work off the caller's event loop (recognition processes, a thread for HTTP).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

SAMPLE_RATE = 16000
BYTES_PER_SECOND = SAMPLE_RATE * 2


class EngineName(StrEnum):
    POCKETSPHINX = "pocketsphinx"
    HTTP = "http"


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float  # from the start of the utterance
    end_s: float


@dataclass(frozen=True, slots=True)
class Recognition:
    text: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptConfig:
    """The media plane's transcript settings (from Settings.transcript_*; pickled to media workers)."""

    engine: EngineName = EngineName.POCKETSPHINX
    workers: int = 1  # recognition processes per media process (pocketsphinx)
    decoders: int = 4  # pocketsphinx: per process; 1 = whole utterances only (no incremental decoding)
    grammar: str | None = None  # pocketsphinx: a JSGF grammar file instead of the general language model
    http_url: str | None = None
    http_timeout_s: float = 10.0
    http_token: str | None = None  # sent as "Authorization: Bearer <token>"
    endpoint_silence_s: float = 0.5
    partial_interval_s: float = 1.0
    max_utterance_s: float = 15.0
    min_speech_s: float = 0.2


class SpeechEngine(Protocol):
    """Recognises utterances. `partials`: whether asking for a partial result is worth it (it costs a decode);
    `busy`: recognitions are under way (partials are asked for only when it is not: finals never wait for them)."""

    name: str
    partials: bool

    @property
    def busy(self) -> bool: ...

    def warm(self) -> None:
        """Get ready (start processes, load models) in the background: a first transcript is about to start."""

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        """The words in `pcm` (16 kHz mono s16le): the utterance so far (final False) or whole (final True)."""

    async def close(self) -> None: ...


class RecognitionStream(Protocol):
    """One participant's utterances, decoded as their audio arrives (made by StreamingEngine.open_stream).

    Each call sends its request at once, in the order of the calls (a final goes before the next utterance's audio);
    the awaitables give the results later."""

    def feed(self, pcm: bytes) -> None:
        """More audio of the utterance in progress (the first starts one); never blocks."""

    def partial(self) -> Awaitable[Recognition]:
        """The words of the utterance so far (what was fed)."""

    def final(self, pcm: bytes) -> Awaitable[Recognition]:
        """The utterance's last audio (may be empty): its words. The next feed starts a new utterance.
        EngineFailed if its audio was lost (the engine's process died): the caller recognises it whole instead."""

    def abandon(self) -> None:
        """The utterance in progress will not be asked for (the stream stops)."""

    def close(self) -> None: ...


@runtime_checkable
class StreamingEngine(Protocol):
    """The capability of an engine that decodes incrementally."""

    def open_stream(self) -> RecognitionStream | None:
        """A stream for one participant, or None when this engine recognises whole utterances only (a setting)."""


def open_stream(engine: SpeechEngine) -> RecognitionStream | None:
    return engine.open_stream() if isinstance(engine, StreamingEngine) else None


class EngineFailed(RuntimeError):
    """An utterance could not be recognised (the engine's process died, the service answered badly)."""


def create_engine(config: TranscriptConfig) -> SpeechEngine:
    if config.engine is EngineName.HTTP:
        from .httpengine import HttpEngine

        if not config.http_url:
            raise ValueError("transcript_engine=http needs transcript_http_url")
        return HttpEngine(config.http_url, config.http_timeout_s, config.http_token)
    from .sphinx import SphinxEngine

    return SphinxEngine(workers=config.workers, grammar=config.grammar, incremental=config.decoders > 1,
                        max_decoders=config.decoders)
