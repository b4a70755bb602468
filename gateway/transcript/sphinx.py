"""The default engine: pocketsphinx (CMU Sphinx) with its US-English acoustic model and language model, or a JSGF
grammar when one is set (a closed vocabulary recognises far better: digits, menu words).

Decoding is CPU work that holds the interpreter: it runs in a pool of processes (started with "spawn": the media
process has threads), each holding one decoder made once, so the media event loop never waits for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import multiprocessing
from typing import Any

from .engine import SAMPLE_RATE, EngineFailed, Recognition, Word

FRAMES_PER_SECOND = 100  # pocketsphinx's frame rate (10 ms frames)


class _Decoder:
    """One pool process's decoder, made by the pool's initializer (state of that process only)."""

    instance: Any = None

    @classmethod
    def make(cls, grammar: str | None) -> None:
        from pocketsphinx import Decoder

        # pl_window 5: phone lookahead prunes the search (15-35% less CPU measured here, the same words on the tests'
        # phrases); everything else is pocketsphinx's default configuration.
        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", pl_window=5)
        if grammar:
            decoder.add_jsgf_file("grammar", grammar)
            decoder.activate_search("grammar")
        cls.instance = decoder


def decode(pcm: bytes) -> Recognition:
    """Runs in a pool process: the words of one utterance, with times from its start."""
    decoder = _Decoder.instance
    if len(pcm) < 2:
        return Recognition(text="")  # (warm-up: the decoder is made)
    decoder.start_utt()
    try:
        decoder.process_raw(pcm, no_search=False, full_utt=True)
    finally:
        decoder.end_utt()
    hyp = decoder.hyp()
    if hyp is None or not hyp.hypstr.strip():
        return Recognition(text="")
    words = tuple(
        Word(text=seg.word, start_s=seg.start_frame / FRAMES_PER_SECOND, end_s=seg.end_frame / FRAMES_PER_SECOND)
        for seg in decoder.seg()
        if seg.word not in ("<s>", "</s>", "<sil>", "[NOISE]") and not seg.word.startswith("++")
    )
    return Recognition(text=hyp.hypstr.strip(), words=words)


class SphinxEngine:
    name = "pocketsphinx"
    partials = True

    def __init__(self, workers: int = 1, grammar: str | None = None) -> None:
        self._workers = max(1, workers)
        self._grammar = grammar
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        return self._in_flight >= self._workers

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:  # made on first use: a plane that never transcribes starts no process
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_Decoder.make, initargs=(self._grammar,))
        return self._pool

    def warm(self) -> None:
        """Start the recognition processes now (each loads its model, about a second), not at the first utterance."""
        future = self._executor().submit(decode, b"")
        future.add_done_callback(lambda f: f.exception())  # a failure shows at the first real utterance

    def pids(self) -> list[int]:
        """The recognition processes' ids (for CPU accounting and fault tests)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes)

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        """A recognition process that died (killed, out of memory) is replaced and the utterance tried once more
        on the new one; EngineFailed if that one dies too."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            pool = self._executor()
            self._in_flight += 1
            try:
                return await loop.run_in_executor(pool, decode, pcm)
            except concurrent.futures.process.BrokenProcessPool as exc:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise EngineFailed(f"the recognition process died: {exc}") from None
            finally:
                self._in_flight -= 1
        raise AssertionError("unreachable")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(pool.shutdown, wait=True, cancel_futures=True))
