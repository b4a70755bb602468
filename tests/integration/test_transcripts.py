"""Live transcripts end to end: espeak-ng speaks into a real aiortc caller's microphone, the relay's audio tap and
a real recogniser turn it into captions for the agent, the record keeps the final segments (REST), and the signed
transcript.ready webhook carries them. Default engine (pocketsphinx, in-process media) on SQLite and PostgreSQL;
the HTTP engine against a small recognition service (pocketsphinx with a digits grammar) with media in a worker
process, speaking a card number that must only ever appear redacted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import QueueConfig
from gateway.store.webhooks import verify_signature
from gateway.transcript.httpengine import parse_result
from tests.support.loopback_http import LoopbackService, Receiver
from tests.support.api import Api, metric
from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.server import running_gateway
from tests.support.speech import CARD_DIGITS, PHRASES, SpeechTrack, espeak_available, spoken_digits, synthesize

pytestmark = [pytest.mark.media, pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed "
                                                                                   "(scripts/setup.sh --test)")]

DIGITS_GRAMMAR = ("#JSGF V1.0;\ngrammar digits;\n"
                  "public <digits> = (zero | oh | one | two | three | four | five | six | seven | eight | nine)+ ;\n")


def words(text: str) -> set[str]:
    return set(text.lower().split())


async def caption(ws: WsClient, role: str, want: set[str] | None = None, timeout: float = 60) -> dict[str, Any]:
    """The first final caption of `role` (containing `want`)."""
    try:
        return await ws.wait(lambda m: m.get("type") == "caption" and m["final"] and m["speaker"]["role"] == role
                             and (want is None or want <= words(m["text"])), timeout=timeout)
    except AssertionError:
        heard = [(m["speaker"]["role"], m["final"], m["text"]) for m in ws.messages if m.get("type") == "caption"]
        raise AssertionError(f"no final caption of the {role} with {want}; captions: {heard}") from None


async def webhook_for(integrator: Api, receiver_url: str, events: list[str]) -> dict[str, Any]:
    status, hook = await integrator.post("/api/v1/webhooks", {"url": receiver_url, "events": events})
    assert status == 201, hook
    return hook


async def integrator_of(gw) -> Api:
    admin = Api(gw.base_url)
    await admin.login("admin", "admin-demo")
    status, body = await admin.post("/api/v1/api-keys", {"name": "crm"})
    assert status == 201, body
    await admin.close()
    return Api(gw.base_url, bearer=body["key"])


async def answered(gw, caller_token, sub: str) -> tuple[Caller, Agent, SpeechTrack, str]:
    agent = Agent(gw.base_url, "alice", "alice-demo")
    await agent.connect()
    caller = Caller(gw.base_url, caller_token(sub=sub))
    await caller.connect()
    mic = SpeechTrack()
    queued = await caller.start("voice", audio=mic)
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"], audio=SpeechTrack())  # the agent says nothing
    return caller, agent, mic, queued["call_id"]


async def test_caller_speech_becomes_captions_record_and_webhook(database_url, caller_token):
    phrase, expected = next(iter(PHRASES.items()))
    speech = synthesize(phrase)
    async with Receiver(fail_first=0) as receiver, running_gateway(
            database_url=database_url, queues=[QueueConfig(name="default", transcript="on")]) as gw:
        integrator = await integrator_of(gw)
        hook = await webhook_for(integrator, receiver.url, ["transcript.ready"])
        caller, agent, mic, call_id = await answered(gw, caller_token, "speaks-1")
        try:
            notice = await caller.ws.wait("transcript.notice")
            assert notice["active"] is True and notice["captions"] is False and notice["call_id"] == call_id
            assert (await agent.ws.wait("transcript.notice"))["captions"] is True
            mic.say(speech)
            said = await caption(agent.ws, "caller", expected)
            assert said["speaker"]["name"] == "Dana Caller" and said["call_id"] == call_id
            assert 0 <= said["start_s"] < said["end_s"]
            assert not [m for m in caller.ws.messages if m.get("type") == "caption"]  # captions: not for the caller
            await caller.hangup()
        finally:
            await caller.close()
            await agent.close()

        await wait_until(lambda: "transcript.ready" in receiver.events(), 60)
        headers, body = next((h, b) for h, b in receiver.requests if json.loads(b)["event"] == "transcript.ready")
        assert verify_signature(hook["secret"], headers["Callin-Signature"], body)
        data = json.loads(body)["data"]
        assert data["id"] == call_id and data["transcript_complete"] is True
        assert any(expected <= words(s["text"]) and s["role"] == "caller" for s in data["transcript"])

        status, stored = await integrator.get(f"/api/v1/calls/{call_id}/transcript")
        assert status == 200 and stored["call_id"] == call_id
        assert [(s["seq"], s["text"]) for s in stored["segments"]] == [(s["seq"], s["text"]) for s in data["transcript"]]
        status, record = await integrator.get(f"/api/v1/calls/{call_id}")
        assert "transcript_started" in [e["kind"] for e in record["events"]]
        status, missing = await integrator.get("/api/v1/calls/nosuchcall/transcript")
        assert status == 404 and missing["code"] == "unknown_call"
        await integrator.close()
        # what an operator sees: the segments by speaker, the transcript handed on complete, none running now
        assert await metric(gw.base_url, 'callin_transcript_segments_total{role="caller"}') >= 1
        assert await metric(gw.base_url, 'callin_transcripts_finished_total{complete="true"}') == 1
        assert await metric(gw.base_url, "callin_transcripts_active") == 0
        assert await metric(gw.base_url, "callin_transcript_start_failures_total") == 0


class Recognizer(LoopbackService):
    """A small speech recognition service on loopback: POST a WAV, get {"text", "words"}. It runs pocketsphinx with
    a digits grammar (what a card-taking IVR would use), in a thread."""

    path = "/recognize"
    client_max_size = 16 * 1024 * 1024

    def __init__(self, grammar: Path) -> None:
        from pocketsphinx import Decoder

        super().__init__()
        self.decoder = Decoder(samprate=16000, loglevel="FATAL")
        self.decoder.add_jsgf_file("digits", str(grammar))
        self.decoder.activate_search("digits")
        self.requests: list[dict[str, Any]] = []

    def _recognise(self, wav: bytes) -> dict[str, Any]:
        import io
        import wave

        with wave.open(io.BytesIO(wav)) as audio:
            assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (16000, 1, 2)
            pcm = audio.readframes(audio.getnframes())
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        words = [{"word": s.word, "start": s.start_frame / 100, "end": s.end_frame / 100} for s in self.decoder.seg()
                 if s.word.isalpha()]
        return {"text": hyp.hypstr if hyp else "", "words": words}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append({"type": request.content_type, "bytes": len(body),
                              "auth": request.headers.get("Authorization")})
        if request.content_type != "audio/wav":
            return web.json_response({"error": "send audio/wav"}, status=415)
        return web.json_response(await asyncio.to_thread(self._recognise, body))


async def test_http_engine_in_a_media_worker_redacts_a_spoken_card_number(caller_token):
    speech = synthesize(spoken_digits(CARD_DIGITS))
    folder = Path(tempfile.mkdtemp(prefix="callin-grammar-"))
    (folder / "digits.gram").write_text(DIGITS_GRAMMAR)
    queue = QueueConfig(name="default", transcript="on", caller_captions=True)
    async with Recognizer(folder / "digits.gram") as service, Receiver(fail_first=0) as receiver, running_gateway(
            queues=[queue], media_workers=1, transcript_engine="http", transcript_http_url=service.url,
            transcript_http_token="s3cret-token") as gw:
        integrator = await integrator_of(gw)
        await webhook_for(integrator, receiver.url, ["transcript.ready", "call.ended"])
        caller, agent, mic, call_id = await answered(gw, caller_token, "card-1")
        try:
            assert (await caller.ws.wait("transcript.notice"))["captions"] is True
            mic.say(speech)
            said = await caption(agent.ws, "caller", {"[card", "number]"})
            assert not any(c.isdigit() for c in said["text"]), said
            assert "[card number]" in (await caption(caller.ws, "caller"))["text"]  # the caller's own captions
            await caller.hangup()
        finally:
            await caller.close()
            await agent.close()
        await wait_until(lambda: "transcript.ready" in receiver.events(), 60)
        status, stored = await integrator.get(f"/api/v1/calls/{call_id}/transcript")
        assert status == 200 and len(stored["segments"]) == 1 and "[card number]" in stored["segments"][0]["text"]
        await integrator.close()

    assert service.requests and all(r["type"] == "audio/wav" and r["auth"] == "Bearer s3cret-token"
                                    for r in service.requests)
    # The digits never left the media plane: not in any message, record or webhook.
    everything = [json.dumps(m) for m in caller.ws.messages + agent.ws.messages] + [b.decode() for _, b in
                                                                                     receiver.requests]
    everything.append(json.dumps(stored))
    assert not [t for t in everything if CARD_DIGITS[:8] in t or "four two four two" in t]


def test_http_results_are_checked():
    assert parse_result(b'{"text": " hello  world ", "words": [{"word": "hello", "start": 0, "end": 0.4}]}').text \
        == "hello world"
    for bad in (b"not json", b'["a"]', b'{"text": 5}', b'{"text": "a", "words": [{"word": "a"}]}'):
        with pytest.raises(Exception) as info:
            parse_result(bad)
        assert type(info.value).__name__ == "EngineFailed"


async def test_a_killed_recognition_process_is_replaced_and_nothing_said_is_lost(caller_token):
    (first, first_words), (second, second_words) = list(PHRASES.items())[:2]
    async with running_gateway(queues=[QueueConfig(name="default", transcript="on")]) as gw:
        caller, agent, mic, call_id = await answered(gw, caller_token, "kill-1")
        try:
            await caller.ws.wait("transcript.notice")
            mic.say(synthesize(first))
            await caption(agent.ws, "caller", first_words)
            engine = gw.board.plane.speech
            (pid,) = engine.pids()
            os.kill(pid, signal.SIGKILL)
            mic.say(synthesize(second))
            await caption(agent.ws, "caller", second_words)
            assert engine.pids() and pid not in engine.pids()
            await caller.hangup()
        finally:
            await caller.close()
            await agent.close()


async def test_a_killed_media_worker_ends_the_call_and_its_transcript_is_handed_on_incomplete(caller_token):
    phrase, expected = next(iter(PHRASES.items()))
    async with Receiver(fail_first=0) as receiver, running_gateway(
            queues=[QueueConfig(name="default", transcript="on")], media_workers=1) as gw:
        integrator = await integrator_of(gw)
        await webhook_for(integrator, receiver.url, ["transcript.ready"])
        caller, agent, mic, call_id = await answered(gw, caller_token, "worker-dies")
        try:
            await caller.ws.wait("transcript.notice")
            assert await metric(gw.base_url, "callin_transcripts_active") == 1
            mic.say(synthesize(phrase))
            await caption(agent.ws, "caller", expected)
            os.kill(gw.board.plane.workers[0].pid, signal.SIGKILL)
            ended = await caller.ws.wait("call.ended", timeout=30)
            assert ended["reason"] == "media_failed"
        finally:
            await caller.close()
            await agent.close()
        await wait_until(lambda: "transcript.ready" in receiver.events(), 30)
        data = next(json.loads(b)["data"] for _, b in receiver.requests if json.loads(b)["event"] == "transcript.ready")
        assert data["transcript_complete"] is False and any(expected <= words(s["text"]) for s in data["transcript"])
        status, stored = await integrator.get(f"/api/v1/calls/{call_id}/transcript")
        assert [s["text"] for s in stored["segments"]] == [s["text"] for s in data["transcript"]]
        await integrator.close()
        assert await metric(gw.base_url, 'callin_transcripts_finished_total{complete="false"}') == 1
        assert await metric(gw.base_url, "callin_transcripts_active") == 0


async def test_the_python_sdk_caller_is_told_and_gets_the_agents_words_as_captions(caller_token):
    from callin_sdk import CallinCaller

    phrase, expected = list(PHRASES.items())[2]
    queue = QueueConfig(name="default", transcript="on", caller_captions=True)
    async with running_gateway(queues=[queue]) as gw:
        agent = Agent(gw.base_url, "alice", "alice-demo")
        await agent.connect()
        caller = CallinCaller(gw.base_url, caller_token(sub="sdk-captions"), host_addresses=["127.0.0.1"])
        mic = SpeechTrack()
        try:
            await caller.connect()
            queued = await caller.start_call(audio=SpeechTrack())  # a voice call; the caller says nothing
            offer = await agent.wait_offer()
            assert offer["call_id"] == queued["call_id"]
            await agent.accept(offer["call_id"], audio=mic)
            told = await caller.wait_for("transcript", since=0, timeout=20)
            assert told.data == {"call_id": queued["call_id"], "active": True, "captions": True}
            mic.say(synthesize(phrase))
            said = await caller.wait_for("caption", lambda e: e.data["final"] and expected <= words(e.data["text"]),
                                         since=0, timeout=60)
            assert said.data["speaker"] == {"role": "agent", "name": "Alice (demo agent)"}
        finally:
            await caller.close()
            await agent.close()
