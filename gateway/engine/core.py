"""What the engine's collaborators share: settings, clock, live state, sessions, queues, the media plane, timers,
how to tell a participant, how to emit a domain event, and how to run a background step (then settle).

It holds services and state, not rules: each rule lives in the collaborator that owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..calls import Call
from ..clock import Clock
from ..config import Settings
from ..events import Event
from ..media.plane import MediaPlane
from ..models import EndReason
from ..queues import QueueDirectory
from ..store.live import LiveState, SessionStore, TimerRegistry
from .timers import Timers

Emit = Callable[..., bool]
EndCall = Callable[[Call, EndReason, str], Awaitable[None]]


class Core:
    def __init__(self, settings: Settings, clock: Clock, live: LiveState, sessions: SessionStore,
                 queues: QueueDirectory, plane: MediaPlane, emit: Emit, settle: Callable[[], None],
                 timers: Callable[[Callable[[], None]], TimerRegistry] = Timers) -> None:
        self.settings = settings
        self.clock = clock
        self.live = live
        self.sessions = sessions
        self.queues = queues
        self.plane = plane
        self.emit = emit
        self.settle = settle
        self.timers: TimerRegistry = timers(settle)  # a timer firing is a command: the engine settles after it
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._end_call: EndCall | None = None

    # -- telling participants ------------------------------------------------------------------------------
    def to_session(self, session_id: str | None, event: Event) -> None:
        session = self.sessions.get(session_id or "")
        if session is not None:
            session.deliver(event)

    def to_agent(self, username: str | None, event: Event) -> None:
        agent = self.live.agent(username)
        if agent is not None:
            self.to_session(agent.session_id, event)

    def to_caller(self, call: Call, event: Event) -> None:
        self.to_session(call.caller_session, event)

    # -- ending a call (owned by gateway/engine/calls.py; bound once the collaborators exist) ----------------
    def bind_end_call(self, end_call: EndCall) -> None:
        self._end_call = end_call

    def end_call_later(self, call: Call, reason: EndReason, by: str) -> None:
        """End the call in a background step (from a timer, a leg event or a session going away)."""
        assert self._end_call is not None, "the engine binds end_call when it is built"
        self.spawn(self._end_call(call, reason, by))

    # -- background steps ----------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task, then settle (it is a command of its own); close() waits for every one."""
        async def step() -> None:
            try:
                await coro
            finally:
                self.settle()

        task = asyncio.ensure_future(step())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
