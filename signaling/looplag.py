"""How late the event loop runs what is due: a task that asks to wake every `interval_s` and measures how late it
woke. On the signaling process the same loop forwards media and answers ICE checks, so its lag is the delay added
to every packet and every STUN response (aioice clients give up a connection after six consent checks unanswered
within about half a second each). Exported as the histogram `callin_event_loop_lag_seconds`; lag above
`warn_s` is logged, at most once per `warn_every_s`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gateway.tasks import stop_task

log = structlog.get_logger("callin.loop")


class LoopLag:
    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.1, warn_s: float = 0.25,
                 warn_every_s: float = 5.0) -> None:
        self.observe = observe
        self.interval_s, self.warn_s, self.warn_every_s = interval_s, warn_s, warn_every_s
        self.worst_s = 0.0  # since start
        self._task: asyncio.Task[None] | None = None
        self._warned_at = float("-inf")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="callin-loop-lag")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, time.monotonic() - asked - self.interval_s)
            self.observe(lag)
            self.worst_s = max(self.worst_s, lag)
            if lag >= self.warn_s and time.monotonic() - self._warned_at >= self.warn_every_s:
                self._warned_at = time.monotonic()
                log.warning("loop.lagging", lag_s=round(lag, 3),
                            hint="the event loop is late: media and ICE answers are delayed by as much")
