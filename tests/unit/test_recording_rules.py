"""The recording rules (gateway/recording.py): policy x consent, pause spans, and the typed refusals, without an
engine."""

from __future__ import annotations

import pytest

from gateway.errors import Forbidden, InvalidState
from gateway.recording import CallRecording, RecState, Step


def test_always_notify_is_pending_while_waiting_and_records_once_answered():
    rec = CallRecording.of("always", "notify")
    assert rec.queued() is Step.NONE and rec.state is RecState.PENDING  # the caller is told before anything
    assert rec.connected() is Step.START and rec.state is RecState.RECORDING
    assert rec.ended(10.0) is Step.STOP and rec.state is RecState.STOPPED


def test_always_ask_records_only_after_the_caller_accepts():
    rec = CallRecording.of("always", "ask")
    rec.queued()
    assert rec.state is RecState.ASKING
    assert rec.connected() is Step.NONE and rec.state is RecState.ASKING  # answered, still not agreed
    assert rec.consent_given(True) is Step.START and rec.state is RecState.RECORDING


def test_always_ask_accepted_while_waiting_starts_at_the_answer():
    rec = CallRecording.of("always", "ask")
    rec.queued()
    assert rec.consent_given(True) is Step.NONE and rec.state is RecState.PENDING
    assert rec.connected() is Step.START


def test_a_declined_call_is_never_recorded():
    rec = CallRecording.of("always", "ask")
    rec.queued()
    assert rec.consent_given(False) is Step.NONE and rec.state is RecState.DECLINED
    assert rec.connected() is Step.NONE and rec.state is RecState.DECLINED
    with pytest.raises(InvalidState) as exc:
        rec.request("agent")
    assert exc.value.code == "recording_declined"
    with pytest.raises(InvalidState) as exc:
        rec.consent_given(True)  # no second answer
    assert exc.value.code == "consent_not_asked"
    assert rec.ended(5.0) is Step.NONE and rec.state is RecState.DECLINED and not rec.started


def test_on_demand_waits_for_the_agent_and_asks_first_when_consent_is_ask():
    notify = CallRecording.of("on_demand", "notify")
    notify.queued()
    assert notify.state is RecState.OFF
    with pytest.raises(InvalidState) as exc:
        notify.request("agent")
    assert exc.value.code == "not_connected"
    notify.connected()
    assert notify.state is RecState.OFF
    assert notify.request("agent") is Step.START and notify.state is RecState.RECORDING and notify.by == "agent"
    with pytest.raises(InvalidState) as exc:
        notify.request("agent")
    assert exc.value.code == "recording_started"

    ask = CallRecording.of("on_demand", "ask")
    ask.queued()
    ask.connected()
    assert ask.request("agent") is Step.NONE and ask.state is RecState.ASKING
    assert ask.consent_given(True) is Step.START


def test_policy_off_refuses_a_start():
    rec = CallRecording.of("off", "notify")
    rec.queued()
    rec.connected()
    with pytest.raises(Forbidden) as exc:
        rec.request("agent")
    assert exc.value.code == "recording_off" and "off" in exc.value.reason


def test_pause_and_resume_keep_spans_and_refuse_out_of_order():
    rec = CallRecording.of("always", "notify")
    rec.queued()
    rec.connected()
    with pytest.raises(InvalidState) as exc:
        rec.resume(1.0, "api")
    assert exc.value.code == "not_paused"
    assert rec.pause(2.0, "api") is Step.PAUSE and rec.state is RecState.PAUSED
    with pytest.raises(InvalidState) as exc:
        rec.pause(2.5, "api")
    assert exc.value.code == "recording_paused"
    assert rec.resume(4.0, "agent") is Step.RESUME
    rec.pause(6.0, "agent")
    assert rec.ended(7.0) is Step.STOP  # an open span is closed at the end
    assert rec.paused_spans() == [[2.0, 4.0], [6.0, 7.0]]


def test_pause_when_not_recording_is_refused():
    rec = CallRecording.of("always", "notify")
    rec.queued()  # pending: nothing is recorded yet
    with pytest.raises(InvalidState) as exc:
        rec.pause(1.0, "api")
    assert exc.value.code == "not_recording" and "pending" in exc.value.reason


def test_a_failed_start_may_be_started_again_and_unanswered_questions_lapse():
    rec = CallRecording.of("always", "notify")
    rec.queued()
    rec.connected()
    rec.started_at = 1.0
    rec.start_failed()
    assert rec.state is RecState.FAILED and not rec.started
    assert rec.request("agent") is Step.START
    asking = CallRecording.of("always", "ask")
    asking.queued()
    assert asking.ended(3.0) is Step.NONE and asking.state is RecState.OFF
