"""Recording in the engine, against the fake media plane: who is told what and when, what the plane is asked, and
what the record and the archive get. The real-media proof is tests/integration/test_recording_app.py."""

from __future__ import annotations

import pytest

from gateway.auth import AgentAccount
from gateway.config import QueueConfig
from gateway.errors import Forbidden, InvalidState, NotFound
from gateway.events import CallEnded, RecordingChanged
from gateway.models import AgentStatus, CallContext, CallerIdentity, CallType
from gateway.store.records import call_columns
from gateway.switchboard import Switchboard
from tests.support.fakeplane import FAKE_RECORDING, FakePlane
from tests.support.server import test_settings as gateway_settings
from tests.support.waiting import until
from tests.unit.test_engine_media import Party


def board_with(tmp_path, recording: str, consent: str = "notify") -> tuple[Switchboard, FakePlane]:
    plane = FakePlane()
    settings = gateway_settings(data_dir=tmp_path, queues=[QueueConfig(name="default", recording=recording,
                                                                       recording_consent=consent)])
    return Switchboard(settings, plane=plane), plane


def states(party: Party) -> list[str]:
    return [e.state for e in party.of(RecordingChanged)]


async def place(board: Switchboard, answer: bool = True):
    caller = Party(board, board.open_caller(CallerIdentity(subject="cust-1", expires_at=0)))
    call = board.start_call(caller.session, CallType.VOICE, None, CallContext())
    await board.caller_offer(caller.session, call.id, "offer")
    agent = Party(board, board.open_agent(AgentAccount(username="alice", display_name="Alice")))
    if answer:
        board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
        board.accept(agent.session, call.id)
    return caller, agent, call


async def test_always_notify_tells_the_caller_before_recording_and_archives_on_end(tmp_path):
    board, plane = board_with(tmp_path, "always")
    stopped = []
    board.on("recording.stopped", lambda call, info: stopped.append(info))
    try:
        caller, agent, call = await place(board, answer=False)
        assert states(caller) == ["pending"]  # told while waiting, before anything is recorded
        assert not [a for a in plane.asked if a[0] == "start_recording"]
        board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
        board.accept(agent.session, call.id)
        await until(lambda: call.id in plane.recordings)
        assert states(caller) == ["pending", "recording"] and states(agent) == ["recording"]
        assert plane.recordings[call.id]["path"].startswith(str(tmp_path / "recordings"))
        assert call.card()["recording"] == {"state": "recording", "policy": "always", "consent": "notify"}
        await board.agent_hangup(agent.session, call.id)
        assert states(caller)[-1] == "stopped"
        # told "stopped" before the call ended, and the plane stopped the recorder before closing the call
        kinds = [type(e).__name__ for e in caller.events if isinstance(e, (RecordingChanged, CallEnded))]
        assert kinds[-2:] == ["RecordingChanged", "CallEnded"]
        names = [a[0] for a in plane.asked]
        assert names.index("stop_recording") < names.index("close_call")
        assert len(stopped) == 1 and stopped[0].path.endswith(".webm")
        columns = call_columns(call)
        assert columns["recording"] == "stopped" and columns["recording_paused"] == []
        assert [e.kind for e in call.events if e.kind.startswith("recording")] == [
            "recording_pending", "recording_started", "recording_stopped"]
    finally:
        await board.close()


async def test_ask_and_decline_records_nothing(tmp_path):
    board, plane = board_with(tmp_path, "always", "ask")
    stopped = []
    board.on("recording.stopped", lambda call, info: stopped.append(info))
    try:
        caller, agent, call = await place(board, answer=False)
        assert states(caller) == ["asking"]
        board.recording_consent(caller.session, call.id, False)
        assert states(caller) == ["asking", "declined"]
        board.set_agent_status(agent.session, AgentStatus.AVAILABLE)
        board.accept(agent.session, call.id)
        assert states(agent) == []  # nothing changed at the answer: the card says declined
        assert call.card()["recording"]["state"] == "declined"
        with pytest.raises(InvalidState) as exc:
            board.recording(agent.session, call.id, "start")
        assert exc.value.code == "recording_declined"
        await board.agent_hangup(agent.session, call.id)
        assert not [a for a in plane.asked if "recording" in a[0] and a[0] != "stop_recording"]
        assert stopped == [] and not list((tmp_path / "recordings").rglob("*.webm"))
        assert call_columns(call)["recording"] == "declined"
    finally:
        await board.close()


