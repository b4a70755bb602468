"""The default engine: pocketsphinx (CMU Sphinx) with its US-English acoustic model and language model, or a JSGF
grammar when one is set (a closed vocabulary recognises far better: digits, menu words).

Decoding is CPU work that holds the interpreter: it runs in recognition processes (started with "spawn": the media
process has threads), so the media event loop never waits for it. Utterances are decoded incrementally: each
participant's stream is bound to one process (affinity), its audio is sent there as it arrives and fed to a decoder
of its own for the utterance (start_utt once, process_raw(full_utt=False) per piece), so a partial result costs only
hyp() on what was already decoded and a final only the tail and end_utt(). A process holds at most `max_decoders`
decoders (about 90 MB each with the general model, made when first needed and kept for the next utterances); one is
always left for whole-utterance decoding, which is what an utterance gets when no decoder was free at its start,
after its process died, or in every case with `incremental=False` (the former behaviour: bench/transcript.py's
baseline). Within a process, finals are decoded before any other stream's pending audio or partial.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import queue
import threading
from typing import Any

from .engine import BYTES_PER_SECOND, SAMPLE_RATE, EngineFailed, Recognition, Word

log = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # pocketsphinx's frame rate (10 ms frames)
MAX_DECODERS = 4  # per recognition process: 1 for whole utterances + up to 3 utterances decoded as they arrive
PRIME_S = 1.5  # an utterance is decoded as it arrives from then on, with the cepstral mean of these first seconds
PRIME_BYTES = int(PRIME_S * BYTES_PER_SECOND)
PIECE_BYTES = BYTES_PER_SECOND // 4  # audio is decoded in pieces of at most 250 ms: a final waits at most one piece
PARENT_CHECK_S = 1.0  # a recognition process whose parent died (SIGKILL) exits within this
FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]")


def make_decoder(grammar: str | None) -> Any:
    from pocketsphinx import Decoder

    # pl_window 5: phone lookahead prunes the search (15-35% less CPU measured here, the same words on the tests'
    # phrases); everything else is pocketsphinx's default configuration (live cepstral mean normalisation).
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", pl_window=5)
    if grammar:
        decoder.add_jsgf_file("grammar", grammar)
        decoder.activate_search("grammar")
    return decoder


def words_of(decoder: Any) -> Recognition:
    """The decoder's best hypothesis (after end_utt: with word times from the start of the utterance)."""
    hyp = decoder.hyp()
    if hyp is None or not hyp.hypstr.strip():
        return Recognition(text="")
    words = tuple(
        Word(text=seg.word, start_s=seg.start_frame / FRAMES_PER_SECOND, end_s=seg.end_frame / FRAMES_PER_SECOND)
        for seg in decoder.seg()
        if seg.word not in FILLERS and not seg.word.startswith("++"))
    return Recognition(text=hyp.hypstr.strip(), words=words)


def decode_whole(decoder: Any, pcm: bytes) -> Recognition:
    """One utterance from its start, all at once (full_utt)."""
    decoder.start_utt()
    try:
        decoder.process_raw(pcm, no_search=False, full_utt=True)
    finally:
        decoder.end_utt()
    return words_of(decoder)


# -- the recognition process ------------------------------------------------------------------------------------
# Requests (tuples): ("feed", stream, pcm)  ("partial", stream, rid)  ("final", stream, rid, pcm)
# ("decode", None, rid, pcm) (a whole utterance)  ("drop", stream) (the utterance in progress is abandoned)
# ("forget", stream) (the stream ended)  None (exit). Replies: (rid, ok, Recognition or a reason).
URGENT = ("final", "decode")


class _Utterance:
    __slots__ = ("decoder", "pcm", "started", "failed")

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder  # None: no decoder was free, the audio is kept and decoded whole at the end
        self.pcm = bytearray()  # audio not decoded yet (until PRIME_BYTES have come: then the decoder starts)
        self.started = False
        self.failed: str | None = None


