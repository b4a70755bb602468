"""A call's recording as the rules see it: the queue's policy, the caller's consent, and the state that the console
and the widget show. Pure logic (no media, no I/O): each step says what the engine must ask of the media plane's
recorder next (start, pause, resume, stop, or nothing); gateway/engine/recording.py runs the steps.

Policy (per queue, gateway.config.QueueConfig): off, on_demand (the agent starts it) or always (every answered
call). Consent: notify (the caller is told before anything is recorded) or ask (the caller is asked and may decline;
then nothing is recorded in this call and no file exists).

    always + notify:     queued -> pending (told) -> answered -> recording
    always + ask:        queued -> asking -> accepted -> pending -> answered -> recording   (or declined)
    on_demand + notify:  off -> agent starts -> recording (the caller told at once)
    on_demand + ask:     off -> agent starts -> asking -> accepted -> recording             (or declined)
    recording <-> paused (agent, REST); the call ends: recording/paused -> stopped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import Forbidden, InvalidState


class Policy(StrEnum):
    OFF = "off"
    ON_DEMAND = "on_demand"
    ALWAYS = "always"


class Consent(StrEnum):
    NOTIFY = "notify"
    ASK = "ask"


class RecState(StrEnum):
    OFF = "off"  # not recorded: the policy is off, or on demand and nobody started it
    ASKING = "asking"  # the caller is asked for consent; nothing is recorded yet
    PENDING = "pending"  # recorded once the call is answered (the caller was told, or agreed)
    RECORDING = "recording"
    PAUSED = "paused"  # the file goes on, without media, until resumed
    DECLINED = "declined"  # the caller declined: nothing is recorded in this call
    STOPPED = "stopped"  # the call ended after recording; the file is finalised
    FAILED = "failed"  # the recorder could not start (the agent may start it again)


class Step(StrEnum):
    """What the engine asks of the media plane after a change."""

    NONE = "none"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


ACTIVE = frozenset({RecState.RECORDING, RecState.PAUSED})


@dataclass
class CallRecording:
    policy: Policy
    consent: Consent
    mixed_audio: bool = False
    state: RecState = RecState.OFF
    answered: bool = False
    started_at: float | None = None  # when the recorder was asked to start (wall clock)
    # paused spans in wall-clock seconds, [start, end]; end is None while paused
    spans: list[list[float | None]] = field(default_factory=list)
    by: str | None = None  # who made the latest change: caller, agent, api, system

    @classmethod
    def of(cls, policy: str, consent: str, mixed_audio: bool = False) -> "CallRecording":
        return cls(Policy(policy), Consent(consent), mixed_audio)

    # -- the call's life --------------------------------------------------------------------------------------
    def queued(self) -> Step:
        """The call joined its queue: with `always`, the caller is told (notify) or asked (ask) now, while waiting."""
        if self.policy is Policy.ALWAYS:
            self.state = RecState.ASKING if self.consent is Consent.ASK else RecState.PENDING
            self.by = "system"
        return Step.NONE

    def connected(self) -> Step:
        """The call was answered: a pending recording starts."""
        self.answered = True
        if self.state is RecState.PENDING:
            self.state, self.by = RecState.RECORDING, "system"
            return Step.START
        return Step.NONE

    def ended(self, at: float) -> Step:
        """The call ended: a running recording stops (an open pause span closes); an unanswered question lapses."""
        if self.state in ACTIVE:
            self._close_span(at)
            self.state, self.by = RecState.STOPPED, "system"
            return Step.STOP
        if self.state in (RecState.ASKING, RecState.PENDING):
            self.state, self.by = RecState.OFF, "system"
        return Step.NONE

    # -- commands ---------------------------------------------------------------------------------------------
    def request(self, by: str) -> Step:
        """The agent starts recording (on demand; or again after the recorder failed)."""
        if self.policy is Policy.OFF:
            raise Forbidden("recording is off in this call's queue", code="recording_off")
        if self.state is RecState.DECLINED:
            raise InvalidState("the caller declined recording in this call", code="recording_declined")
        if self.state not in (RecState.OFF, RecState.FAILED):
            raise InvalidState(f"the recording is {self.state.value} already", code="recording_started")
        if not self.answered:
            raise InvalidState("recording starts once the call is connected", code="not_connected")
        self.by = by
        if self.consent is Consent.ASK and self.state is RecState.OFF:
            self.state = RecState.ASKING
            return Step.NONE
        self.state = RecState.RECORDING
        return Step.START

    def consent_given(self, accept: bool) -> Step:
        """The caller's answer to `asking`."""
        if self.state is not RecState.ASKING:
            raise InvalidState("the caller is not being asked about recording", code="consent_not_asked")
        self.by = "caller"
        if not accept:
            self.state = RecState.DECLINED
            return Step.NONE
        if self.answered:
            self.state = RecState.RECORDING
            return Step.START
        self.state = RecState.PENDING
        return Step.NONE

    def pause(self, at: float, by: str) -> Step:
        if self.state is RecState.PAUSED:
            raise InvalidState("the recording is paused already", code="recording_paused")
        if self.state is not RecState.RECORDING:
            raise InvalidState(f"the call is not being recorded (recording {self.state.value})", code="not_recording")
        self.state, self.by = RecState.PAUSED, by
        self.spans.append([at, None])
        return Step.PAUSE

    def resume(self, at: float, by: str) -> Step:
        if self.state is not RecState.PAUSED:
            raise InvalidState(f"the recording is not paused (recording {self.state.value})", code="not_paused")
        self._close_span(at)
        self.state, self.by = RecState.RECORDING, by
        return Step.RESUME

    def start_failed(self) -> None:
        """The media plane could not start the recorder: nothing is recorded (the agent may try again)."""
        self.state, self.by = RecState.FAILED, "system"
        self.started_at = None
        self.spans.clear()

    # -- reading ----------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.started_at is not None

    def paused_spans(self) -> list[list[float | None]]:
        return [list(span) for span in self.spans]

    def public(self) -> dict[str, Any]:
        """What the console's card shows (protocol RecordingOut)."""
        return {"state": self.state.value, "policy": self.policy.value, "consent": self.consent.value}

    def _close_span(self, at: float) -> None:
        if self.spans and self.spans[-1][1] is None:
            self.spans[-1][1] = at
