"""Recording in the engine: runs each call's recording rules (gateway/recording.py) and asks the media plane's
recorder to start, pause, resume and stop. Everyone in the call is told every change (recording.state): the caller
before anything is recorded, and asked first where the queue's consent is "ask".

The rules change state at once (validate, then apply); the plane's step runs after, in order per call (a pause
asked while the recorder is still starting waits for it). The call's record gets the state and the paused spans
(call.updated), and its event log every change. At the call's end the recorder is stopped before the call's media
is closed, and `recording.stopped` (call, RecordingInfo | None) is emitted for the archive (gateway/store/recordings.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ..calls import Call
from ..errors import Forbidden, GatewayError, InvalidState, NotFound
from ..events import RecordingChanged
from ..models import CallState, now
from ..recording import CallRecording, RecState, Step
from ..sessions import Session
from .core import Core
from .views import Views

log = structlog.get_logger("callin.recording")

# (call id, when) -> the local path the plane writes the call's file to (gateway/store/recordings.py)
PreparePath = Callable[[str, float], Awaitable[str]]
STEP_KINDS = {Step.START: "recording_started", Step.PAUSE: "recording_paused", Step.RESUME: "recording_resumed",
              Step.STOP: "recording_stopped"}


class Recordings:
    def __init__(self, core: Core, views: Views, prepare: PreparePath) -> None:
        self.core = core
        self.views = views
        self.prepare = prepare
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the call's life (the façade's own events, and the end of a call) -------------------------------------
    def rules_of(self, call: Call) -> CallRecording:
        """The call's recording rules, made from its queue's policy the first time they are needed."""
        if call.recording is None:
            config = self.views.queue_of(call).config
            call.recording = CallRecording.of(config.recording, config.recording_consent,
                                              config.recording_mixed_audio)
        return call.recording

    def queued(self, call: Call) -> None:
        rec = self.rules_of(call)
        rec.queued()
        if rec.state is not RecState.OFF:
            self._changed(call, None)

    def answered(self, call: Call) -> None:
        fresh = call.recording is None  # restored from the records after a restart: its rules start now
        rec = self.rules_of(call)
        if rec.answered:  # a blind transfer answered again: the recording goes on as it was
            return
        if fresh:
            rec.queued()
        step = rec.connected()
        if step is not Step.NONE or fresh and rec.state is not RecState.OFF:
            self._changed(call, step)

    def ending(self, call: Call) -> None:
        """The call ends (before anyone is told): a running recording is stopped, an open question lapses."""
        rec = call.recording
        if rec is None:
            return
        before = rec.state
        step = rec.ended(now())
        if rec.state is not before:
            self._tell(call, STEP_KINDS.get(step))

    async def ended(self, call: Call) -> None:
        """Stop the recorder (before the call's media is closed) and hand the file on."""
        rec = call.recording
        if rec is not None and rec.started:
            async with self._lock(call.id):
                info = None
                try:
                    info = await self.core.plane.stop_recording(call.id)
                except Exception:  # the call's end goes on whatever the recorder does (its media closes next)
                    log.exception("recording.stop_failed", call_id=call.id)
                self.core.emit("recording.stopped", call, info)
        self._locks.pop(call.id, None)

    # -- commands -----------------------------------------------------------------------------------------
    def agent_call(self, session: Session, call_id: str) -> Call:
        """The call an agent may control the recording of: its own connected call (a supervisor in it too)."""
        state, call = self.views.agent_and_call(session, call_id)
        if call.agent != state.username and state.username not in call.supervisors:
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        return call

    def live_call(self, call_id: str) -> Call:
        """A call by id for the REST API: known to this node and not ended."""
        call = self.core.live.call(call_id)
        if call is None:
            raise NotFound(f"no call {call_id} in progress on this node", code="unknown_call")
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        return call

    def command(self, call: Call, action: str, by: str) -> RecState:
        """start / pause / resume, by "agent" or "api"; the plane follows in the background. Returns the new state."""
        rec = self.rules_of(call)
        if action == "start":
            if call.state is not CallState.CONNECTED:
                raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
            step = rec.request(by)
        elif action == "pause":
            step = rec.pause(now(), by)
        elif action == "resume":
            step = rec.resume(now(), by)
        else:
            raise ValueError(f"unknown recording action {action!r}")
        self._changed(call, step)
        return rec.state

    def consent(self, call: Call, accept: bool) -> RecState:
        rec = self.rules_of(call)
        step = rec.consent_given(accept)
        call.log("recording_consent", accept=accept)
        self._changed(call, step)
        return rec.state

    # -- telling and doing ---------------------------------------------------------------------------------
    def _changed(self, call: Call, step: Step | None) -> None:
        """Tell everyone, have the record written, and run the plane's step (in the background, in order)."""
        self._tell(call, STEP_KINDS.get(step) if step is not None else None)
        self.core.emit("call.updated", call)
        if step in (Step.START, Step.PAUSE, Step.RESUME):
            if step is Step.START:
                self.rules_of(call).started_at = now()  # set now: the call's end stops a recorder still starting
            self.core.spawn(self._run(call, step))

    def _tell(self, call: Call, kind: str | None) -> None:
        rec = self.rules_of(call)
        call.log(kind or f"recording_{rec.state.value}", by=rec.by)
        event = RecordingChanged(call_id=call.id, state=rec.state.value, policy=rec.policy.value,
                                 consent=rec.consent.value, by=rec.by)
        for session_id in self._audience(call):
            self.core.to_session(session_id, event)

    def _audience(self, call: Call) -> list[str]:
        """The caller, the call's agent, and supervisors and a consulted colleague who are in it."""
        ids = list(self.views.participant_sessions(call))
        for username in [*call.supervisors, call.consult]:
            agent = self.core.live.agent(username)
            if agent is not None and agent.session_id and agent.session_id not in ids:
                ids.append(agent.session_id)
        return ids

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    async def _run(self, call: Call, step: Step) -> None:
        plane = self.core.plane
        async with self._lock(call.id):
            if call.state is CallState.ENDED:
                return  # the end stopped it (or will)
            try:
                if step is Step.START:
                    path = await self.prepare(call.id, call.created_at)
                    rec = self.rules_of(call)
                    await plane.start_recording(call.id, path, mixed_audio=rec.mixed_audio)
                    log.info("recording.started", call_id=call.id, path=path)
                elif step is Step.PAUSE:
                    await plane.pause_recording(call.id)
                elif step is Step.RESUME:
                    await plane.resume_recording(call.id)
            except Exception as exc:  # a recorder that failed leaves the call as it is: only the recording says so
                reason = exc.reason if isinstance(exc, GatewayError) else repr(exc)
                log.error("recording.step_failed", call_id=call.id, step=step.value, reason=reason)
                if step is Step.START and call.state is not CallState.ENDED:
                    self.rules_of(call).start_failed()
                    call.log("recording_failed", reason=reason[:200])
                    self._changed(call, None)

    def public(self, call: Call) -> dict[str, Any]:
        rec = self.rules_of(call)
        return {"call_id": call.id, **rec.public(), "paused_spans": rec.paused_spans()}
