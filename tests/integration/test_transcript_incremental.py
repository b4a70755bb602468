"""Incremental pocketsphinx decoding, with real decoders and real recognition processes (no call: the speech is
espeak-ng's, resampled to 16 kHz as the tap would give it): the words come out as when decoded whole, a final goes
before other streams' pending audio, a stream without a free decoder is decoded whole, and a recognition process
killed with SIGKILL during an utterance loses nothing: the utterance is recognised whole on its
replacement, the next one incrementally again, and no process is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import av
import pytest

from gateway.transcript.engine import TranscriptConfig
from gateway.transcript.sphinx import PIECE_BYTES, Recogniser, SphinxEngine, decode_whole
from gateway.transcript.stream import SpeechStream
from tests.support.speech import PHRASES, espeak_available, synthesize
from tests.support.waiting import until

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (scripts/setup.sh --test)")

FRAME = 640  # 20 ms at 16 kHz


def speech_16k(text: str) -> bytes:
    pcm = synthesize(text)
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.sample_rate = 48000
    frame.planes[0].update(pcm)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame))


def quiet(seconds: float) -> bytes:
    return bytes(int(16000 * seconds) * 2)


def words(text: str) -> set[str]:
    return set(text.lower().split())


def test_incremental_decoding_finds_the_words_and_a_final_goes_before_other_streams_audio():
    (first, first_words), (second, second_words) = list(PHRASES.items())[:2]
    one, two = quiet(0.3) + speech_16k(first) + quiet(0.5), quiet(0.3) + speech_16k(second) + quiet(0.5)
    recogniser = Recogniser(None, max_decoders=2)  # one for whole utterances, one for a stream
    recogniser.add(("feed", 1, one))
    assert recogniser.handle(recogniser.next_op()) is None  # stream 1's first piece: it takes the streaming decoder
    recogniser.add(("feed", 2, two))  # stream 2 finds none free: decoded whole at its end
    recogniser.add(("final", 2, 22, b""))
    order = []
    replies = {}
    while 22 not in replies:
        op = recogniser.next_op()
        order.append(op[1])
        reply = recogniser.handle(op)
        if reply is not None:
            replies[reply[0]] = reply
    # stream 2's final went before the audio of stream 1 that came first
    assert 1 not in order and sum(op[1] == 1 for op in recogniser.ops) == -(-len(one) // PIECE_BYTES) - 1
    recogniser.add(("partial", 1, 11))
    recogniser.add(("final", 1, 12, b""))
    while recogniser.ops:
        reply = recogniser.handle(recogniser.next_op())
        if reply is not None:
            replies[reply[0]] = reply
    assert replies[11][1] and replies[11][2].text  # the partial: what was decoded so far
    assert replies[12][1] and first_words <= words(replies[12][2].text), replies[12]
    assert replies[22][1] and second_words <= words(replies[22][2].text), replies[22]
    assert recogniser.decoders == 2
    # the same words as decoding the utterance whole
    assert first_words <= words(decode_whole(recogniser._whole, one).text)
    result = replies[12][2]
    assert result.words and all(0 <= w.start_s <= w.end_s <= len(one) / 32000 for w in result.words)


async def feed_live(stream: SpeechStream, pcm: bytes) -> None:
    """In 20 ms frames at the pace of a live call."""
    began = time.monotonic()
    for offset in range(0, len(pcm), FRAME):
        stream.feed_pcm(pcm[offset:offset + FRAME])
        ahead = began + (offset + FRAME) / 32000 - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (not yet reaped) is dead too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_recognition_process_killed_mid_utterance_loses_nothing_and_leaves_nothing_behind():
    phrases = list(PHRASES.items())
    (first, first_words), (second, second_words), (third, third_words) = phrases[:3]
    engine = SphinxEngine(workers=1)
    engine.warm()
    results = []
    stream = SpeechStream(engine, TranscriptConfig(partial_interval_s=0.5), results.append)
    try:
        # a long utterance (two phrases without a pause): partials while it grows, then its final
        await feed_live(stream, quiet(0.5) + speech_16k(first) + speech_16k(second) + quiet(0.8))
        await until(lambda: any(r.final for r in results), 60)
        final = next(r for r in results if r.final)
        assert first_words | second_words <= words(final.text), results
        assert any(not r.final and r.utterance == 1 and r.text for r in results), results
        (pid,) = engine.pids()
        # the next utterance: the process is killed after its speech (more than PRIME_S: its decoding has started,
        # unless the process lags), before its end
        await feed_live(stream, speech_16k(first))
        os.kill(pid, signal.SIGKILL)
        await feed_live(stream, quiet(0.8))
        await until(lambda: sum(r.final for r in results) == 2, 60)
        assert first_words <= words([r for r in results if r.final][1].text), results
        assert stream.failures == 0  # recognised whole on the new process: nothing lost
        (replacement,) = engine.pids()
        assert replacement != pid and not alive(pid)
        # and the one after is decoded incrementally on the new process again
        await feed_live(stream, speech_16k(third) + quiet(0.8))
        await stream.finish()
        assert third_words <= words([r for r in results if r.final][2].text), results
        assert [r.utterance for r in results if r.final] == [1, 2, 3]
    finally:
        stream.cancel()
        await engine.close()
    assert engine.pids() == []
    await until(lambda: not alive(replacement), 10)