class Recogniser:
    """A recognition process's state: its decoders and the utterances being decoded (one per stream).

    pocketsphinx normalises an utterance decoded whole by its own cepstral mean (batch CMN, its default); decoded
    in pieces it can only use a mean known beforehand (live CMN), and a wrong one costs words. So an utterance's
    decoding starts once its first PRIME_S have come: their mean (a feature pass of the whole-utterance decoder,
    no search) is the mean it is decoded with (on espeak-ng's phrases in 4 voices and 2 speeds, with noise: the
    required words in 14 of 24 utterances, against 8 decoded whole and 9 with a mean of the first 1.0 s). A shorter
    utterance is decoded whole at its end, and a partial asked for before then is what has come decoded whole, as
    before (only when the process has nothing else to do)."""

    def __init__(self, grammar: str | None, max_decoders: int) -> None:
        self._grammar = grammar
        self._max = max(1, max_decoders)
        self._whole = make_decoder(grammar)  # only ever used for whole utterances (it keeps batch CMN)
        self._free: list[Any] = []
        self._made = 1
        self._utterances: dict[int, _Utterance] = {}
        self.ops: list[tuple[Any, ...]] = []

    @property
    def decoders(self) -> int:
        return self._made

    def add(self, op: tuple[Any, ...]) -> None:
        if op[0] == "feed":  # in pieces, so that another stream's final waits at most one piece
            pcm = op[2]
            self.ops.extend(("feed", op[1], pcm[i:i + PIECE_BYTES]) for i in range(0, len(pcm), PIECE_BYTES))
        else:
            self.ops.append(op)

    def next_op(self) -> tuple[Any, ...]:
        """The oldest op, unless a final (or whole decode) waits: then that, or the oldest op of its stream."""
        urgent = next((i for i, op in enumerate(self.ops) if op[0] in URGENT), None)
        if urgent is None or self.ops[urgent][1] is None:
            return self.ops.pop(0 if urgent is None else urgent)
        stream = self.ops[urgent][1]
        first = next(i for i, op in enumerate(self.ops) if op[1] == stream)
        return self.ops.pop(first)

    def handle(self, op: tuple[Any, ...]) -> tuple[int, bool, Any] | None:
        kind, stream = op[0], op[1]
        if kind == "decode":
            return op[2], True, decode_whole(self._whole, op[3])
        if kind == "feed":
            self._feed(stream, op[2])
            return None
        if kind == "partial":
            utterance = self._utterances.get(stream)
            if utterance is None or utterance.failed or not (utterance.started or utterance.pcm):
                return op[2], True, Recognition(text="")
            if not utterance.started:  # before PRIME_S, or no decoder was free: what has come, decoded whole, ...
                if self.ops:  # ... only when nothing else waits (as partials were only asked of an idle pool)
                    return op[2], True, Recognition(text="")
                return op[2], True, decode_whole(self._whole, bytes(utterance.pcm))
            hyp = utterance.decoder.hyp()
            return op[2], True, Recognition(text=hyp.hypstr.strip() if hyp is not None else "")
        if kind == "final":
            utterance = self._utterances.pop(stream, None) or _Utterance(None)
            try:
                self._decode(utterance, op[3])
                if utterance.failed:
                    if utterance.started:
                        utterance.decoder.end_utt()
                    return op[2], False, utterance.failed
                if not utterance.started:
                    return op[2], True, decode_whole(self._whole, bytes(utterance.pcm))
                utterance.decoder.end_utt()
                return op[2], True, words_of(utterance.decoder)
            finally:
                self._release(utterance)
        if kind in ("drop", "forget"):
            utterance = self._utterances.pop(stream, None)
            if utterance is not None:
                if utterance.started:
                    utterance.decoder.end_utt()
                self._release(utterance)
            return None
        raise ValueError(f"unknown request {kind!r}")

    def _feed(self, stream: int, pcm: bytes) -> None:
        utterance = self._utterances.get(stream)
        if utterance is None:
            utterance = self._utterances[stream] = _Utterance(self._stream_decoder())
        self._decode(utterance, pcm)

    def _decode(self, utterance: _Utterance, pcm: bytes) -> None:
        if utterance.failed:
            return
        if not utterance.started:
            utterance.pcm += pcm
            if utterance.decoder is None or len(utterance.pcm) < PRIME_BYTES:
                return
            try:
                self._whole.start_utt()
                self._whole.process_raw(bytes(utterance.pcm[:PRIME_BYTES]), no_search=True, full_utt=True)
                self._whole.end_utt()
                utterance.decoder.set_cmn(self._whole.get_cmn(False))
                utterance.decoder.start_utt()
            except Exception as exc:  # noqa: BLE001 - the utterance fails, the process carries on
                utterance.failed = f"decoding failed: {exc}"
                return
            utterance.started = True
            pcm, utterance.pcm = bytes(utterance.pcm), bytearray()
        if pcm:
            try:
                utterance.decoder.process_raw(pcm, no_search=False, full_utt=False)
            except Exception as exc:  # noqa: BLE001 - the utterance fails, the process carries on
                utterance.failed = f"decoding failed: {exc}"

    def _stream_decoder(self) -> Any:
        """A decoder for an utterance decoded as it arrives, or None (then it is decoded whole at its end)."""
        if self._free:
            return self._free.pop()
        if self._made < self._max:
            self._made += 1
            return make_decoder(self._grammar)
        return None

    def _release(self, utterance: _Utterance) -> None:
        if utterance.decoder is not None:
            self._free.append(utterance.decoder)
            utterance.decoder = None


