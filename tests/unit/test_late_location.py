"""A location sent after call.start (call.location): kept on the call once, told to whoever sees the card now, and
refused with a typed error (the call unchanged) after the end or when the call has one already. In-process engine
with its real sessions; the wire and the real peers are in tests/integration/test_late_location.py."""

from __future__ import annotations

import pytest

from gateway.auth import AgentAccount
from gateway.errors import GatewayError
from gateway.events import CallLocated, CallOffered
from gateway.media.topology import SuperviseMode
from gateway.models import AgentStatus, CallContext, CallState, CallType, EndReason, Location
from tests.unit.test_queues import Events, agent, board_with, caller, start

HERE = Location(lat=48.8566, lon=2.3522, accuracy_m=35.0, timestamp=1795468254.0)
ELSEWHERE = Location(lat=52.52, lon=13.405, accuracy_m=5.0, timestamp=1795468260.0)


def supervisor(board, name: str):
    session = board.open_agent(AgentAccount(username=name, display_name=name.title(), role="supervisor"))
    events = Events()
    board.sessions.attach(session, events)
    return session, events


async def test_a_waiting_call_keeps_the_location_and_is_offered_with_it():
    board = board_with()
    try:
        session, _ = caller(board, "c1")
        call = start(board, session)
        alice, alice_events = agent(board, "alice", available=False)
        updated: list[str] = []
        board.on("call.updated", lambda c: updated.append(c.id))
        assert board.caller_location(session, None, HERE) is call
        assert call.location == HERE and call.state is CallState.QUEUED
        assert updated == [call.id]  # the record is written again (records and webhooks read call.location)
        assert not alice_events.of(CallLocated)  # nobody sees the card of a waiting call
        assert [e.kind for e in call.events][-1] == "location"
        board.set_agent_status(alice, AgentStatus.AVAILABLE)
        offered = alice_events.of(CallOffered)
        assert offered and offered[0].card["location"] == HERE.model_dump()
    finally:
        await board.close()


async def test_the_agent_it_rings_at_and_everyone_in_a_connected_call_are_told():
    board = board_with()
    try:
        alice, alice_events = agent(board, "alice")
        first, _ = caller(board, "c1")
        ringing = start(board, first)
        assert ringing.state is CallState.OFFERED and ringing.offered_to == "alice"
        board.caller_location(first, ringing.id, HERE)
        told = alice_events.of(CallLocated)
        assert [(e.call_id, e.location) for e in told] == [(ringing.id, HERE.model_dump(mode="json"))]
        assert told[0].location["source"] == "device"

        board.accept(alice, ringing.id)
        sam, sam_events = supervisor(board, "sam")
        board.supervise(sam, ringing.id, SuperviseMode.MONITOR)
        # A second call, connected, whose caller shares its location only now.
        bob, bob_events = agent(board, "bob")
        second, _ = caller(board, "c2")
        call = start(board, second)
        board.accept(bob, call.id)
        board.supervise(sam, call.id, SuperviseMode.MONITOR)
        board.caller_location(second, None, ELSEWHERE)
        assert [e.location["lat"] for e in bob_events.of(CallLocated)] == [52.52]
        assert [e.call_id for e in sam_events.of(CallLocated)] == [call.id]
        assert len(alice_events.of(CallLocated)) == 1  # not alice's call
    finally:
        await board.close()


@pytest.mark.parametrize("given_at_start", [True, False])
async def test_a_second_location_is_refused_and_the_first_kept(given_at_start):
    board = board_with()
    try:
        alice, alice_events = agent(board, "alice")
        session, _ = caller(board, "c1")
        call = board.start_call(session, CallType.VOICE, HERE if given_at_start else None, CallContext())
        if not given_at_start:
            board.caller_location(session, None, HERE)
        before = (len(call.events), len(alice_events.of(CallLocated)))
        with pytest.raises(GatewayError) as refused:
            board.caller_location(session, call.id, ELSEWHERE)
        assert refused.value.code == "location_already_set"
        assert "once per call" in refused.value.reason
        assert call.location == HERE
        assert (len(call.events), len(alice_events.of(CallLocated))) == before
    finally:
        await board.close()


async def test_an_ended_call_refuses_a_location_and_stays_as_it_ended():
    board = board_with()
    try:
        session, _ = caller(board, "c1")
        call = start(board, session)
        await board.end_call(call, EndReason.CALLER_HANGUP, "caller")
        events_before = len(call.events)
        with pytest.raises(GatewayError) as refused:
            board.caller_location(session, call.id, HERE)
        assert refused.value.code == "call_ended"
        assert call.location is None and call.state is CallState.ENDED and len(call.events) == events_before
    finally:
        await board.close()


async def test_another_callers_call_is_unknown():
    board = board_with()
    try:
        owner, _ = caller(board, "c1")
        call = start(board, owner)
        stranger, _ = caller(board, "c2")
        with pytest.raises(GatewayError) as refused:
            board.caller_location(stranger, call.id, HERE)
        assert refused.value.code == "unknown_call"
        assert call.location is None
    finally:
        await board.close()
