"""Media while a call rings, as logic: the engine against the fake plane (what it allows, what it tears down, races),
the scene's gate, the keyframe warmer and the cached keyframe sent on attach. Real peers: tests/integration/
test_ringing_media.py; real browsers: tests/e2e/test_browser_call.py."""

from __future__ import annotations

import asyncio

import pytest

from gateway.auth import AgentAccount
from gateway.errors import GatewayError
from gateway.events import MediaState
from gateway.media.forward import Producer
from gateway.media.topology import Scene, SuperviseMode, edges, gated
from gateway.media.warmup import KeyframeWarmer
from gateway.models import AgentStatus, CallContext, CallerIdentity, CallState, CallType
from gateway.switchboard import Switchboard
from tests.support.fakeplane import FAKE_ANSWER, FakePlane
from tests.support.server import test_settings as gateway_settings
from tests.unit.test_engine_media import Party, until
from tests.unit.test_packets import DELTA, KEY, forwarder, pkt


async def ringing(plane: FakePlane):
    board = Switchboard(gateway_settings(), plane=plane)
    caller = Party(board, board.open_caller(CallerIdentity(subject="cust-1", expires_at=0)))
    call = board.start_call(caller.session, CallType.VIDEO, None, CallContext())
    await board.caller_offer(caller.session, call.id, "offer")
    agent = Party(board, board.open_agent(AgentAccount(username="alice", display_name="Alice")))
    board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
    assert call.state is CallState.OFFERED and call.offered_to == "alice"
    return board, caller, agent, call


async def test_an_offer_while_it_rings_sets_up_a_leg_outside_the_scene_that_the_accept_lets_in():
    plane = FakePlane()
    board, caller, agent, call = await ringing(plane)
    try:
        assert await board.agent_offer(agent.session, call.id, "offer") == FAKE_ANSWER
        assert "agent" not in plane.scenes[call.id]  # the gate: the scene does not name alice yet
        assert board.agent_media_call(agent.session, call.id) is call  # its ICE candidates are taken
        plane.emit(call.id, "alice", "state", state="connected")
        # Its events go to the ringing agent alone, as its own ("self"); the caller hears nothing of it.
        assert [e.leg for e in agent.of(MediaState)] == ["self"]
        assert not [e for e in caller.of(MediaState) if e.leg != "caller"]
        board.accept(agent.session, call.id)
        assert plane.scenes[call.id]["agent"] == "alice"
        assert board.live.leg(board.live.leg_of(call.id, "alice"))[2] == "agent"
        assert [a for a in plane.asked if a[0] == "answer"] == [("answer", call.id, "caller"),
                                                                 ("answer", call.id, "alice")]
        plane.emit(call.id, "alice", "state", state="disconnected")
        assert caller.of(MediaState)[-1].leg == "agent"  # the call's agent leg now: both sides hear of it
    finally:
        await board.close()


@pytest.mark.parametrize("how", ["decline", "ring_timeout", "agent_gone"])
async def test_a_ring_that_ends_unanswered_removes_its_leg(how):
    plane = FakePlane()
    board, caller, agent, call = await ringing(plane)
    try:
        await board.agent_offer(agent.session, call.id, "offer")
        if how == "decline":
            board.decline(agent.session, call.id)
        elif how == "ring_timeout":
            board.dispatch._ring_timeout(call.id, "alice")
        else:
            board.dispatch.agent_detached(agent.session)
        assert call.state is CallState.QUEUED and call.offered_to is None
        assert board.live.leg_of(call.id, "alice") is None
        await until(lambda: ("remove", call.id, "alice") in plane.asked)
        assert "alice" not in plane.calls[call.id] and "caller" in plane.calls[call.id]
        if how == "agent_gone":
            return  # (its session is still attached here, so the call rings there again at once)
        with pytest.raises(GatewayError) as refused:
            await board.agent_offer(agent.session, call.id, "offer")
        assert refused.value.code == "not_accepted"
        with pytest.raises(GatewayError) as refused:
            board.agent_media_call(agent.session, call.id)
        assert refused.value.code == "not_your_call"
    finally:
        await board.close()


