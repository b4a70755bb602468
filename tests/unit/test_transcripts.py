"""Live transcripts, the logic: redaction of card numbers (real test card numbers, typed and spoken), the energy
endpointer, a recognition stream's ordering and failures, and the engine's policy (per queue, the caller told
first, captions redacted to the right people, the transcript handed on at the end) against the fake plane."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest

from gateway.config import QueueConfig
from gateway.errors import GatewayError
from gateway.events import Caption, TranscriptNotice
from gateway.media.topology import SuperviseMode
from gateway.transcript.endpoint import Endpointer
from gateway.transcript.engine import EngineFailed, Recognition, TranscriptConfig
from gateway.transcript.redact import CARD, NUMBER, luhn_valid, redact, spoken_digits
from gateway.transcript.stream import SpeechStream
from tests.support.fakeplane import FakePlane
from tests.support.waiting import until
from tests.unit.test_engine_media import Party, connected_call
from gateway.auth import AgentAccount

CARDS = {"visa": "4111111111111111", "mastercard": "5555555555554444", "amex": "378282246310005",
         "discover": "6011111111111117", "diners": "30569309025904", "jcb": "3530111333300000",
         "visa19": "4111111111111111110"}


# -- redaction -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CARDS))
def test_real_card_numbers_are_luhn_valid_and_redacted_typed_or_spoken(name):
    digits = CARDS[name]
    assert luhn_valid(digits)
    assert redact(f"my card is {digits} thanks") == f"my card is {CARD} thanks"
    grouped = " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))
    assert redact(f"it is {grouped}") == f"it is {CARD}"
    assert redact(f"it is {'-'.join(grouped.split())}.") == f"it is {CARD}."
    words = " ".join("zero one two three four five six seven eight nine".split()[int(d)] for d in digits)
    assert redact(f"the number is {words} okay") == f"the number is {CARD} okay"


def test_near_misses_of_cards_are_still_hidden_and_ordinary_numbers_kept():
    assert not luhn_valid("4111111111111112")
    assert redact("card 4111111111111112") == f"card {NUMBER}"  # a card misheard by one digit
    assert redact("call me on 555 123 4567") == "call me on 555 123 4567"
    assert redact("i have two kids and one dog") == "i have two kids and one dog"
    assert redact("order one two three") == "order 123"
    assert spoken_digits("oh one two three") == "oh 123"  # "oh" starts no number ...
    assert spoken_digits("one oh two") == "102"  # ... but is a zero inside one
    assert spoken_digits("double four one two") == "4412"
    assert redact("four one one one one one one one one one one one one one one one") == CARD
    assert redact(" ".join(["five"] * 12 + ["for", "four", "four", "for"])) == CARD  # "for" inside a run: 4


# -- endpointing -----------------------------------------------------------------------------------------------
def tone(seconds: float, level: float = 0.3, hz: float = 300) -> bytes:
    n = int(16000 * seconds)
    return struct.pack(f"<{n}h", *(int(level * 32767 * math.sin(2 * math.pi * hz * i / 16000)) for i in range(n)))


def silence(seconds: float) -> bytes:
    return bytes(int(16000 * seconds) * 2)


def frames(pcm: bytes):
    return [pcm[i:i + 640] for i in range(0, len(pcm), 640)]


def test_an_utterance_starts_with_speech_and_ends_after_the_silence():
    endpointer = Endpointer(silence_s=0.5, max_s=15)
    ended = [u for f in frames(silence(1) + tone(1.0) + silence(1)) if (u := endpointer.feed(f)) is not None]
    assert len(ended) == 1
    utterance = ended[0]
    assert 0.65 <= utterance.start_s <= 1.0  # the pre-roll keeps up to 300 ms before the speech
    assert 1.0 <= utterance.speech_s <= 1.1
    assert utterance.start_s + utterance.duration_s == pytest.approx(2.5, abs=0.05)  # speech end + the silence
    assert endpointer.current is None


def test_a_long_utterance_is_cut_and_steady_noise_is_not_speech():
    endpointer = Endpointer(silence_s=0.5, max_s=2)
    ended = [u for f in frames(tone(5.0)) if (u := endpointer.feed(f)) is not None]
    assert len(ended) == 2 and all(u.duration_s == pytest.approx(2.0, abs=0.05) for u in ended)
    quiet = Endpointer()
    hum = tone(5.0, level=0.002)  # -57 dBFS: under the absolute floor
    assert not [u for f in frames(hum) if quiet.feed(f) is not None] and quiet.current is None


# -- a stream over a fake engine ----------------------------------------------------------------------------------
class ScriptedEngine:
    name = "scripted"
    partials = True

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[tuple[float, bool]] = []
        self.fail_first = fail_first
        self.busy = False

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        self.calls.append((len(pcm) / 32000, final))
        await asyncio.sleep(0.01)
        if final and self.fail_first:
            self.fail_first -= 1
            raise EngineFailed("the recognition process died")
        return Recognition(text=f"{'final' if final else 'partial'} {len(pcm) // 32000}")

    def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_a_stream_gives_partials_then_finals_in_order_and_survives_a_failure():
    engine = ScriptedEngine(fail_first=1)
    results = []
    stream = SpeechStream(engine, TranscriptConfig(partial_interval_s=0.2), results.append)
    for utterance in range(3):
        for frame in frames(tone(1.5) + silence(0.6)):
            stream.feed_pcm(frame)
            await asyncio.sleep(0.002)  # audio arrives over time: partials get a chance
    await stream.finish()
    finals = [r for r in results if r.final]
    assert [r.utterance for r in finals] == [2, 3]  # the first was lost to the failing engine ...
    assert stream.failures == 1  # ... and counted
    assert all(a.end_s <= b.start_s for a, b in zip(finals, finals[1:]))
    partials = [r for r in results if not r.final]
    assert partials and all(p.text.startswith("partial") for p in partials)
    assert results.index(finals[-1]) > max(results.index(p) for p in partials if p.utterance == 3) \
        if any(p.utterance == 3 for p in partials) else True


class ScriptedStreams:
    """A fake incremental engine: records what each stream is sent, in order; finals can fail (as when the
    recognition process died): the stream must then recognise the utterance whole."""

    name = "scripted-streams"
    partials = True
    busy = True  # (incremental partials are asked for even so)

    def __init__(self, fail_finals: int = 0) -> None:
        self.sent: list[tuple[str, int]] = []  # (what, bytes)
        self.whole: list[int] = []
        self.fail_finals = fail_finals
        self.closed = 0

    def open_stream(self):
        engine = self

        class Stream:
            fed = 0

            def feed(self, pcm: bytes) -> None:
                engine.sent.append(("feed", len(pcm)))
                self.fed += len(pcm)

            def partial(self):
                engine.sent.append(("partial", self.fed))
                return asyncio.ensure_future(asyncio.sleep(0.005, Recognition(text=f"so far {self.fed}")))

            def final(self, pcm: bytes):
                engine.sent.append(("final", len(pcm)))
                total, self.fed = self.fed + len(pcm), 0
                if engine.fail_finals:
                    engine.fail_finals -= 1
                    return _failed(EngineFailed("the recognition process died during the utterance"))
                return asyncio.ensure_future(asyncio.sleep(0.005, Recognition(text=f"final {total}")))

            def abandon(self) -> None:
                engine.sent.append(("abandon", self.fed))
                self.fed = 0

            def close(self) -> None:
                engine.closed += 1

        return Stream()

    async def recognize(self, pcm: bytes, final: bool) -> Recognition:
        self.whole.append(len(pcm))
        return Recognition(text=f"whole {len(pcm)}")

    def warm(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _failed(exc: Exception) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def test_an_incremental_engine_is_sent_each_utterance_once_in_order_and_a_lost_one_is_recognised_whole():
    engine = ScriptedStreams(fail_finals=1)
    results = []
    stream = SpeechStream(engine, TranscriptConfig(partial_interval_s=0.2), results.append)
    for frame in frames(tone(0.1) + silence(1.0)):  # too short to be an utterance: abandoned, not recognised
        stream.feed_pcm(frame)
    for utterance in range(2):
        for frame in frames(tone(1.5) + silence(0.6)):
            stream.feed_pcm(frame)
            await asyncio.sleep(0.002)  # audio arrives over time: partials get a chance
    await stream.finish()
    finals = [r for r in results if r.final]
    # the first final was lost with its process: recognised whole instead, nothing lost, nothing counted as failed
    assert [r.text.split()[0] for r in finals] == ["whole", "final"] and stream.failures == 0
    # each utterance: its pieces, then its final (the tail); the next utterance's audio only after that final
    ends = [i for i, (what, _) in enumerate(engine.sent) if what in ("final", "abandon")]
    assert [engine.sent[i][0] for i in ends] == ["abandon", "final", "final"]
    sent = [sum(n for what, n in engine.sent[start + 1:end + 1] if what in ("feed", "final"))
            for start, end in zip([-1] + ends, ends)]
    assert sent[0] == engine.sent[ends[0]][1]  # (what was fed before the abandon)
    assert engine.whole == [sent[1]]  # the lost one: the same audio, whole
    assert finals[1].text == f"final {sent[2]}" and sent[1] > 1.5 * 32000 and sent[2] > 1.5 * 32000
    assert sum(what == "feed" for what, _ in engine.sent[ends[0] + 1:ends[1]]) >= 5  # in pieces as it came
    partials = [r for r in results if not r.final]
    assert partials and all(p.text.startswith("so far") for p in partials)
    assert engine.closed == 1


# -- the engine's policy ------------------------------------------------------------------------------------------
async def test_transcripts_are_off_by_default():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        assert not [a for a in plane.asked if a[0] == "start_transcript"] and not caller.of(TranscriptNotice)
        plane.say(call.id, "caller", "hello")
        assert not agent.of(Caption)
    finally:
        await board.close()


async def test_a_transcribed_queue_tells_the_caller_and_captions_redacted_to_staff():
    plane = FakePlane()
    ended = []
    board, caller, agent, call = await connected_call(
        plane, queues=[QueueConfig(name="default", transcript="on")])
    board.on("call.transcript", lambda c, segments, complete: ended.append((c.id, segments, complete)))
    try:
        assert ("start_transcript", call.id) in plane.asked
        assert board.transcripts.running() == 1 and board.transcripts.start_failures == 0
        assert caller.of(TranscriptNotice) == [TranscriptNotice(call_id=call.id, active=True, captions=False)]
        assert agent.of(TranscriptNotice)[0].captions is True
        supervisor = Party(board, board.open_agent(AgentAccount(username="sam", display_name="Sam", role="supervisor")))
        board.supervise(supervisor.session, call.id, SuperviseMode.MONITOR)
        plane.say(call.id, "caller", "my card is four one one one", final=False)
        plane.say(call.id, "caller", "my card is " + " ".join(["four"] + ["one"] * 15))
        plane.say(call.id, "alice", "thank you", utterance=1, start_s=2, end_s=3)
        plane.say(call.id, "caller", "   ", utterance=2)  # nothing said: nothing sent
        seen = [(c.speaker["role"], c.final, c.text) for c in agent.of(Caption)]
        assert seen == [("caller", False, "my card is 4111"), ("caller", True, f"my card is {CARD}"),
                        ("agent", True, "thank you")]
        assert agent.of(Caption)[2].speaker == {"role": "agent", "name": "Alice"}
        assert [c.text for c in supervisor.of(Caption)] == [c[2] for c in seen]
        assert not caller.of(Caption)  # captions for the caller: off unless the queue or setting says so
        await board.caller_hangup(caller.session, call.id)
        await until(lambda: ended)
        assert ("stop_transcript", call.id) in plane.asked
        (call_id, segments, complete), = ended
        assert call_id == call.id and complete is True
        assert [(s["seq"], s["role"], s["text"]) for s in segments] == [(0, "caller", f"my card is {CARD}"),
                                                                         (1, "agent", "thank you")]
        assert board.transcripts.running() == 0
    finally:
        await board.close()


async def test_a_transcript_that_cannot_start_leaves_the_call_going_and_is_counted():
    plane = FakePlane()

    def refuse(call_id: str) -> None:
        raise GatewayError("no recogniser", code="transcript_unavailable")

    plane.start_transcript = refuse  # type: ignore[method-assign]
    board, caller, agent, call = await connected_call(plane, queues=[QueueConfig(name="default", transcript="on")])
    try:
        assert board.transcripts.start_failures == 1 and board.transcripts.running() == 0
        assert call.state.value == "connected" and not caller.of(TranscriptNotice) and not agent.of(TranscriptNotice)
        failed = [e for e in call.events if e.kind == "transcript_failed"]
        assert len(failed) == 1 and failed[0].detail == {"cause": "transcript_unavailable"}
    finally:
        await board.close()


async def test_a_supervisor_who_joins_a_transcribed_call_is_told_once_and_a_plain_agent_never():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(
        plane, queues=[QueueConfig(name="default", transcript="on")])
    try:
        sam = Party(board, board.open_agent(AgentAccount(username="sam", display_name="Sam", role="supervisor")))
        board.supervise(sam.session, call.id, SuperviseMode.MONITOR)
        assert sam.of(TranscriptNotice) == [TranscriptNotice(call_id=call.id, active=True, captions=True)]
        board.supervise(sam.session, call.id, SuperviseMode.WHISPER)  # a change of mode: nothing new to tell
        assert len(sam.of(TranscriptNotice)) == 1
        plane.say(call.id, "caller", "hello there")
        assert [c.text for c in sam.of(Caption)] == ["hello there"]
        bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))  # not a supervisor
        with pytest.raises(GatewayError) as refused:
            board.supervise(bob.session, call.id, SuperviseMode.MONITOR)
        assert refused.value.code == "not_supervisor"
        plane.say(call.id, "caller", "still here", utterance=1)
        assert not bob.of(TranscriptNotice) and not bob.of(Caption)
        await board.stop_supervising(sam.session, call.id)
        plane.say(call.id, "caller", "after you left", utterance=2)
        assert [c.text for c in sam.of(Caption)] == ["hello there", "still here"]  # none after it left
    finally:
        await board.close()


async def test_a_supervisor_of_an_untranscribed_call_is_not_told():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        sam = Party(board, board.open_agent(AgentAccount(username="sam", display_name="Sam", role="supervisor")))
        board.supervise(sam.session, call.id, SuperviseMode.MONITOR)
        assert not sam.of(TranscriptNotice)
    finally:
        await board.close()


async def test_caller_captions_by_queue_flag():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(
        plane, queues=[QueueConfig(name="default", transcript="on", caller_captions=True)])
    try:
        assert caller.of(TranscriptNotice)[0].captions is True
        plane.say(call.id, "alice", "<b>hello</b> 4111 1111 1111 1111")
        assert [c.text for c in caller.of(Caption)] == [f"<b>hello</b> {CARD}"]  # text as said: the UI shows text
    finally:
        await board.close()


def test_transcript_settings_are_checked(tmp_path):
    from pydantic import ValidationError

    from gateway.media.leg import MediaConfig
    from tests.support.server import test_settings

    for bad, why in (({"transcript_engine": "http"}, "needs transcript_http_url"),
                     ({"transcript_http_url": "ftp://asr.example/"}, "http:// or https://"),
                     ({"transcript_grammar": tmp_path / "missing.gram"}, "not a readable file")):
        with pytest.raises(ValidationError) as info:
            test_settings(**bad)
        assert why in str(info.value)
    grammar = tmp_path / "digits.gram"
    grammar.write_text("#JSGF V1.0;\ngrammar d;\npublic <d> = one | two;\n")
    config = MediaConfig.from_settings(test_settings(transcript_engine="http", transcript_http_url="https://asr.example/x",
                                                     transcript_http_token="t0k", transcript_grammar=grammar)).transcript
    assert (config.engine, config.http_url, config.http_token, config.grammar) == (
        "http", "https://asr.example/x", "t0k", str(grammar))


def test_the_number_of_decoders_is_a_setting_and_one_means_whole_utterances_only():
    from pydantic import ValidationError

    from gateway.media.leg import MediaConfig
    from gateway.transcript.engine import create_engine, open_stream
    from tests.support.server import test_settings

    with pytest.raises(ValidationError):
        test_settings(transcript_decoders=0)
    default = create_engine(MediaConfig.from_settings(test_settings()).transcript)
    assert default.incremental is True and default._max_decoders == 4
    lean = create_engine(MediaConfig.from_settings(test_settings(transcript_decoders=1)).transcript)
    assert lean.incremental is False and lean._max_decoders == 1
    assert open_stream(lean) is None  # no process is started for this: streams are made only when incremental
    three = create_engine(MediaConfig.from_settings(test_settings(transcript_decoders=3)).transcript)
    assert three.incremental is True and three._max_decoders == 3


# -- the tap on a producer -----------------------------------------------------------------------------------------
def test_the_audio_tap_reads_opus_from_packets_and_frames_and_drops_late_ones():
    from types import SimpleNamespace

    from gateway.media.forward import Producer
    from gateway.transcript.tap import AudioTap

    got: list[bytes] = []
    producer = Producer(kind="audio", codec="opus", send_keyframe_request=lambda: None)
    tap = AudioTap(producer, got.append)
    tap.attach()
    # across the 16-bit wrap: a duplicate (65534) and two late ones (65532, 65535 after 0) are dropped
    for seq in (65533, 65534, 65534, 65532, 0, 65535, 1):
        producer.on_packet(SimpleNamespace(sequence_number=seq, payload=seq.to_bytes(2, "big"), marker=False))
    assert [int.from_bytes(p, "big") for p in got] == [65533, 65534, 0, 1]
    producer.on_frame(b"frame", 960, False)  # the frame relay hands whole frames
    assert got[-1] == b"frame"
    tap.detach()
    producer.on_frame(b"after", 1920, False)
    assert got[-1] == b"frame" and not producer.consumers  # a tap is never a consumer (no keyframe budget, no replay)
    pcmu = Producer(kind="audio", codec="PCMU", send_keyframe_request=lambda: None)
    AudioTap(pcmu, got.append).attach()
    pcmu.on_frame(b"not opus", 0, False)
    assert got[-1] == b"frame"  # only Opus is decoded
