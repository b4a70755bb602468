"""Live transcripts end to end: espeak-ng speaks into a real aiortc caller's microphone, the relay's audio tap and
a real recogniser turn it into captions for the agent, the record keeps the final segments (REST), and the signed
transcript.ready webhook carries them. Default engine (pocketsphinx, in-process media) on SQLite and PostgreSQL;
the HTTP engine against a small recognition service (pocketsphinx with a digits grammar) with media in a worker
process, speaking a card number that must only ever appear redacted."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import QueueConfig
from gateway.store.webhooks import verify_signature
from gateway.transcript.httpengine import parse_result
from tests.integration.test_webhooks import Receiver
from tests.support.api import Api
from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.server import free_port, running_gateway
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
