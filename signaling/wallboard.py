"""The supervisors' live wallboard: pushed on every call event (debounced), and re-checked every few seconds for
changes that raise no call event (an agent going away)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import structlog

from gateway.tasks import Periodic
from gateway.switchboard import Switchboard

from . import protocol as p
from .outbox import Wire

log = structlog.get_logger("callin.wallboard")

DEBOUNCE_S = 0.15
RECHECK_S = 2.0


class WallboardHub:
    def __init__(self, board: Switchboard) -> None:
        self.board = board
        self._subscribers: set[Callable[[Wire], None]] = set()
        self._last = ""
        self._pending: asyncio.TimerHandle | None = None
        self._started = False
        self._rechecks = Periodic(self._recheck, RECHECK_S, log=log, failed="wallboard.recheck_failed",
                                  name="callin-wallboard")
        for name in ("call.queued", "call.offered", "call.withdrawn", "call.answered", "call.ended", "call.updated"):
            board.on(name, lambda *_: self.poke())

    def start(self) -> None:
        """Rechecks run while someone watches (every RECHECK_S): a server nobody watches does not wake for them."""
        self._started = True
        if self._subscribers:
            self._rechecks.start()

    async def stop(self) -> None:
        self._started = False
        if self._pending is not None:
            self._pending.cancel()
        await self._rechecks.stop()
        self._subscribers.clear()

    def subscribe(self, send: Callable[[Wire], None]) -> dict[str, Any]:
        self._subscribers.add(send)
        if self._started:
            self._rechecks.start()  # nothing if running already
        return self.board.wallboard()

    def unsubscribe(self, send: Callable[[Wire], None]) -> None:
        self._subscribers.discard(send)
        if not self._subscribers:
            self._rechecks.cancel()

    def poke(self) -> None:
        if self._pending is None and self._subscribers:
            self._pending = asyncio.get_running_loop().call_later(DEBOUNCE_S, self._publish)

    def _publish(self) -> None:
        self._pending = None
        data = self.board.wallboard()
        key = json.dumps({k: v for k, v in data.items() if k != "at"}, sort_keys=True, default=str)
        if key == self._last:
            return
        self._last = key
        wire = Wire.of(p.WallboardOut(**data))  # serialised once for every supervisor
        for send in list(self._subscribers):
            send(wire)

    def _recheck(self) -> None:
        if self._subscribers:
            self._publish()
