"""The engine against a fake media plane (tests/support/fakeplane.py): what it asks of media and what it does with
leg events, in milliseconds and without a socket. The real-peer proofs of the same paths are in
tests/integration/test_call.py, test_media_health.py and test_media_workers.py."""

from __future__ import annotations

import asyncio

from gateway.auth import AgentAccount
from gateway.events import (
    CallAnswered,
    CallBarge,
    CallEnded,
    CallHeld,
    CallOffered,
    CallRinging,
    CallTransferred,
    ConsultState,
    MediaState,
    ParticipantConnection,
)
from gateway.media.topology import SuperviseMode
from gateway.models import AgentStatus, CallContext, CallerIdentity, CallState, CallType, EndReason
from gateway.switchboard import Switchboard
from tests.support.fakeplane import FAKE_ANSWER, FakePlane
from tests.support.server import test_settings as gateway_settings
from tests.support.waiting import until


class Party:
    """A session's events, as its socket would have received them."""

    def __init__(self, board: Switchboard, session) -> None:
        self.session = session
        self.events: list = []
        board.sessions.attach(session, lambda item: self.events.append(item.event))

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def connected_call(plane: FakePlane, **settings):
    board = Switchboard(gateway_settings(**settings), plane=plane)
    caller = Party(board, board.open_caller(CallerIdentity(subject="cust-1", expires_at=0)))
    call = board.start_call(caller.session, CallType.VIDEO, None, CallContext())
    assert await board.caller_offer(caller.session, call.id, "offer") == FAKE_ANSWER
    agent = Party(board, board.open_agent(AgentAccount(username="alice", display_name="Alice")))
    board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
    assert call.state is CallState.OFFERED and call.offered_to == "alice"
    board.accept(agent.session, call.id)
    assert await board.agent_offer(agent.session, call.id, "offer") == FAKE_ANSWER
    return board, caller, agent, call


async def test_offers_scene_and_hold_go_through_the_plane():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        assert ("open_call", call.id) in plane.asked
        assert [a for a in plane.asked if a[0] == "answer"] == [("answer", call.id, "caller"),
                                                                 ("answer", call.id, "alice")]
        assert plane.scenes[call.id]["agent"] == "alice"
        board.hold(agent.session, call.id, True)
        assert plane.scenes[call.id]["held"] is True
        await board.caller_hangup(caller.session, call.id)
        assert ("close_call", call.id) in plane.asked and not plane.has_call(call.id)
    finally:
        await board.close()
    assert plane.closed


async def test_media_states_reach_both_sides_named_by_role():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        plane.emit(call.id, "caller", "state", state="disconnected")
        plane.emit(call.id, "alice", "state", state="connected")
        assert [(e.leg, e.state) for e in agent.of(MediaState)] == [("caller", "disconnected"), ("agent", "connected")]
        assert [(e.leg, e.state) for e in caller.of(MediaState)] == [("caller", "disconnected"), ("agent", "connected")]
    finally:
        await board.close()


async def test_a_failed_leg_ends_the_call_with_its_cause_recorded():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        plane.emit(call.id, "caller", "failed", reason="worker_died")
        await until(lambda: call.state is CallState.ENDED)
        assert call.end_reason is EndReason.MEDIA_FAILED and call.ended_by == "system"
        assert any(e.kind == "media_failed" and e.detail.get("cause") == "worker_died" for e in call.events)
        assert [e.reason for e in caller.of(CallEnded)] == ["media_failed"]
        assert [e.reason for e in agent.of(CallEnded)] == ["media_failed"]
        assert not plane.has_call(call.id)
    finally:
        await board.close()


async def test_events_of_a_leg_that_is_no_longer_current_are_ignored():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        stale = "fake:old-leg#0"
        plane.emit(call.id, "caller", "state", leg_id=stale, state="disconnected")
        plane.emit(call.id, "caller", "failed", leg_id=stale, reason="closed_by_remote")
        await asyncio.sleep(0.05)
        assert call.state is CallState.CONNECTED and not agent.of(MediaState)
    finally:
        await board.close()


async def test_a_second_offer_replaces_the_leg_and_the_others_hear_of_it_as_a_media_reconnect():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        old_leg = plane.calls[call.id]["caller"]
        # A bad new offer changes nothing: no event, the old leg still current.
        try:
            await board.caller_offer(caller.session, call.id, "bad")
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "code", None) == "bad_sdp"
        else:
            raise AssertionError("a bad offer was answered")
        assert not agent.of(ParticipantConnection) and board.live.leg(old_leg) is not None
        assert await board.caller_offer(caller.session, call.id, "offer") == FAKE_ANSWER
        new_leg = plane.calls[call.id]["caller"]
        assert new_leg != old_leg and board.live.leg(old_leg) is None
        told = agent.of(ParticipantConnection)
        assert [(e.role, e.connected, e.cause) for e in told] == [("caller", False, "media")]
        assert not caller.of(ParticipantConnection)  # the one who reconnects is not told about itself
        # The old leg's events are ignored; the new one connecting is the reconnect.
        plane.emit(call.id, "caller", "failed", leg_id=old_leg, reason="closed_by_remote")
        plane.emit(call.id, "caller", "state", state="connected")
        told = agent.of(ParticipantConnection)
        assert [(e.role, e.connected, e.cause) for e in told] == [("caller", False, "media"), ("caller", True, "media")]
        assert call.state is CallState.CONNECTED
        assert [e.kind for e in call.events if e.kind.startswith("media_")] == [
            "media_replaced", "media_reconnecting", "media_reconnected"]
    finally:
        await board.close()


