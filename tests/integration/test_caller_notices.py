"""What the caller and the agent are told about each other beyond the call's states (issue 18): a video call whose
camera is blocked says so (media.source reason, to the agent it rings at and in the card), the caller is told when
its call rings at an agent and when that ring ends unanswered (call.ringing), and when a supervisor barges in or
stops (call.barge; monitoring and whispering are never told)."""

from __future__ import annotations

import pytest

from tests.support.clients import Agent, Caller, WsClient

pytestmark = pytest.mark.media


async def until(ws: WsClient, kind: str, since: int, **fields):
    return await ws.wait(lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items()), since=since)


async def settled(ws: WsClient) -> int:
    """A ping answered: everything the gateway sent this socket before it has arrived; returns the next index."""
    await ws.request({"type": "ping"})
    return len(ws.messages)


async def test_a_blocked_camera_reaches_the_agent_ringing_and_the_card(gateway, caller_token):
    agent = Agent(gateway.base_url)
    await agent.connect()
    caller = Caller(gateway.base_url, caller_token(sub="no-camera"))
    await caller.connect()
    queued = await caller.start("voice")  # what the browser client does: only the microphone was granted
    call_id = queued["call_id"]
    offered = await agent.wait_offer()
    assert offered["card"]["media_source"] == "none" and offered["card"]["media_source_reason"] is None

    # A reason goes only with "none": refused, written for a person, and nothing changes.
    refused = await caller.ws.request({"type": "media.source", "source": "camera", "reason": "camera_blocked"})
    assert refused["code"] == "invalid_message" and 'only with source "none"' in refused["reason"], refused
    assert gateway.board.calls[call_id].card()["media_source_reason"] is None
    refused = await caller.ws.request({"type": "media.source", "source": "none", "reason": "camera_on_fire"})
    assert refused["code"] == "invalid_message", refused

    # The ringing agent is told (it was offered the card of a moment before), and the card follows.
    start = len(agent.ws.messages)
    ack = await caller.ws.request({"type": "media.source", "call_id": call_id, "source": "none",
                                   "reason": "camera_blocked"})
    assert ack["type"] == "ack", ack
    event = await until(agent.ws, "media.source", start)
    assert (event["source"], event["reason"], event["leg"]) == ("none", "camera_blocked", "caller")
    card = gateway.board.calls[call_id].card()
    assert (card["media_source"], card["media_source_reason"]) == ("none", "camera_blocked")
    accepted = await agent.accept(call_id)
    assert accepted["card"]["media_source_reason"] == "camera_blocked"

    # The camera comes back (the caller allowed it after all): the reason goes.
    start = len(agent.ws.messages)
    await caller.ws.request({"type": "media.source", "source": "camera"})
    event = await until(agent.ws, "media.source", start)
    assert (event["source"], event["reason"]) == ("camera", None)
    assert gateway.board.calls[call_id].card()["media_source_reason"] is None
    await caller.close()
    await agent.close()


async def test_the_caller_hears_its_call_ringing_and_the_ring_withdrawn(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="ringing"))
    await caller.connect()
    queued = await caller.start("voice")
    call_id = queued["call_id"]
    assert not caller.ws.of_type("call.ringing")  # nobody signed in: nothing rings

    alice = Agent(gateway.base_url)
    start = len(caller.ws.messages)
    await alice.connect()
    await alice.wait_offer()
    ringing = await until(caller.ws, "call.ringing", start)
    assert ringing == {"type": "call.ringing", "call_id": call_id, "ringing": True,
                       "agent_name": "Alice (demo agent)", "seq": ringing["seq"]}

    # Alice declines: the caller waits again; Bob is rung next and the caller is told his name.
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect(available=False)
    start = len(caller.ws.messages)
    await alice.ws.request({"type": "call.decline", "call_id": call_id})
    withdrawn = await until(caller.ws, "call.ringing", start)
    assert (withdrawn["ringing"], withdrawn["agent_name"]) == (False, None)
    start = len(caller.ws.messages)
    await bob.ws.request({"type": "agent.status", "status": "available"})
    await bob.wait_offer()
    assert (await until(caller.ws, "call.ringing", start))["agent_name"] == "Bob (demo agent)"

    # Bob answers: call.answered, and no "ringing false" (an answer is not a withdrawn ring).
    start = len(caller.ws.messages)
    await bob.accept(call_id)
    await until(caller.ws, "call.answered", start)
    assert [m["ringing"] for m in caller.ws.of_type("call.ringing")] == [True, False, True]
    assert not alice.ws.of_type("call.ringing") and not bob.ws.of_type("call.ringing")  # the caller's alone
    await caller.close()
    await alice.close()
    await bob.close()


async def test_the_caller_is_told_when_a_supervisor_barges_in_and_stops(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="barged"))
    await caller.connect()
    queued = await caller.start("voice", aux_audio=True)
    call_id = queued["call_id"]
    alice = Agent(gateway.base_url)
    await alice.connect()
    await alice.wait_offer()
    await alice.accept(call_id)
    await caller.ws.wait("call.answered")
    sam = Agent(gateway.base_url, "sam", "sam-demo")
    await sam.connect(available=False)

    # Monitoring and whispering: the caller hears nothing of Sam, and is told nothing.
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "whisper"})
    await settled(caller.ws)
    assert not caller.ws.of_type("call.barge")

    start = len(caller.ws.messages)
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
    barge = await until(caller.ws, "call.barge", start)
    assert barge == {"type": "call.barge", "call_id": call_id, "active": True, "name": "Sam (demo supervisor)",
                     "seq": barge["seq"]}
    # Barge again: nothing new. Back to whisper: the caller no longer hears Sam, and is told.
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
    start = len(caller.ws.messages)
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "whisper"})
    stopped = await until(caller.ws, "call.barge", start)
    assert (stopped["active"], stopped["name"]) == (False, "Sam (demo supervisor)")
    # Barge, then leave the call: told too.
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
    start = len(caller.ws.messages)
    assert (await sam.ws.request({"type": "supervise.stop", "call_id": call_id}))["type"] == "ack"
    assert (await until(caller.ws, "call.barge", start))["active"] is False
    assert [m["active"] for m in caller.ws.of_type("call.barge")] == [True, False, True, False]
    assert not alice.ws.of_type("call.barge") and not sam.ws.of_type("call.barge")
    await caller.close()
    await alice.close()
    await sam.close()