def serve(requests: Any, replies: Any, grammar: str | None, max_decoders: int) -> None:
    """A recognition process's main: requests in order of arrival, finals first, until None or the parent dies."""
    parent = os.getppid()
    recogniser = Recogniser(grammar, max_decoders)
    while True:
        while not recogniser.ops:
            try:
                op = requests.get(timeout=PARENT_CHECK_S)
            except queue.Empty:
                if os.getppid() != parent:
                    return
                continue
            if op is None:
                return
            recogniser.add(op)
        while True:  # everything that has come, so that a final can go before other streams' audio
            try:
                op = requests.get_nowait()
            except queue.Empty:
                break
            if op is None:
                return
            recogniser.add(op)
        op = recogniser.next_op()
        try:
            reply = recogniser.handle(op)
        except Exception as exc:  # noqa: BLE001 - answered, the process carries on
            reply = (op[2], False, f"{type(exc).__name__}: {exc}") if op[0] in ("partial", "final", "decode") \
                else None
        if reply is not None:
            replies.send(reply)


# -- the media process's side -----------------------------------------------------------------------------------
class _Process:
    """One recognition process: requests go in a multiprocessing queue (its feeder thread writes them: sending
    never blocks the event loop), replies come back on a pipe read by a thread. When the process dies, every
    request waiting for a reply fails with EngineFailed."""

    def __init__(self, grammar: str | None, max_decoders: int, loop: asyncio.AbstractEventLoop) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._loop = loop
        self._requests = ctx.Queue()
        reader, writer = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=serve, args=(self._requests, writer, grammar, max_decoders),
                                   name="callin-recogniser")
        self.process.start()
        writer.close()
        self._replies = reader
        self._waiting: dict[int, asyncio.Future[Recognition]] = {}
        self._ids = itertools.count(1)
        self.alive = True
        self.streams = 0  # streams bound to this process
        self.in_flight = 0
        threading.Thread(target=self._read, name="callin-recogniser-replies", daemon=True).start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, op: tuple[Any, ...]) -> None:
        if self.alive:
            self._requests.put(op)  # (pickled and written by the queue's feeder thread)

    def ask(self, kind: str, stream: int | None, *data: Any) -> asyncio.Future[Recognition]:
        """Sends a request now; the future gets its reply (EngineFailed if the process dies first)."""
        future: asyncio.Future[Recognition] = self._loop.create_future()
        if not self.alive:
            future.set_exception(EngineFailed("the recognition process died"))
            return future
        rid = next(self._ids)
        self._waiting[rid] = future
        self.in_flight += 1
        future.add_done_callback(lambda _: self._done(rid))
        self._requests.put((kind, stream, rid, *data))
        return future

    def _done(self, rid: int) -> None:
        self.in_flight -= 1
        self._waiting.pop(rid, None)

    def _read(self) -> None:
        try:
            while True:
                reply = self._replies.recv()
                self._call(self._resolve, *reply)
        except (EOFError, OSError):
            pass
        self._call(self._died)

    def _call(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _resolve(self, rid: int, ok: bool, payload: Any) -> None:
        future = self._waiting.get(rid)
        if future is None or future.done():
            return
        if ok:
            future.set_result(payload)
        else:
            future.set_exception(EngineFailed(f"recognition failed: {payload}"))

    def _died(self) -> None:
        if self.alive:
            log.warning("transcript: recognition process %s died (exit code %s)", self.pid, self.process.exitcode)
        self.alive = False
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(EngineFailed(f"the recognition process {self.pid} died"))

    def stop(self, timeout_s: float = 5.0) -> None:
        """(Blocking: run off the event loop.) Asks the process to exit; killed if it does not."""
        self.alive = False
        if self.process.is_alive():
            try:
                self._requests.put(None)
            except (OSError, ValueError):
                pass
            self.process.join(timeout_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout_s)
        self._requests.cancel_join_thread()  # what it had not read yet is of no use now
        self._requests.close()
        self._replies.close()


class SphinxStream:
    """One participant's recognition stream on its recognition process (see the module's doc). If that process
    dies during an utterance, the utterance's final fails (EngineFailed: stream.py decodes the whole utterance
    instead) and the next utterance goes to another process."""

    def __init__(self, engine: SphinxEngine, number: int) -> None:
        self._engine = engine
        self._number = number
        self._process: _Process | None = None
        self._open = False  # an utterance is being fed to `_process`
        self._broken = False  # ... and its process died meanwhile

    def _bound(self) -> _Process:
        process = self._process
        if process is None or not process.alive:
            if process is not None:
                process.streams -= 1
            process = self._process = self._engine._least_bound()
            process.streams += 1
        return process

    def _lost(self) -> bool:
        if self._open and self._process is not None and not self._process.alive:
            self._broken = True
        return self._broken

    def feed(self, pcm: bytes) -> None:
        if self._lost():
            return
        try:
            process = self._bound()
        except EngineFailed:  # the engine is closed: the final says so
            self._open = self._broken = True
            return
        self._open = True
        process.send(("feed", self._number, pcm))

    def partial(self) -> asyncio.Future[Recognition]:
        if self._lost() or not self._open or self._process is None:
            return self._engine._now(Recognition(text=""))
        return self._process.ask("partial", self._number)

    def final(self, pcm: bytes) -> asyncio.Future[Recognition]:
        """The utterance's last audio: its words (EngineFailed if its process died meanwhile)."""
        lost = self._lost()
        self._open = self._broken = False
        if lost:
            return self._engine._now(EngineFailed("the recognition process died during the utterance"))
        try:
            return self._bound().ask("final", self._number, pcm)
        except EngineFailed as exc:
            return self._engine._now(exc)

    def abandon(self) -> None:
        if self._open and not self._lost() and self._process is not None:
            self._process.send(("drop", self._number))
        self._open = self._broken = False

    def close(self) -> None:
        if self._process is not None:
            self._process.send(("forget", self._number))
            self._process.streams -= 1
            self._process = None
        self._open = self._broken = False


class SphinxEngine:
    name = "pocketsphinx"
    partials = True

    def __init__(self, workers: int = 1, grammar: str | None = None, incremental: bool = True,
                 max_decoders: int = MAX_DECODERS) -> None:
        self._workers = max(1, workers)
        self._grammar = grammar
        self.incremental = incremental
        self._max_decoders = max_decoders if incremental else 1
        self._processes: list[_Process] = []
        self._numbers = itertools.count(1)
        self._closed = False

    @property
    def busy(self) -> bool:
        """Every process has a whole-utterance recognition under way (incremental partials cost next to nothing:
        they are asked for even so)."""
        return len(self._processes) == self._workers and all(p.in_flight for p in self._processes)

    def _alive(self) -> list[_Process]:
        """The recognition processes, those that died replaced (made on first use: a plane that never transcribes
        starts none)."""
        if self._closed:
            raise EngineFailed("the speech engine is closed")
        dead = [p for p in self._processes if not p.alive or not p.process.is_alive()]
        for process in dead:
            process.alive = False
            self._processes.remove(process)
            threading.Thread(target=process.stop, args=(1.0,), daemon=True).start()
        loop = asyncio.get_running_loop()
        while len(self._processes) < self._workers:
            self._processes.append(_Process(self._grammar, self._max_decoders, loop))
        return self._processes

    def _least_bound(self) -> _Process:
        return min(self._alive(), key=lambda p: p.streams)

    def _least_busy(self) -> _Process:
        return min(self._alive(), key=lambda p: (p.in_flight, p.streams))

    @staticmethod
    def _now(result: Recognition | Exception) -> asyncio.Future[Recognition]:
        future: asyncio.Future[Recognition] = asyncio.get_running_loop().create_future()
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
        return future

    def warm(self) -> None:
        """Start the recognition processes now (each loads its model, about a second), not at the first utterance."""
        self._alive()

    def pids(self) -> list[int]:
        """The recognition processes' ids (for CPU accounting and fault tests)."""
        return [p.pid for p in self._processes if p.alive and p.pid is not None]

    def open_stream(self) -> SphinxStream | None:
        return SphinxStream(self, next(self._numbers)) if self.incremental else None

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        """A whole utterance. A recognition process that died (killed, out of memory) is replaced and the utterance
        tried once more on another; EngineFailed if that one dies too."""
        for attempt in (1, 2):
            try:
                return await self._least_busy().ask("decode", None, pcm)
            except EngineFailed:
                if attempt == 2 or self._closed:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        processes, self._processes = self._processes, []
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, p.stop) for p in processes))

