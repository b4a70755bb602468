"""The protocol contract against a running gateway: one bad frame gets one error written for a person, the refused
upgrade's body and the header-vs-hello token rule are what docs/protocol.md says, session_replaced reaches both
roles, welcome announces the limits the server enforces, ice.candidate is checked against the call's offer, and a
caller's media.source reaches its agent."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.server import running_gateway
from tests.unit.test_protocol_contract import human

pytestmark = pytest.mark.media


async def one_answer(ws: WsClient, frame: str) -> list[dict]:
    """Send a frame, then a ping: what came back before the pong (a deadline, not a time window)."""
    start = len(ws.messages)
    await ws.send(frame)
    marker = f"after-{start}"
    await ws.send({"type": "ping", "id": marker})
    await ws.wait(lambda m: m.get("type") == "pong" and m.get("id") == marker, since=start)
    return [m for m in ws.messages[start:] if not (m.get("type") == "pong" and m.get("id") == marker)]


CALLER_FRAMES = [
    "{not json", "[1]", "null", json.dumps({"id": "a1"}), json.dumps({"type": None, "id": "a2"}),
    json.dumps({"type": "call.accept", "id": "a3", "call_id": "c"}),
    json.dumps({"type": "call.start", "id": "", "call_type": "hologram", "location": {"lat": "1"}, "x": 1}),
    json.dumps({"type": "call.start", "id": "a4", "call_type": "voice", "context": {"steps": [1, 2], "crm": None}}),
    json.dumps({"type": "hello", "id": "a5", "protocol": "1"}),
    json.dumps({"type": "chat.send", "id": "a6", "text": None}),
    json.dumps({"type": "chat.send", "id": "a7", "text": "hi", "call_id": "nope"}),
    json.dumps({"type": "call.hangup", "id": "a8", "call_id": "nope"}),
    json.dumps({"type": "content.status", "id": "a9", "content_id": "nope", "status": "seen"}),
    json.dumps({"type": "ice.candidate", "id": "a10", "candidate": "candidate:garbage", "sdp_mid": "a b"}),
    json.dumps({"type": "ice.candidate", "id": "a11", "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                "sdp_mid": "7"}),
    json.dumps({"type": "ice.candidate", "id": "a12", "candidate": "candidate:1 0 udp 1 127.0.0.1 5000 typ host",
                "sdp_mid": "0"}),
    json.dumps({"type": "media.source", "id": "a13", "source": "webcam"}),
    json.dumps({"type": "message.leave", "id": "a14", "text": "   "}),
    json.dumps({"type": "call.rejoin", "id": "a15", "call_id": "nope"}),
    json.dumps({"type": "callback.request", "id": "a16", "phone": "call me"}),
    json.dumps({"type": "ping", "id": "big", "pad": "x" * 70_000}),
]
AGENT_FRAMES = [
    json.dumps({"type": "sdp.offer", "id": "b1", "sdp": "v=0"}),
    json.dumps({"type": "ice.candidate", "id": "b2", "candidate": None}),
    json.dumps({"type": "call.hangup", "id": "b3", "call_id": None}),
    json.dumps({"type": "agent.status", "id": "b4", "status": "busy"}),
    json.dumps({"type": "agent.status", "id": "b5", "status": None}),
    json.dumps({"type": "call.accept", "id": "b6", "call_id": "nope"}),
    json.dumps({"type": "call.transfer", "id": "b7", "call_id": "nope", "mode": "warm"}),
    json.dumps({"type": "content.push", "id": "b8", "call_id": "nope", "kind": "link"}),
    json.dumps({"type": "supervise.start", "id": "b9", "call_id": "nope", "mode": "monitor"}),
    json.dumps({"type": "wallboard.subscribe", "id": "b10"}),
    json.dumps({"type": "wrap_up.submit", "id": "b11", "call_id": "nope", "disposition": "a b"}),
    json.dumps({"type": "call.start", "id": "b12", "call_type": "voice"}),
    json.dumps({"type": "hello", "id": "b13", "token": "again"}),
]


async def test_every_bad_frame_gets_exactly_one_error_for_a_person(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="fuzz-contract"))
    await caller.connect()
    await caller.start("video")
    # The caller's media comes up on its own time (media.state): let it, so that what follows each frame is its answer.
    await caller.ws.wait(lambda m: m.get("type") == "media.state" and m.get("state") == "connected", timeout=15)
    agent = Agent(gateway.base_url)
    await agent.connect(available=False)
    codes = set()
    for ws, frames in ((caller.ws, CALLER_FRAMES), (agent.ws, AGENT_FRAMES)):
        for frame in frames:
            answers = await one_answer(ws, frame)
            errors = [m for m in answers if m["type"] == "error"]
            assert len(errors) == 1 and len(answers) == 1, (frame[:120], answers)
            error = errors[0]
            assert human(error["reason"]), (frame[:120], error)
            codes.add(error["code"])
    assert {"bad_json", "bad_message", "unknown_type", "invalid_message", "unknown_call", "bad_candidate",
            "message_too_large", "not_supervisor", "invalid_state"} <= codes, codes
    assert caller.ws.close_code is None and agent.ws.close_code is None  # errors never close after the handshake
    await caller.close()
    await agent.close()


async def test_a_refused_upgrade_answers_the_documented_body(gateway, caller_token):
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.base_url + "/ws/caller", headers={
                "Authorization": "Bearer not-a-jwt", "Connection": "Upgrade", "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
            assert response.status == 401 and response.content_type == "application/json"
            body = await response.json()
        assert set(body) == {"code", "reason"} and body["code"] == "invalid_token" and human(body["reason"])
        async with http.get(gateway.base_url + "/ws/agent", headers={
                "Origin": "https://evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
            assert response.status == 403 and response.content_type == "application/json"
            body = await response.json()
        assert set(body) == {"code", "reason"} and body["code"] == "origin_not_allowed"


async def test_the_hello_token_counts_over_the_header_token(gateway, caller_token):
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect(headers={"Authorization": f"Bearer {caller_token(sub='from-header')}"})
    welcome = await ws.request({"type": "hello", "token": caller_token(sub="from-hello")})
    assert welcome["type"] == "welcome" and welcome["caller"]["subject"] == "from-hello"
    await ws.close()

    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect(headers={"Authorization": f"Bearer {caller_token(sub='from-header')}"})
    error = await ws.request({"type": "hello", "token": "not-a-jwt"})
    assert error["type"] == "error" and error["code"] == "invalid_token"
    await wait_until(lambda: ws.close_code == 4401, 5)
    await ws.close()

    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect(headers={"Authorization": f"Bearer {caller_token(sub='from-header')}"})
    welcome = await ws.request({"type": "hello", "token": None, "resume_token": None, "last_seq": None,
                                "protocol": None})  # nulls read as absent: the header's token counts
    assert welcome["type"] == "welcome" and welcome["caller"]["subject"] == "from-header"
    await ws.close()


async def test_session_replaced_reaches_an_agent_resumed_elsewhere_and_one_signed_in_again(gateway):
    alice = Agent(gateway.base_url)
    welcome = await alice.connect(available=False)
    newer = WsClient(gateway.base_url, "/ws/agent")
    await newer.connect()
    resumed = await newer.request({"type": "hello", "token": alice.token, "resume_token": welcome["resume_token"]})
    assert resumed["type"] == "welcome" and resumed["resumed"] is True
    error = await alice.ws.wait("error")
    assert error["code"] == "session_replaced" and error["id"] is None and human(error["reason"])
    await wait_until(lambda: alice.ws.close_code == 4409, 5)

    again = Agent(gateway.base_url)  # a new sign-in of the same account
    await again.connect(available=False)
    status = await newer.wait(lambda m: m["type"] == "agent.status" and m.get("reason") == "signed_in_elsewhere")
    error = await newer.wait("error")
    assert error["code"] == "session_replaced" and newer.messages.index(status) < newer.messages.index(error)
    await wait_until(lambda: newer.close_code == 4409, 5)
    await newer.close()
    await again.close()
    await alice.close()


async def test_welcome_announces_the_limits_the_server_enforces(caller_token):
    async with running_gateway(max_chat_chars=12, chat_burst=3) as gw:
        caller = Caller(gw.base_url, caller_token(sub="limits"))
        welcome = await caller.connect()
        limits = welcome["limits"]
        assert limits["max_chat_chars"] == 12 and limits["chat_burst"] == 3
        assert limits["max_message_bytes"] == welcome["max_message_bytes"] == gw.settings.max_message_bytes
        await caller.start("voice")
        ok = await caller.ws.request({"type": "chat.send", "text": "x" * limits["max_chat_chars"]})
        assert ok["type"] == "ack", ok
        refused = await caller.ws.request({"type": "chat.send", "text": "x" * (limits["max_chat_chars"] + 1)})
        assert refused["code"] == "chat_too_long" and "12" in refused["reason"]
        await caller.close()


async def test_a_callers_media_source_reaches_its_agent(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="switcher"))
    await caller.connect()
    queued = await caller.start("video")
    call_id = queued["call_id"]
    # while waiting: the card the agent will be offered follows it
    ack = await caller.ws.request({"type": "media.source", "source": "screen"})
    assert ack["type"] == "ack", ack
    agent = Agent(gateway.base_url)
    await agent.connect()
    offered = await agent.wait_offer()
    assert offered["card"]["media_source"] == "screen" and offered["card"]["call_type"] == "video"
    await agent.accept(call_id)
    await caller.ws.wait(lambda m: m["type"] == "call.answered")

    start = len(agent.ws.messages)
    ack = await caller.ws.request({"type": "media.source", "call_id": call_id, "source": "none"})
    assert ack["type"] == "ack", ack
    event = await agent.ws.wait(lambda m: m["type"] == "media.source", since=start)
    assert event == {"type": "media.source", "call_id": call_id, "leg": "caller", "source": "none", "reason": None,
                     "seq": event["seq"]} and event["seq"] >= 1
    # the same source again says nothing new: the next event the agent gets is the camera
    await caller.ws.request({"type": "media.source", "source": "none"})
    await caller.ws.request({"type": "media.source", "source": "camera"})
    event = await agent.ws.wait(lambda m: m["type"] == "media.source", since=agent.ws.messages.index(event) + 1)
    assert event["source"] == "camera"
    assert [m["source"] for m in agent.ws.of_type("media.source")] == ["none", "camera"]
    assert gateway.board.calls[call_id].card()["media_source"] == "camera"
    assert not caller.ws.of_type("media.source")  # the caller is not told its own switch
    await caller.close()
    await agent.close()


async def test_an_ice_candidate_for_a_section_the_offer_lacks_is_refused(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="mids"))
    await caller.connect()
    await caller.start("video")
    line = "candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host"
    error = await caller.ws.request({"type": "ice.candidate", "candidate": line, "sdp_mid": "9"})
    assert error["code"] == "bad_candidate" and 'mid "9"' in error["reason"], error
    error = await caller.ws.request({"type": "ice.candidate", "candidate": line, "sdp_mline_index": 9})
    assert error["code"] == "bad_candidate" and "sdp_mline_index 9" in error["reason"], error
    error = await caller.ws.request({"type": "ice.candidate", "candidate": line.replace("typ host", "typ"),
                                     "sdp_mid": "0"})
    assert error["code"] == "invalid_message" and "RFC 8839" in error["reason"], error
    ok = await caller.ws.request({"type": "ice.candidate", "candidate": line, "sdp_mid": "0"})
    assert ok["type"] == "ack", ok
    await caller.close()
