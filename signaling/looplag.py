"""How late the event loop runs what is due: a timer due every `interval_s`, and how late it ran. On the signaling
process the same loop forwards media and answers ICE checks, so its lag is the delay added to every packet and every
STUN response (aioice clients give up a connection after six consent checks unanswered within about half a second
each). Exported as the histogram `callin_event_loop_lag_seconds`; lag above `warn_s` is logged, at most once per
`warn_every_s`.

The probe is a plain timer callback (`loop.call_at`), not a task that sleeps: the same wake-up every `interval_s` and
the same measurement (when it ran against when it was due), without a future, a task step and a second loop
iteration per wake-up. It runs on every server, with or without calls, so it is part of the fixed cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger("callin.loop")


class LoopLag:
    def __init__(self, observe: Callable[[float], None], interval_s: float = 0.1, warn_s: float = 0.25,
                 warn_every_s: float = 5.0) -> None:
        self.observe = observe
        self.interval_s, self.warn_s, self.warn_every_s = interval_s, warn_s, warn_every_s
        self.worst_s = 0.0  # since start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._warned_at = float("-inf")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._arm(self._loop.time())

    async def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_at(now + self.interval_s, self._probe)

    def _probe(self) -> None:
        timer, loop = self._timer, self._loop
        if timer is None or loop is None:  # stopped
            return
        now = loop.time()
        self._arm(now)  # the next probe first: an observer that raises does not end the monitor
        lag = max(0.0, now - timer.when())
        self.observe(lag)
        self.worst_s = max(self.worst_s, lag)
        if lag >= self.warn_s and now - self._warned_at >= self.warn_every_s:
            self._warned_at = now
            log.warning("loop.lagging", lag_s=round(lag, 3),
                        hint="the event loop is late: media and ICE answers are delayed by as much")