async def test_a_leg_closed_by_its_side_waits_for_a_new_offer_before_the_call_ends():
    plane = FakePlane()
    board = None
    try:
        board, caller, agent, call = await connected_call_with(plane, media_recovery_grace_s=0.2)
        plane.emit(call.id, "alice", "failed", reason="closed_by_remote")
        await asyncio.sleep(0.05)
        assert call.state is CallState.CONNECTED  # within the grace
        assert await board.agent_offer(agent.session, call.id, "offer") == FAKE_ANSWER  # the console's new offer
        await asyncio.sleep(0.3)
        assert call.state is CallState.CONNECTED  # replaced in time: the call goes on
        plane.emit(call.id, "alice", "failed", reason="ice_failed")
        await until(lambda: call.state is CallState.ENDED)  # not replaced within the grace: media_failed
        assert call.end_reason is EndReason.MEDIA_FAILED
    finally:
        if board is not None:
            await board.close()


async def connected_call_with(plane: FakePlane, **settings):
    board = Switchboard(gateway_settings(**settings), plane=plane)
    caller = Party(board, board.open_caller(CallerIdentity(subject="cust-1", expires_at=0)))
    call = board.start_call(caller.session, CallType.VIDEO, None, CallContext())
    await board.caller_offer(caller.session, call.id, "offer")
    agent = Party(board, board.open_agent(AgentAccount(username="alice", display_name="Alice")))
    board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
    board.accept(agent.session, call.id)
    await board.agent_offer(agent.session, call.id, "offer")
    return board, caller, agent, call


async def test_a_still_comes_from_the_plane_and_a_call_without_video_says_so():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        still = await board.plane.still(call.id)
        assert still.jpeg.startswith(b"\xff\xd8")
        await board.caller_hangup(caller.session, call.id)
        try:
            await board.plane.still(call.id)
        except Exception as exc:  # noqa: BLE001 - the code is what matters
            assert getattr(exc, "code", None) == "no_video"
        else:
            raise AssertionError("a still of an ended call")
    finally:
        await board.close()


async def test_blind_transfer_moves_the_scene_to_the_colleague_and_closes_the_old_leg():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))
        board.set_agent_status(bob.session, AgentStatus.AVAILABLE)
        await board.transfer(agent.session, call.id, to_agent="bob", to_queue=None, mode="blind")
        assert ("remove", call.id, "alice") in plane.asked and "alice" not in plane.calls[call.id]
        assert call.state is CallState.OFFERED and call.offered_to == "bob"
        board.accept(bob.session, call.id)
        assert plane.scenes[call.id]["agent"] == "bob"
        assert await board.agent_offer(bob.session, call.id, "offer") == FAKE_ANSWER
        # alice's old leg is gone: an event from it is nobody's business any more
        plane.emit(call.id, "alice", "failed", leg_id="fake:gone#0", reason="closed_by_remote")
        await asyncio.sleep(0.02)
        assert call.state is CallState.CONNECTED and call.agent == "bob"
    finally:
        await board.close()


async def test_a_supervisor_leg_that_fails_drops_the_supervisor_not_the_call():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        sam = Party(board, board.open_agent(AgentAccount(username="sam", display_name="Sam", role="supervisor")))
        board.supervise(sam.session, call.id, SuperviseMode.MONITOR)
        assert plane.scenes[call.id]["supervisors"] == {"sam": SuperviseMode.MONITOR}
        await board.agent_offer(sam.session, call.id, "offer")
        # the supervisor's media states are told to the supervisor only, as "self"
        plane.emit(call.id, "sam", "state", state="connected")
        assert [(e.leg, e.state) for e in sam.of(MediaState)] == [("self", "connected")]
        assert not caller.of(MediaState) and not agent.of(MediaState)
        plane.emit(call.id, "sam", "failed", reason="ice_failed")
        await until(lambda: "sam" not in call.supervisors)
        assert call.state is CallState.CONNECTED
        assert plane.scenes[call.id]["supervisors"] == {} and ("remove", call.id, "sam") in plane.asked
    finally:
        await board.close()


async def test_blind_transfer_to_the_queue_rings_the_agent_idle_longest():
    """Back in line at its place: bob (idle longer than alice, who just became available) is rung."""
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))
        board.set_agent_status(bob.session, AgentStatus.AVAILABLE)
        await board.transfer(agent.session, call.id, to_agent=None, to_queue="default", mode="blind")
        assert ("remove", call.id, "alice") in plane.asked and plane.scenes[call.id]["agent"] is None
        assert call.state is CallState.OFFERED and call.offered_to == "bob"
        assert [e.call_id for e in bob.of(CallOffered)] == [call.id]
        assert board.agents["alice"].status is AgentStatus.AVAILABLE and not agent.of(CallOffered)[1:]
    finally:
        await board.close()


