"""Hold, blind and warm transfer, supervisor monitor/whisper/barge: who hears whom, checked by content (the engine's
side of the same paths, blind transfer to the queue included, is in tests/unit/test_engine_media.py on a fake plane).

Every party sends a tone of its own: caller 880 Hz, Alice 440 Hz, Bob 550 Hz, supervisor Sam 660 Hz.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.support.api import Api
from tests.support.clients import Agent, Caller, answered_call, hears, wait_until

pytestmark = pytest.mark.media

CALLER_HZ, ALICE_HZ, BOB_HZ, SAM_HZ = 880, 440, 550, 660


def received(peer, slot: str) -> Callable[[], int]:
    """Frames received so far in one slot of a peer (0 while the slot does not exist)."""
    def count() -> int:
        sink = peer.slots.get(slot)
        if sink is None:
            return 0
        return sink.audio_total if sink.track.kind == "audio" else len(sink.counters)
    return count


def forwarded(gateway, call_id: str, participant: str, slot: str) -> Callable[[], int]:
    """Frames the relay has sent so far to one slot of a participant's leg."""
    consumer = gateway.board.relays[call_id].legs[participant].consumers[slot]
    return lambda: consumer.stats.frames_out


def arriving(gateway, call_id: str, participant: str) -> Callable[[], int]:
    """Audio frames (50/s) that have reached the relay so far from a participant's microphone: a live clock."""
    producer = gateway.board.relays[call_id].legs[participant].producers["audio"]
    return lambda: producer.frames


async def cut(gateway, call_id: str, peer, participant: str, slot: str, live: str) -> None:
    """Nothing more goes to `participant`'s `slot`: the relay sends it not one frame while a second of `live`'s
    audio reaches the relay, and the client got nothing beyond what had been sent before. (Frames already sent may
    still reach the client late on a loaded machine: a client-side frame count in a window cannot tell those from
    a leak, the relay's own count can.)"""
    count = forwarded(gateway, call_id, participant, slot)
    await falls_silent(count, clock=arriving(gateway, call_id, live), in_flight=False)
    assert received(peer, slot)() <= count()


