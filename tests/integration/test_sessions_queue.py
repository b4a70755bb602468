"""Queue positions, ring timeout/re-offer, decline, and sessions that outlive their sockets."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.server import running_gateway

pytestmark = pytest.mark.media


async def test_positions_update_as_the_queue_moves(gateway, caller_token):
    callers = [Caller(gateway.base_url, caller_token(sub=f"c{i}")) for i in range(3)]
    for caller in callers:
        await caller.connect()
    positions = [(await c.ws.request({"type": "call.start", "call_type": "voice"}))["position"] for c in callers]
    assert positions == [1, 2, 3]
    agent = Agent(gateway.base_url)
    await agent.connect()
    offer = await agent.wait_offer()
    assert offer["call_id"] == callers[0].ws.of_type("call.queued")[0]["call_id"]
    await agent.ws.request({"type": "call.accept", "call_id": offer["call_id"]})
    # The others move up and are told, without asking.
    for caller, expected in ((callers[1], 1), (callers[2], 2)):
        update = await caller.ws.wait(lambda m, e=expected: m["type"] == "queue.position" and m["position"] == e)
        assert update["queue_length"] == 2
        assert update["estimated_wait_s"] is not None  # one agent is staffed now
    for caller in callers:
        await caller.close()
    await agent.close()


async def test_decline_and_ring_timeout_reoffer_to_another_agent(caller_token):
    async with running_gateway(ring_timeout_s=0.5, ring_outs_before_away=1, reoffer_after_decline_s=0.2) as gw:
        alice, bob = Agent(gw.base_url), Agent(gw.base_url, "bob", "bob-demo")
        await alice.connect()
        await asyncio.sleep(0.01)
        await bob.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        await caller.ws.request({"type": "call.start", "call_type": "voice"})
        first = await alice.wait_offer()  # alice has been idle longest
        await alice.ws.request({"type": "call.decline", "call_id": first["call_id"]})
        withdrawn = await alice.ws.wait("call.offer_withdrawn")
        assert withdrawn["reason"] == "declined"
        second = await bob.wait_offer()
        assert second["call_id"] == first["call_id"]
        # bob lets it ring out: withdrawn, bob set away and told why, the call rings at alice again.
        assert (await bob.ws.wait("call.offer_withdrawn", timeout=3))["reason"] == "ring_timeout"
        away = await bob.ws.wait(lambda m: m["type"] == "agent.status" and m["status"] == "away")
        assert away["reason"] == "missed_call"
        again = await alice.ws.wait(lambda m: m["type"] == "call.offered", since=len(alice.ws.messages) - 3, timeout=3)
        assert again["call_id"] == first["call_id"]
        states = [e.kind for e in gw.board.calls[first["call_id"]].events]
        assert states == ["queued", "offered", "queued", "offered", "queued", "offered"]
        await caller.close()
        await alice.close()
        await bob.close()


async def test_caller_resumes_call_after_reconnect(gateway, caller_token):
    token = caller_token(sub="mobile-user")
    caller = Caller(gateway.base_url, token)
    welcome = await caller.connect()
    queued = await caller.start("video")
    await caller.ws.close()  # the phone's network drops; the peer connection stays up
    await asyncio.sleep(0.2)
    assert gateway.board.calls[queued["call_id"]].state.value == "queued"

    agent = Agent(gateway.base_url)
    await agent.connect()
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"])  # answered while the caller's socket is gone

    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect()
    resumed = await ws.request({"type": "hello", "token": token, "resume_token": welcome["resume_token"]})
    assert resumed["resumed"] is True and resumed["session_id"] == welcome["session_id"]
    assert resumed["call"]["call_id"] == queued["call_id"] and resumed["call"]["state"] == "connected"
    answered = await ws.wait("call.answered")  # the missed event is replayed
    assert answered["call_id"] == queued["call_id"]
    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) > 10, 15)

    # Someone else's token cannot take the session.
    thief = WsClient(gateway.base_url, "/ws/caller")
    await thief.connect()
    refused = await thief.request({"type": "hello", "token": caller_token(sub="other"),
                                   "resume_token": welcome["resume_token"]})
    assert refused["code"] == "resume_failed"
    await thief.close()

    await ws.request({"type": "call.hangup"})
    assert (await agent.ws.wait("call.ended"))["reason"] == "caller_hangup"
    await ws.close()
    await caller.close()
    await agent.close()


async def test_caller_gone_past_grace_ends_call_and_frees_agent(caller_token):
    async with running_gateway(resume_grace_s=0.3) as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        await caller.start("voice")
        offer = await agent.wait_offer()
        await agent.accept(offer["call_id"])
        await caller.ws.close()
        ended = await agent.ws.wait("call.ended", timeout=5)
        assert ended["reason"] == "caller_disconnected"
        await wait_until(lambda: gw.board.agents["alice"].status.value == "available")
        assert not gw.board.relays
        await caller.close()
        await agent.close()


async def test_bye_ends_the_session_at_once(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
    ack = await caller.ws.request({"type": "bye"})
    assert ack["type"] == "ack"
    await wait_until(lambda: gateway.board.calls[queued["call_id"]].state.value == "ended")
    assert gateway.board.calls[queued["call_id"]].end_reason.value == "caller_disconnected"
    await caller.close()


async def test_a_lone_agent_who_declines_is_not_rung_again_at_once(caller_token):
    async with running_gateway(reoffer_after_decline_s=1.0) as gw:
        alice = Agent(gw.base_url)
        await alice.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        await caller.ws.request({"type": "call.start", "call_type": "voice"})
        first = await alice.wait_offer()
        await alice.ws.request({"type": "call.decline", "call_id": first["call_id"]})
        mark = len(alice.ws.messages)
        await asyncio.sleep(0.5)
        assert not [m for m in alice.ws.messages[mark:] if m["type"] == "call.offered"]  # no ring loop
        again = await alice.ws.wait(lambda m: m["type"] == "call.offered", since=mark, timeout=3)
        assert again["call_id"] == first["call_id"]  # a new round, after the pause
        await caller.close()
        await alice.close()


async def test_an_offline_agent_does_not_strand_a_declined_call(caller_token):
    async with running_gateway(reoffer_after_decline_s=0.3) as gw:
        bob = Agent(gw.base_url, "bob", "bob-demo")
        await bob.connect()
        await bob.close()  # signed in once, now gone
        alice = Agent(gw.base_url)
        await alice.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        await caller.ws.request({"type": "call.start", "call_type": "voice"})
        first = await alice.wait_offer()
        await alice.ws.request({"type": "call.decline", "call_id": first["call_id"]})
        again = await alice.ws.wait(lambda m: m["type"] == "call.offered", since=len(alice.ws.messages), timeout=3)
        assert again["call_id"] == first["call_id"]
        await caller.close()
        await alice.close()


async def test_a_newer_connection_closes_the_replaced_one(gateway, caller_token):
    token = caller_token()
    caller = Caller(gateway.base_url, token)
    welcome = await caller.connect()
    newer = WsClient(gateway.base_url, "/ws/caller")
    await newer.connect()
    resumed = await newer.request({"type": "hello", "token": token, "resume_token": welcome["resume_token"]})
    assert resumed["resumed"] is True
    error = await caller.ws.wait("error")
    assert error["code"] == "session_replaced"
    await wait_until(lambda: caller.ws.close_code == 4409, 5)
    await newer.close()
    await caller.close()
