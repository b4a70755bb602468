"""Supervision: a supervisor (or admin) monitors, whispers to the agent or barges into a connected call, changes
mode, and leaves; when the call ends, the supervisors are told."""

from __future__ import annotations

import structlog

from ..calls import Call
from ..errors import Forbidden, InvalidState, NotFound
from ..events import CallBarge, CallEnded
from ..media.topology import SuperviseMode
from ..models import CallState
from ..sessions import Session
from .core import Core

log = structlog.get_logger("callin.incall")

SUPERVISOR_ROLES = {"supervisor", "admin"}


class Supervision:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _scene(self, call: Call) -> None:
        self.core.plane.set_scene(call.id, supervisors={k: SuperviseMode(v) for k, v in call.supervisors.items()})

    def supervise(self, session: Session, call_id: str, mode: SuperviseMode) -> Call:
        account = session.principal
        if getattr(account, "role", "agent") not in SUPERVISOR_ROLES:
            raise Forbidden("only supervisors can monitor, whisper or barge", code="not_supervisor")
        call = self.core.live.call(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="unknown_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        if account.username in (call.agent, call.consult):
            raise InvalidState("you are in this call", code="already_in_call")
        previous = call.supervisors.get(account.username)
        call.supervisors[account.username] = mode.value
        self._scene(call)
        self._tell_barge(call, account.username, previous, mode.value, getattr(account, "display_name", None))
        session.call_id = call.id
        call.log("supervise", supervisor=account.username, mode=mode.value, previous=previous)
        log.info("call.supervise", call_id=call.id, supervisor=account.username, mode=mode.value)
        self.core.emit("call.updated", call)
        return call

    async def stop(self, session: Session, call_id: str) -> Call:
        call = self.core.live.call(call_id)
        username = session.principal.username
        if call is None or username not in call.supervisors:
            raise InvalidState("you are not supervising this call", code="not_supervising")
        await self.drop(call, username)
        session.call_id = None
        return call

    async def drop(self, call: Call, username: str) -> None:
        """A supervisor leaves the call (stopped, or their media failed)."""
        previous = call.supervisors.pop(username, None)
        self._scene(call)
        self._tell_barge(call, username, previous, None, None)
        await self.core.plane.remove(call.id, username)
        self.core.live.untrack_legs(call.id, username)
        call.log("supervise_stopped", supervisor=username)
        self.core.emit("call.updated", call)

    def _tell_barge(self, call: Call, username: str, previous: str | None, mode: str | None,
                    display_name: str | None) -> None:
        """The caller hears a barging supervisor, so it is told when one starts or stops speaking in the call (by
        display name, as it knows its agent); monitoring and whispering are silent to it and never told."""
        barge = SuperviseMode.BARGE.value
        if (previous == barge) == (mode == barge):
            return
        if mode == barge:
            event = CallBarge(call_id=call.id, active=True, name=display_name or username)
        else:
            account = self.core.live.agent(username)
            event = CallBarge(call_id=call.id, active=False, name=account.display_name if account else None)
        self.core.to_caller(call, event)

    def call_ended(self, call: Call, event: CallEnded) -> None:
        """The call ended: each supervisor is told, and is no longer in it."""
        for username in list(call.supervisors):
            self.core.to_agent(username, event)
        call.supervisors.clear()
