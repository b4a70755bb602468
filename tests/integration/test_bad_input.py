"""Every bad-input class gets a clear error code, changes no state and does not disturb other calls."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest

from tests.support.clients import Peer, Agent, Caller, WsClient, wait_until
from tests.support.server import TEST_SECRET

pytestmark = pytest.mark.media


async def hello(gateway, token: str) -> WsClient:
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect()
    await ws.send({"type": "hello", "id": "h", "token": token})
    return ws


@pytest.mark.parametrize(
    "claims, code",
    [
        ({"sub": "x", "aud": "callin", "exp": int(time.time()) - 3600}, "token_expired"),
        ({"sub": "x", "aud": "someone-else", "exp": int(time.time()) + 600}, "invalid_token"),
        ({"sub": "x", "aud": "callin"}, "invalid_token"),  # no exp
        ({"aud": "callin", "exp": int(time.time()) + 600}, "invalid_token"),  # no sub
    ],
)
async def test_bad_caller_tokens_are_refused_before_any_media(gateway, claims, code):
    ws = await hello(gateway, jwt.encode(claims, TEST_SECRET, algorithm="HS256"))
    error = await ws.wait("error")
    assert error["code"] == code and error["id"] == "h"
    await ws.close()
    assert ws.close_code == 4401
    assert len(gateway.board.sessions) == 0 and not gateway.board.relays


async def test_wrong_signature_and_alg_none_are_refused(gateway):
    good = {"sub": "x", "aud": "callin", "exp": int(time.time()) + 600}
    for token, code in ((jwt.encode(good, "another-secret-of-sufficient-length", algorithm="HS256"), "invalid_token"),
                        (jwt.encode(good, None, algorithm="none"), "invalid_token"),
                        ("not-a-jwt", "invalid_token"),
                        ("a" * 9000, "invalid_message")):  # over the protocol's token size cap
        ws = await hello(gateway, token)
        error = await ws.wait("error")
        assert error["code"] == code, (token[:20], error)
        await ws.close()
        assert ws.close_code in (4401, 4400)
    assert len(gateway.board.sessions) == 0


async def test_bad_bearer_header_gets_http_401(gateway):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(gateway.base_url + "/ws/caller", headers={"Authorization": "Bearer nope"})
    assert info.value.status == 401


async def test_header_token_then_hello_without_token(gateway, caller_token):
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect(headers={"Authorization": f"Bearer {caller_token(sub='hdr')}"})
    welcome = await ws.request({"type": "hello"})
    assert welcome["type"] == "welcome" and welcome["caller"]["subject"] == "hdr"
    await ws.close()


async def test_first_message_must_be_hello(gateway):
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect()
    await ws.send({"type": "call.start", "id": "1", "call_type": "video"})
    error = await ws.wait("error")
    assert error["code"] == "not_authenticated"
    await ws.close()
    assert ws.close_code == 4401


async def test_hello_timeout(caller_token):
    from tests.support.server import running_gateway

    async with running_gateway(hello_timeout_s=0.3) as gw:
        ws = WsClient(gw.base_url, "/ws/caller")
        await ws.connect()
        error = await ws.wait("error", timeout=3)
        assert error["code"] == "hello_timeout"
        await ws.close()
        assert ws.close_code == 4408


async def test_malformed_messages_get_typed_errors_and_change_nothing(gateway, caller_token):
    # A second, healthy call that must not notice anything.
    other = Caller(gateway.base_url, caller_token(sub="bystander"))
    await other.connect()
    other_queued = await other.start("voice")

    caller = Caller(gateway.base_url, caller_token(sub="fuzzer"))
    await caller.connect()
    queued = await caller.start("video")
    call = gateway.board.calls[queued["call_id"]]
    events_before = list(call.events)
    leg_before = gateway.board.relays[call.id].caller
    ws = caller.ws

    cases = [
        ("{not json", "bad_json"),
        ("[1, 2, 3]", "bad_message"),
        (json.dumps({"type": "teleport", "id": "t1"}), "unknown_type"),
        (json.dumps({"id": "t2"}), "unknown_type"),
        (json.dumps({"type": "sdp.offer", "id": "t3"}), "invalid_message"),  # sdp missing
        (json.dumps({"type": "call.hangup", "id": "t4", "extra": 1}), "invalid_message"),
        (json.dumps({"type": "call.start", "id": "t5", "call_type": "hologram"}), "invalid_message"),
        # Identity is never taken from unsigned input.
        (json.dumps({"type": "call.start", "id": "t6", "call_type": "voice", "identity": {"name": "CEO"}}), "invalid_message"),
        (json.dumps({"type": "call.start", "id": "t7", "call_type": "voice",
                     "location": {"lat": 123, "lon": 0, "accuracy_m": 1, "timestamp": 1}}), "invalid_message"),
        (json.dumps({"type": "call.start", "id": "t8", "call_type": "voice",
                     "context": {"crm": {f"k{i}": "v" for i in range(100)}}}), "invalid_message"),
        (json.dumps({"type": "call.start", "id": "t9", "call_type": "voice"}), "call_in_progress"),
        (json.dumps({"type": "ping", "id": "x" * 100}), "invalid_message"),
        (json.dumps({"type": "hello", "id": "t10", "token": "again"}), "invalid_state"),
        (json.dumps({"type": "call.hangup", "id": "t11", "call_id": "nope"}), "unknown_call"),
        (json.dumps({"type": "ice.candidate", "id": "t12", "candidate": "candidate:garbage"}), "invalid_message"),
        (json.dumps({"type": "ice.candidate", "id": "t12b",
                     "candidate": "candidate:1 0 udp 1 127.0.0.3 5000 typ host"}), "bad_candidate"),
        (json.dumps({"type": "ping", "id": "big", "pad": "x" * 70_000}), "message_too_large"),
        (json.dumps({"type": "sdp.offer", "id": "t13", "sdp": "v=0\r\n" + "a=x\r\n" * 8000}), "invalid_message"),
        # A bad second offer (a second one replaces the leg) leaves the negotiated leg as it was.
        (json.dumps({"type": "sdp.offer", "id": "t14", "sdp": "this is not sdp"}), "bad_sdp"),
    ]
    for raw, code in cases:
        start = len(ws.messages)
        await ws.send(raw)
        error = await ws.wait(lambda m: m["type"] == "error", since=start)
        assert error["code"] == code, (raw[:80], error)
        assert error["reason"]
        sent_id = None
        try:
            sent_id = json.loads(raw).get("id") if raw.startswith("{") else None
        except ValueError:
            pass
        if isinstance(sent_id, str) and len(sent_id) <= 64:
            assert error["id"] == sent_id

    # Still connected, the call still queued and unchanged, the media not set up by the junk.
    pong = await ws.request({"type": "ping"})
    assert pong["type"] == "pong"
    assert call.state.value == "queued" and call.events == events_before
    assert gateway.board.relays[call.id].caller is leg_before  # from the good offer in start(), still in place
    assert not leg_before.closed and not leg_before.hushed
    assert gateway.board.calls[other_queued["call_id"]].state.value == "queued"
    await caller.close()
    await other.close()


async def test_malformed_sdp_leaves_call_ready_for_a_good_offer(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
    early = await caller.ws.request({"type": "ice.candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
    assert early["type"] == "error" and early["code"] == "no_offer"
    for junk in ("this is not sdp", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
                 "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
                 "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"):
        bad = await caller.ws.request({"type": "sdp.offer", "sdp": junk})
        assert bad["type"] == "error" and bad["code"] == "bad_sdp", (junk, bad)
    assert gateway.board.relays[queued["call_id"]].caller is None
    caller.call_id = queued["call_id"]
    from tests.support.media import ToneAudioTrack

    caller.peer.pc.addTrack(ToneAudioTrack(500))
    answer = await caller.ws.request({"type": "sdp.offer", "sdp": await caller.peer.offer()})
    assert answer["type"] == "sdp.answer"
    first = gateway.board.relays[queued["call_id"]].caller
    # A second offer (a new peer connection, e.g. after a network change) replaces the leg; a bad one does not.
    bad = await caller.ws.request({"type": "sdp.offer", "sdp": "this is not sdp"})
    assert bad["type"] == "error" and bad["code"] == "bad_sdp", bad
    assert gateway.board.relays[queued["call_id"]].caller is first and not first.closed
    fresh = Peer()
    fresh.pc.addTrack(ToneAudioTrack(500))
    again = await caller.ws.request({"type": "sdp.offer", "sdp": await fresh.offer()})
    assert again["type"] == "sdp.answer", again
    relay = gateway.board.relays[queued["call_id"]]
    assert relay.caller is not first and first.closed and relay.replaced == {"caller": 1}
    await fresh.close()
    await caller.close()


async def test_agent_requests_in_the_wrong_state(gateway, caller_token):
    agent = Agent(gateway.base_url)
    await agent.connect(available=False)
    other = Agent(gateway.base_url, "bob", "bob-demo")
    await other.connect(available=True)
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    await caller.start("voice")
    offer = await other.wait_offer()
    call_id = offer["call_id"]
    ws = agent.ws
    # alice is away: the call rings at bob, so alice can neither accept nor send media for it.
    assert (await ws.request({"type": "call.accept", "call_id": call_id}))["code"] == "not_offered"
    assert (await ws.request({"type": "call.decline", "call_id": call_id}))["code"] == "not_offered"
    assert (await ws.request({"type": "sdp.offer", "call_id": call_id, "sdp": "v=0"}))["code"] == "not_accepted"
    assert (await ws.request({"type": "call.hangup", "call_id": call_id}))["code"] == "not_your_call"
    assert (await ws.request({"type": "call.accept", "call_id": "missing"}))["code"] == "unknown_call"
    assert (await ws.request({"type": "agent.status", "status": "busy"}))["code"] == "invalid_message"
    assert (await ws.request({"type": "call.start", "call_type": "voice"}))["code"] == "unknown_type"
    assert gateway.board.calls[call_id].state.value == "offered"
    assert gateway.board.calls[call_id].offered_to == "bob"
    # bob may set up his media while it rings at him (docs/protocol.md, "Media while ringing"): his offer is
    # considered, and a bad one refused as such, with no leg left behind.
    assert (await other.ws.request({"type": "sdp.offer", "call_id": call_id, "sdp": "v=0"}))["code"] == "bad_sdp"
    assert "bob" not in gateway.board.relays[call_id].legs
    await caller.close()
    await agent.close()
    await other.close()


async def test_bad_agent_credentials(gateway):
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway.base_url + "/api/v1/agent/login",
                             json={"username": "alice", "password": "wrong"}) as r:
            assert r.status == 401 and (await r.json())["code"] == "bad_credentials"
        async with http.post(gateway.base_url + "/api/v1/agent/login", json={"username": "alice"}) as r:
            assert r.status == 422 and (await r.json())["code"] == "invalid_body"
        async with http.post(gateway.base_url + "/api/v1/agent/login", data="x") as r:
            assert r.status == 415
        async with http.post(gateway.base_url + "/api/v1/agent/login", data="x" * 300_000,
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413
    ws = WsClient(gateway.base_url, "/ws/agent")
    await ws.connect()
    await ws.send({"type": "hello", "id": "1", "token": "forged"})
    assert (await ws.wait("error"))["code"] == "invalid_token"
    await ws.close()
    # A caller token is not an agent token.
    from gateway.auth import mint_caller_token

    ws = WsClient(gateway.base_url, "/ws/agent")
    await ws.connect()
    await ws.send({"type": "hello", "id": "1", "token": mint_caller_token(TEST_SECRET, sub="alice")})
    assert (await ws.wait("error"))["code"] == "invalid_token"
    await ws.close()


async def test_an_unknown_protocol_version_is_refused(gateway, caller_token):
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect()
    await ws.send({"type": "hello", "id": "h", "token": caller_token(), "protocol": 2})
    error = await ws.wait("error")
    assert error["code"] == "unsupported_protocol" and "protocol 1" in error["reason"]
    await ws.close()
    assert ws.close_code == 4400 and len(gateway.board.sessions) == 0


async def test_offer_without_a_usable_fingerprint_is_bad_sdp(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
    from tests.support.media import ToneAudioTrack

    caller.peer.pc.addTrack(ToneAudioTrack(500))
    sdp = await caller.peer.offer()
    lines = sdp.split("\r\n")
    no_fingerprint = "\r\n".join(line for line in lines if not line.startswith("a=fingerprint:"))
    sha1_only = "\r\n".join(line for line in lines if not line.startswith("a=fingerprint:")
                            or line.startswith("a=fingerprint:sha-256")).replace("a=fingerprint:sha-256", "a=fingerprint:sha-1")
    for junk in (no_fingerprint, sha1_only):
        bad = await caller.ws.request({"type": "sdp.offer", "sdp": junk})
        assert bad["type"] == "error" and bad["code"] == "bad_sdp", bad
        assert "fingerprint" in bad["reason"]
        assert gateway.board.relays[queued["call_id"]].caller is None
    good = await caller.ws.request({"type": "sdp.offer", "sdp": sdp})
    assert good["type"] == "sdp.answer", good
    await caller.peer.answer(good["sdp"])
    leg = gateway.board.relays[queued["call_id"]].caller
    await wait_until(lambda: leg.state == "connected")
    await caller.close()