async def test_a_ring_withdrawn_while_its_offer_is_answered_leaves_no_leg():
    plane = FakePlane()
    board, caller, agent, call = await ringing(plane)
    gate = asyncio.Event()
    answer = plane.answer

    async def slow_answer(call_id, participant, sdp):
        if participant == "alice":
            await gate.wait()
        return await answer(call_id, participant, sdp)

    plane.answer = slow_answer  # type: ignore[method-assign]
    try:
        offering = asyncio.ensure_future(board.agent_offer(agent.session, call.id, "offer"))
        await asyncio.sleep(0)
        board.decline(agent.session, call.id)
        gate.set()
        with pytest.raises(GatewayError) as refused:
            await offering
        assert refused.value.code == "not_offered"
        assert ("remove", call.id, "alice") in plane.asked and "alice" not in plane.calls[call.id]
        assert board.live.leg_of(call.id, "alice") is None
    finally:
        await board.close()


async def test_a_failed_leg_while_it_rings_is_dropped_and_the_call_goes_on():
    plane = FakePlane()
    board, caller, agent, call = await ringing(plane)
    try:
        await board.agent_offer(agent.session, call.id, "offer")
        plane.emit(call.id, "alice", "failed", reason="ice_failed")
        await until(lambda: ("remove", call.id, "alice") in plane.asked)
        assert call.state is CallState.OFFERED and call.offered_to == "alice"
        assert board.live.leg_of(call.id, "alice") is None
        assert f"call:{call.id}:recover" not in board.core.timers  # not a media recovery of the call
        board.accept(agent.session, call.id)  # the console offers again after the accept
        assert await board.agent_offer(agent.session, call.id, "offer") == FAKE_ANSWER
        assert board.live.leg(board.live.leg_of(call.id, "alice"))[2] == "agent"
    finally:
        await board.close()


def test_the_gate_names_legs_the_scene_does_not_and_they_get_no_edge():
    scene = Scene()
    assert gated(scene, {"caller", "alice"}) == {"alice"}
    assert not [e for e in edges(scene) if "alice" in (e.source, e.sink)]
    scene.supervisors["sue"] = SuperviseMode.MONITOR
    assert not [e for e in edges(scene) if "alice" in (e.source, e.sink)]  # a supervisor does not open it
    assert gated(scene, {"caller", "alice", "sue"}) == {"alice"}
    scene.agent = "alice"
    assert gated(scene, {"caller", "alice", "sue"}) == set()
    scene.held = True
    assert gated(scene, {"caller", "alice"}) == set()  # on hold is not waiting for an accept


class FakeVideo:
    codec = "VP8"
    gop_started = 0.0

    def __init__(self) -> None:
        self.requests = 0

    def request_keyframe(self) -> None:
        self.requests += 1


async def test_the_warmer_asks_for_keyframes_while_active_and_stops():
    video = FakeVideo()
    warmer = KeyframeWarmer(lambda: video, max_age_s=0.05, check_s=0.01)
    warmer.set_active(True)
    await until(lambda: video.requests >= 2)
    warmer.set_active(False)
    assert not warmer.active
    asked = video.requests
    warmer.set_active(True)
    await warmer.close()
    assert not warmer.active and video.requests <= asked + 1


async def test_attaching_to_a_ready_leg_sends_the_cached_keyframe_at_once():
    requests: list[int] = []
    producer = Producer(kind="video", codec="VP8", send_keyframe_request=lambda: requests.append(1))
    producer.on_packet(pkt(1, 0, KEY))
    producer.on_packet(pkt(2, 3000, DELTA))
    fwd, port, _ = forwarder()
    producer.attach(fwd)  # the gate opens on a leg that is already up
    assert [bytes(p.payload) for p in port.sent] == [KEY, DELTA]
    assert requests == []  # no keyframe request: the cache answered
    late, late_port, _ = forwarder()
    late_port.ready = False
    producer.attach(late)  # a leg not up yet: the keyframe request goes now, the cache when it is up
    assert late_port.sent == [] and requests == [1]
    producer.close()
