"""Drain on SIGTERM (issue 10, item 5): a node leaves the cluster without dropping anyone.

At SIGTERM, at once: readiness answers 503 (the load balancer stops sending new sockets), the engine takes no new
call (`call.start` and a new hello are refused with `shutting_down`, retryable: connect again, another node takes
it), idle agents are told `shutdown` (their consoles sign in again elsewhere), and every caller waiting in line or
holding a callback request is *handed over*: its record moves to a node instance marked stopped
(gateway/store/nodes.py `hand_over`), the other nodes are told on the bus (with `CALLIN_REDIS_URL`) and reap it at
once, and the waiting callers get `shutdown` with `resume: true`. They reconnect through the load balancer with
their resume token and continue in place on whichever node took them (a node asked before it has answers
`resume_pending`, and reaps at once). Connected calls may finish until `drain_deadline_s`; agents freed meanwhile
are told `shutdown` too. Then the normal stop (signaling/shutdown.py) ends what is left (`call.ended`, reason
`shutdown`, records complete). A second SIGTERM cuts the drain short; SIGINT stops at once as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from gateway.calls import Call
from gateway.errors import Unavailable
from gateway.models import CallState

from .keys import LIVE_SOCKETS, READY, RECORDER, SETTINGS, SWITCHBOARD

log = structlog.get_logger("callin.drain")

TICK_S = 0.2  # how often a draining node looks for calls that ended or went back to waiting
NODES_CHANNEL = "nodes"  # bus channel: {"op": "handed_over" | "stopped", "instance": ..., "by": ...}


class Draining(Unavailable):
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("this node is stopping; connect again and another node will take your call")


class Drain:
    """One node's drain. `begin()` is the SIGTERM handler; `finished` is set when the node may stop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.draining = False
        self.started_at: float | None = None
        self.handed_over = 0  # calls handed to other nodes
        self.finished = asyncio.Event()
        self._cut = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._released: set[int] = set()  # agent sockets told to go (by id)

    # -- what other modules ask
    def check_accepting(self) -> None:
        """New sessions are refused while draining (a typed, retryable error)."""
        if self.draining:
            raise Draining()

    # -- the signal
    def begin(self) -> None:
        if self.draining:
            log.info("drain.cut_short")
            self._cut.set()
            return
        self.draining = True
        self.started_at = time.monotonic()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        app = self.app
        settings = app[SETTINGS]
        board = app[SWITCHBOARD]
        app[READY]["ready"] = False
        board.closing = True  # no new call, no dispatch: what waits goes to other nodes
        app[RECORDER].hold_reaps()  # and nothing of other nodes comes here any more
        deadline = time.monotonic() + settings.drain_deadline_s
        log.info("drain.started", deadline_s=settings.drain_deadline_s, calls=self._connected_count())
        try:
            await self.hand_over()
            while True:
                self._release_idle_agents()
                if not self._connected_count() or self._cut.is_set() or time.monotonic() >= deadline:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._cut.wait(), TICK_S)
                await self.hand_over()  # a call declined back into the line meanwhile
        except Exception:
            log.exception("drain.failed")
        log.info("drain.finished", handed_over=self.handed_over, calls_left=self._connected_count(),
                 seconds=round(time.monotonic() - (self.started_at or 0), 3))
        self.finished.set()
        asyncio.get_running_loop().call_soon(_graceful_exit)

    # -- waiting callers and callback requests go to other nodes
    def _restorable(self, call: Call) -> bool:
        if call.state is not CallState.QUEUED:
            return False
        if call.callback:
            return call.rejoined_at is None
        return call.caller_resume is not None and self.app[SETTINGS].restore_waiting_within_s > 0

    async def hand_over(self) -> int:
        """Hand every call that waits here to the other nodes (idempotent: what was handed is gone from here)."""
        board = self.app[SWITCHBOARD]
        # Out of this engine first, with no await in between: nothing here records them again.
        calls = board.release_calls(self._restorable)
        if not calls:
            return 0
        try:
            instance = await self.app[RECORDER].hand_over([c.id for c in calls])
        except Exception:  # the records stay open under this node's lease: taken over once it has stopped or expired
            log.exception("drain.hand_over_failed", calls=len(calls))
        else:
            log.info("drain.handed_over", calls=len(calls), instance=instance,
                     waiting=sum(not c.callback for c in calls), callbacks=sum(c.callback for c in calls))
            await tell_nodes(self.app, "handed_over", instance)
        self.handed_over += len(calls)
        retry = min(self.app[SETTINGS].shutdown_retry_after_s, 1.0)
        sockets = {id(c.session): c for c in self.app[LIVE_SOCKETS] if getattr(c, "session", None) is not None}
        for call in calls:
            session = board.caller_session(call)
            if session is None:
                continue
            connection = sockets.get(id(session))
            if connection is not None:  # a callback request's caller has nothing to resume: it is called back
                connection.shutdown("this node is stopping; reconnect with your resume token to keep your place",
                                    retry, resume=not call.callback)
            # Forgotten here as "unknown": a resume that still reaches this node is told to retry (resume_pending).
            board.forget_caller_session(session, why="shutdown" if call.callback else "unknown")
        for call in calls:
            with contextlib.suppress(Exception):
                await board.close_media(call.id)
        return len(calls)

    # -- agents with nothing left here reconnect elsewhere
    def _busy_agents(self) -> set[str]:
        busy: set[str] = set()
        for call in self.app[SWITCHBOARD].live.all_calls():
            if call.state in (CallState.OFFERED, CallState.CONNECTED):
                if call.agent:
                    busy.add(call.agent)
                busy.update(call.supervisors)
        return busy

    def _release_idle_agents(self) -> None:
        busy = self._busy_agents()
        retry = self.app[SETTINGS].shutdown_retry_after_s
        for connection in list(self.app[LIVE_SOCKETS]):
            session = getattr(connection, "session", None)
            if session is None or session.role != "agent" or id(connection) in self._released:
                continue
            if getattr(session.principal, "username", None) in busy:
                continue
            self._released.add(id(connection))
            connection.shutdown("this node is stopping; sign in again and another node takes you", min(retry, 1.0))

    def _connected_count(self) -> int:
        return sum(1 for c in self.app[SWITCHBOARD].live.all_calls()
                   if c.state in (CallState.OFFERED, CallState.CONNECTED))

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._cut.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _graceful_exit() -> None:
    raise web.GracefulExit()


DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)


async def tell_nodes(app: web.Application, op: str, instance: str) -> None:
    """On the bus (with Redis): the other nodes reap now what `instance` left (no-op without Redis)."""
    from .cluster import BUS, INSTANCE

    bus = app.get(BUS)
    if bus is None:
        return
    try:
        await bus.publish(NODES_CHANNEL, {"op": op, "instance": instance, "by": app[INSTANCE]})
    except Exception:  # they find it at their next heartbeat
        log.warning("drain.publish_failed", exc_info=True)


async def drain_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: SIGTERM drains (replacing aiohttp's handler, which stops at once)."""
    drain = app[DRAIN]
    loop = asyncio.get_running_loop()
    installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, drain.begin)
        installed = True
    yield
    await drain.stop()
    if installed:
        # The rest of the stop (records, webhooks, the cleanup contexts before this one) still runs: a SIGTERM now
        # (a supervisor repeating it) must not kill the process with the default action halfway through. Closing
        # the loop removes this handler.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, _stopping_already)


def _stopping_already() -> None:
    log.info("drain.signal_ignored", reason="the node is stopping already")


def check_accepting(app: web.Application) -> None:
    """For the WebSocket hellos: refuse a new session while this node drains."""
    drain: Any = app.get(DRAIN)
    if drain is not None:
        drain.check_accepting()