async def falls_silent(count: Callable[[], int], clock: Callable[[], int], *, frames: int = 50,
                       timeout: float = 20, in_flight: bool = True) -> None:
    """A stream has stopped (or never started): `count` does not move while a live stream on the same client,
    `clock` (50 frames/s), advances by `frames`. Measured against a live stream rather than a wall clock, so a
    loaded machine slows both alike. `in_flight`: frames already on their way when the stream was cut may arrive
    first (then the quiet stretch starts again, until `timeout`); without it, not one frame may arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    start = last = count()
    base = clock()
    while clock() - base < frames:
        await asyncio.sleep(0.02)
        now = count()
        if now != last:
            assert in_flight, f"{now - start} frames arrived, none expected"
            last, base = now, clock()
        assert loop.time() < deadline, f"the stream did not stop: {count() - start} frames arrived in {timeout} s"


async def connected_call(gateway, caller_token, *, caller_aux: bool = False, agent_aux: bool = False):
    caller, alice, call_id = await answered_call(gateway.base_url, caller_token(), caller_hz=CALLER_HZ,
                                                 agent_hz=ALICE_HZ, caller_aux=caller_aux, agent_aux=agent_aux)
    await wait_until(lambda: "audio" in caller.peer.slots and "audio" in alice.peer.slots, 10)
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    await hears(caller.peer.slots["audio"], ALICE_HZ)
    return caller, alice, call_id


async def test_hold_stops_media_both_ways_and_resume_restores_it(gateway, caller_token):
    caller, alice, call_id = await connected_call(gateway, caller_token)
    assert (await alice.ws.request({"type": "call.hold", "call_id": call_id}))["type"] == "ack"
    held = await caller.ws.wait("call.held")
    assert held["held"] is True
    video = alice.peer.slots["video"]
    # No audio either way and no video on hold (both still talk into their microphones).
    await cut(gateway, call_id, alice.peer, "alice", "audio", live="caller")
    await cut(gateway, call_id, caller.peer, "caller", "audio", live="alice")
    await cut(gateway, call_id, alice.peer, "alice", "video", live="caller")
    again = await alice.ws.request({"type": "call.hold", "call_id": call_id})
    assert again["code"] == "hold_unchanged"
    await alice.ws.request({"type": "call.resume", "call_id": call_id})
    assert (await caller.ws.wait(lambda m: m["type"] == "call.held" and m["held"] is False))["held"] is False
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    await hears(caller.peer.slots["audio"], ALICE_HZ)
    frames = len(video.counters)
    await wait_until(lambda: len(video.counters) > frames + 20, 10)
    kinds = [e.kind for e in gateway.board.calls[call_id].events]
    assert "hold" in kinds and "resume" in kinds
    await caller.close()
    await alice.close()


async def test_blind_transfer_to_an_agent(gateway, caller_token):
    caller, alice, call_id = await connected_call(gateway, caller_token)
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect()
    alice_leg = gateway.board.relays[call_id].legs["alice"]
    assert (await alice.ws.request({"type": "call.transfer", "call_id": call_id, "mode": "blind",
                                    "to_agent": "bob"}))["type"] == "ack"
    assert (await caller.ws.wait("call.transferring"))["mode"] == "blind"
    assert (await alice.ws.wait("call.transferred"))["to"] == "bob"
    offer = await bob.wait_offer()
    assert offer["call_id"] == call_id and offer["card"]["transferred_from"] == "alice"
    assert any(h["kind"] == "offered" and h.get("transfer") == "blind" for h in offer["card"]["history"])
    await wait_until(lambda: alice_leg.closed)
    assert gateway.board.agents["alice"].status.value == "available"
    await bob.accept(call_id, tone_hz=BOB_HZ)
    answered = await caller.ws.wait(lambda m: m["type"] == "call.answered" and m["agent_name"].startswith("Bob"))
    assert answered["call_id"] == call_id
    await wait_until(lambda: "audio" in bob.peer.slots, 10)
    await hears(bob.peer.slots["audio"], CALLER_HZ)
    await hears(caller.peer.slots["audio"], BOB_HZ)
    await wait_until(lambda: len(bob.peer.slots["video"].counters) > 20, 10)
    assert None not in bob.peer.slots["video"].counters
    # Errors: transfer to oneself, to an unknown agent, a non-existing queue.
    for body, code in (({"to_agent": "bob"}, "transfer_to_self"), ({"to_agent": "zed"}, "unknown_agent"),
                       ({"to_queue": "nowhere"}, "unknown_queue")):
        reply = await bob.ws.request({"type": "call.transfer", "call_id": call_id, "mode": "blind", **body})
        assert reply["code"] == code, reply
    await caller.close()
    await alice.close()
    await bob.close()


async def test_warm_transfer_consults_then_hands_over(gateway, caller_token):
    caller, alice, call_id = await connected_call(gateway, caller_token, agent_aux=True)
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect()
    await alice.ws.request({"type": "call.transfer", "call_id": call_id, "mode": "warm", "to_agent": "bob"})
    offer = await bob.wait_offer()
    assert offer["card"]["consult"]["from"] == "alice"
    await bob.accept(call_id, tone_hz=BOB_HZ)
    assert (await alice.ws.wait("consult.state"))["state"] == "joined"
    assert (await caller.ws.wait("call.held"))["held"] is True
    # Consult: Alice and Bob hear each other, the caller hears neither (on hold).
    await wait_until(lambda: "audio" in bob.peer.slots and "audio:1" in alice.peer.slots, 10)
    await hears(bob.peer.slots["audio"], ALICE_HZ)
    await hears(alice.peer.slots["audio:1"], BOB_HZ)
    await cut(gateway, call_id, caller.peer, "caller", "audio", live="alice")
    assert gateway.board.relays[call_id].hears("caller") == set()
    # Hand over: the caller and Bob talk, Alice is gone.
    await alice.ws.request({"type": "transfer.complete", "call_id": call_id})
    answered = await caller.ws.wait(lambda m: m["type"] == "call.answered" and m["agent_name"].startswith("Bob"))
    assert answered["call_id"] == call_id
    assert (await alice.ws.wait("call.transferred"))["to"] == "bob"
    await hears(bob.peer.slots["audio"], CALLER_HZ)
    await hears(caller.peer.slots["audio"], BOB_HZ)
    assert gateway.board.calls[call_id].agent == "bob"
    assert "alice" not in gateway.board.relays[call_id].legs
    # Bob hangs up: the call ends for the caller.
    await bob.hangup(call_id)
    assert (await caller.ws.wait("call.ended"))["reason"] == "agent_hangup"
    await caller.close()
    await alice.close()
    await bob.close()


async def test_warm_transfer_cancelled_returns_to_the_caller(gateway, caller_token):
    caller, alice, call_id = await connected_call(gateway, caller_token, agent_aux=True)
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect()
    await alice.ws.request({"type": "call.transfer", "call_id": call_id, "mode": "warm", "to_agent": "bob"})
    await bob.wait_offer()
    await bob.accept(call_id, tone_hz=BOB_HZ)
    await alice.ws.wait("consult.state")
    await alice.ws.request({"type": "transfer.cancel", "call_id": call_id})
    assert (await bob.ws.wait(lambda m: m["type"] == "consult.state" and m["state"] == "cancelled"))
    await caller.ws.wait(lambda m: m["type"] == "call.held" and m["held"] is False)
    await hears(caller.peer.slots["audio"], ALICE_HZ)
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    assert gateway.board.agents["bob"].status.value == "available"
    await caller.close()
    await alice.close()
    await bob.close()


async def test_supervisor_monitor_whisper_barge(gateway, caller_token):
    caller, alice, call_id = await connected_call(gateway, caller_token, caller_aux=True, agent_aux=True)
    # An agent may not supervise.
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect(available=False)
    refused = await bob.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
    assert refused["code"] == "not_supervisor"
    sam = Agent(gateway.base_url, "sam", "sam-demo")
    await sam.connect(available=False)

    started = await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
    assert started["type"] == "supervise.started" and started["card"]["call_id"] == call_id
    await sam.join_media(call_id, tone_hz=SAM_HZ, aux_audio=True)
    await wait_until(lambda: {"audio", "audio:1", "video"} <= set(sam.peer.slots), 10)
    # Monitor: Sam hears the caller and Alice and sees the caller; nobody hears Sam.
    await hears(sam.peer.slots["audio"], CALLER_HZ)
    await hears(sam.peer.slots["audio:1"], ALICE_HZ)
    await wait_until(lambda: len(sam.peer.slots["video"].counters) > 10, 10)
    assert "sam" not in gateway.board.relays[call_id].hears("alice")
    assert "sam" not in gateway.board.relays[call_id].hears("caller")
    await falls_silent(received(alice.peer, "audio:1"), clock=received(alice.peer, "audio"), in_flight=False)
    await falls_silent(received(caller.peer, "audio:1"), clock=received(caller.peer, "audio"), in_flight=False)
    with pytest.raises(AssertionError, match="did not stop"):  # the same check on a live stream fails
        await falls_silent(received(sam.peer, "audio"), clock=received(sam.peer, "audio:1"), timeout=3)

    # Whisper: Alice hears Sam on her second section; the caller still does not.
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "whisper"})
    await wait_until(lambda: "audio:1" in alice.peer.slots, 10)
    await hears(alice.peer.slots["audio:1"], SAM_HZ)
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    await falls_silent(received(caller.peer, "audio:1"), clock=received(caller.peer, "audio"), in_flight=False)

    # Barge: the caller hears Sam too, and still Alice.
    await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
    await wait_until(lambda: "audio:1" in caller.peer.slots, 10)
    await hears(caller.peer.slots["audio:1"], SAM_HZ)
    await hears(caller.peer.slots["audio"], ALICE_HZ)

    # Everything was logged in the call.
    modes = [e.detail.get("mode") for e in gateway.board.calls[call_id].events if e.kind == "supervise"]
    assert modes == ["monitor", "whisper", "barge"]

    # Sam leaves: Alice's second section falls silent; the call goes on.
    assert (await sam.ws.request({"type": "supervise.stop", "call_id": call_id}))["type"] == "ack"
    await cut(gateway, call_id, alice.peer, "alice", "audio:1", live="caller")
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    assert gateway.board.calls[call_id].state.value == "connected"
    await alice.hangup(call_id)

    # ... and in the durable record, in order, with who did it.
    api = Api(gateway.base_url)
    await api.login("admin", "admin-demo")
    record = await api.ended_record(call_id)
    logged = [(e["kind"], e["detail"].get("mode")) for e in record["events"] if e["kind"].startswith("supervise")]
    assert logged == [("supervise", "monitor"), ("supervise", "whisper"), ("supervise", "barge"),
                      ("supervise_stopped", None)], record["events"]
    await api.close()
    await caller.close()
    await alice.close()
    await bob.close()
    await sam.close()


async def test_wallboard_is_pushed_to_supervisors_only(gateway, caller_token):
    sam = Agent(gateway.base_url, "sam", "sam-demo")
    await sam.connect(available=False)
    board = await sam.ws.request({"type": "wallboard.subscribe"})
    assert board["type"] == "wallboard" and board["calls"] == [] and board["waiting"] == []
    assert {a["username"] for a in board["agents"]} == {"sam"}
    alice = Agent(gateway.base_url)
    await alice.connect(available=False)
    refused = await alice.ws.request({"type": "wallboard.subscribe"})
    assert refused["code"] == "not_supervisor"
    caller = Caller(gateway.base_url, caller_token(name="Wanda Waiting"))
    await caller.connect()
    await caller.ws.request({"type": "call.start", "call_type": "voice"})
    waiting = await sam.ws.wait(lambda m: m["type"] == "wallboard" and m["waiting"])
    assert waiting["waiting"][0]["caller"] == "Wanda Waiting" and waiting["queues"][0]["waiting"] == 1
    await alice.ws.request({"type": "agent.status", "status": "available"})
    offer = await alice.wait_offer()
    await alice.ws.request({"type": "call.accept", "call_id": offer["call_id"]})
    live = await sam.ws.wait(lambda m: m["type"] == "wallboard" and m["calls"])
    assert live["calls"][0]["agent"] == "alice" and live["waiting"] == []
    assert next(a for a in live["agents"] if a["username"] == "alice")["status"] == "busy"
    await caller.close()
    await alice.close()
    await sam.close()