async def test_on_demand_agent_start_pause_resume_and_api_control(tmp_path):
    board, plane = board_with(tmp_path, "on_demand")
    try:
        caller, agent, call = await place(board)
        assert states(caller) == [] and call.card()["recording"]["state"] == "off"
        board.recording(agent.session, call.id, "start")
        await until(lambda: call.id in plane.recordings)
        assert states(caller) == ["recording"]
        assert board.recording_by_api(call.id, "pause")["state"] == "paused"
        with pytest.raises(InvalidState) as exc:
            board.recording_by_api(call.id, "pause")
        assert exc.value.code == "recording_paused"
        await until(lambda: plane.recordings[call.id]["paused"] is not None)
        board.recording(agent.session, call.id, "resume")
        await until(lambda: plane.recordings[call.id]["paused"] is None)
        assert states(agent) == ["recording", "paused", "recording"]
        assert [e.by for e in agent.of(RecordingChanged)] == ["agent", "api", "agent"]
        spans = call.recording.paused_spans()
        assert len(spans) == 1 and spans[0][0] <= spans[0][1]
        assert call_columns(call)["recording_paused"] == spans
    finally:
        await board.close()


async def test_bad_commands_are_refused_with_codes(tmp_path):
    board, plane = board_with(tmp_path, "off")
    try:
        caller, agent, call = await place(board)
        with pytest.raises(Forbidden) as exc:
            board.recording(agent.session, call.id, "start")
        assert exc.value.code == "recording_off"
        with pytest.raises(InvalidState) as exc:
            board.recording_by_api(call.id, "pause")
        assert exc.value.code == "not_recording"
        with pytest.raises(NotFound) as exc:
            board.recording_by_api("nosuchcall", "pause")
        assert exc.value.code == "unknown_call"
        with pytest.raises(InvalidState) as exc:
            board.recording_consent(caller.session, call.id, True)
        assert exc.value.code == "consent_not_asked"
        bob = Party(board, board.open_agent(AgentAccount(username="bob", display_name="Bob")))
        with pytest.raises(Forbidden) as exc:
            board.recording(bob.session, call.id, "pause")
        assert exc.value.code == "not_your_call"
        assert states(caller) == [] and call.recording.state.value == "off"  # nothing changed
    finally:
        await board.close()


async def test_a_recorder_that_cannot_start_says_failed(tmp_path):
    board, plane = board_with(tmp_path, "always")
    plane.fail_recording = True
    try:
        caller, agent, call = await place(board)
        await until(lambda: states(agent)[-1:] == ["failed"])
        assert "recording_failed" in [e.kind for e in call.events]
        plane.fail_recording = False
        board.recording(agent.session, call.id, "start")  # the agent may try again
        await until(lambda: call.id in plane.recordings)
        assert states(agent)[-1] == "recording"
    finally:
        await board.close()


async def test_the_fake_recording_file_is_what_the_archive_hashes(tmp_path):
    board, plane = board_with(tmp_path, "always")
    infos = []
    board.on("recording.stopped", lambda call, info: infos.append(info))
    try:
        caller, agent, call = await place(board)
        await until(lambda: call.id in plane.recordings)
        await board.caller_hangup(caller.session, call.id)
        assert len(infos) == 1
        with open(infos[0].path, "rb") as handle:
            assert handle.read() == FAKE_RECORDING
    finally:
        await board.close()


async def test_a_question_survives_a_dropped_socket(tmp_path):
    """The caller's socket drops while it is asked: the resumed socket is sent the question again (replay) and its
    answer counts; the call is not recorded before it."""
    board, plane = board_with(tmp_path, "always", "ask")
    try:
        caller, agent, call = await place(board)
        sink = caller.session.sink
        board.detach(caller.session, sink)  # the socket went away without bye
        session = board.resume_session(caller.session.resume_token, "caller", lambda p: True, None)
        again: list = []
        replay = board.attach(session, lambda item: again.append(item.event), last_seq=0)
        asked = [n.event for n in replay.events if isinstance(n.event, RecordingChanged)]
        assert [e.state for e in asked] == ["asking"]
        assert not [a for a in plane.asked if a[0] == "start_recording"]
        board.recording_consent(session, call.id, True)
        await until(lambda: call.id in plane.recordings)
        assert [e.state for e in again if isinstance(e, RecordingChanged)] == ["recording"]
    finally:
        await board.close()