def scene(plane: FakePlane, call_id: str, expected: dict) -> bool:
    """The plane's scene of the call has these fields with these values (None: unset or None)."""
    got = plane.scenes[call_id]
    assert {k: got.get(k) for k in expected} == expected, got
    return True


async def warm_consult(plane: FakePlane):
    board, caller, agent, call = await connected_call(plane)
    bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))
    board.set_agent_status(bob.session, AgentStatus.AVAILABLE)
    await board.transfer(agent.session, call.id, to_agent="bob", to_queue=None, mode="warm")
    offer = bob.of(CallOffered)[-1]
    assert offer.call_id == call.id and offer.card["consult"]["from"] == "alice"
    board.accept(bob.session, call.id)
    # Consult: the caller is held, bob joins the scene as the consulted colleague; alice stays the call's agent.
    assert scene(plane, call.id, {"agent": "alice", "consult": "bob", "held": True})
    assert [e.held for e in caller.of(CallHeld)] == [True]
    assert [(e.state, e.colleague) for e in agent.of(ConsultState)] == [("joined", "bob")]
    return board, caller, agent, bob, call


async def test_warm_transfer_consult_then_hand_over_moves_the_scene_to_the_colleague():
    plane = FakePlane()
    board, caller, agent, bob, call = await warm_consult(plane)
    try:
        await board.complete_transfer(agent.session, call.id)
        assert scene(plane, call.id, {"agent": "bob", "consult": None, "held": False})
        assert ("remove", call.id, "alice") in plane.asked
        assert call.agent == "bob" and call.transferred_from == "alice" and call.state is CallState.CONNECTED
        assert [e.to for e in agent.of(CallTransferred)] == ["bob"]
        assert caller.of(CallAnswered)[-1].agent_name == "Bob"
    finally:
        await board.close()


async def test_warm_transfer_cancelled_returns_the_scene_to_the_caller_and_frees_the_colleague():
    plane = FakePlane()
    board, caller, agent, bob, call = await warm_consult(plane)
    try:
        await board.cancel_transfer(agent.session, call.id)
        assert scene(plane, call.id, {"agent": "alice", "consult": None, "held": False})
        assert [e.held for e in caller.of(CallHeld)] == [True, False]
        assert [e.state for e in bob.of(ConsultState)] == ["cancelled"]
        assert call.agent == "alice" and board.agents["bob"].status is AgentStatus.AVAILABLE
    finally:
        await board.close()


async def test_the_caller_is_told_its_call_rings_and_when_the_ring_ends_unanswered():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        # Rung at alice, then answered: one "ringing" with her name, and no "ringing false" for an answer.
        assert [(e.ringing, e.agent_name) for e in caller.of(CallRinging)] == [(True, "Alice")]
        # A blind transfer to bob rings him; his ring times out: the caller is back in line, told so.
        bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))
        board.set_agent_status(bob.session, AgentStatus.AVAILABLE)
        await board.transfer(agent.session, call.id, to_agent="bob", to_queue=None, mode="blind")
        assert caller.of(CallRinging)[-1] == CallRinging(call_id=call.id, ringing=True, agent_name="Bob")
        # Bob declines: the caller is back in line (told so), and alice, free again, is rung at once.
        board.decline(bob.session, call.id)
        assert [(e.ringing, e.agent_name) for e in caller.of(CallRinging)] == [
            (True, "Alice"), (True, "Bob"), (False, None), (True, "Alice")]
        assert call.state is CallState.OFFERED and call.offered_to == "alice"
        # Agents never get call.ringing.
        assert not agent.of(CallRinging) and not bob.of(CallRinging)
    finally:
        await board.close()


async def test_the_caller_is_told_of_barging_only():
    plane = FakePlane()
    board, caller, agent, call = await connected_call(plane)
    try:
        sam = Party(board, board.open_agent(AgentAccount(username="sam", display_name="Sam", role="supervisor")))
        steps = [SuperviseMode.MONITOR, SuperviseMode.WHISPER, SuperviseMode.BARGE, SuperviseMode.BARGE,
                 SuperviseMode.MONITOR, SuperviseMode.BARGE]
        told = []
        for mode in steps:
            board.supervise(sam.session, call.id, mode)
            told.append([(e.active, e.name) for e in caller.of(CallBarge)])
        assert told == [[], [], [(True, "Sam")], [(True, "Sam")], [(True, "Sam"), (False, "Sam")],
                        [(True, "Sam"), (False, "Sam"), (True, "Sam")]]
        await board.stop_supervising(sam.session, call.id)
        assert caller.of(CallBarge)[-1] == CallBarge(call_id=call.id, active=False, name="Sam")
        assert not agent.of(CallBarge) and not sam.of(CallBarge)
    finally:
        await board.close()
