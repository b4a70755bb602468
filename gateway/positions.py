"""Telling waiting callers their place in line: only when it changed, and at most once per interval per caller.

The engine reports each caller's (position, estimated wait) whenever it recomputes it (`update`); the notices
decide when the caller hears it: at once if the caller was not told anything within the last `interval_s`
seconds, else when that interval is up, with whatever the value is by then (the first and the last value are
always told; the ones in between may be skipped). A change of queue length alone is no reason to tell anyone.
One timer serves every caller.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass

from .calls import Call

Place = tuple[int, int | None]  # (position, estimated wait in seconds or None)


@dataclass(slots=True)
class _Told:
    value: Place | None = None  # what the caller was last told
    at: float = float("-inf")  # when (loop time)
    held: bool = False  # a newer value is due at at + interval


class PositionNotices:
    def __init__(
        self,
        interval_s: float,
        current: Callable[[str], tuple[Call, int, int, int | None] | None],
        tell: Callable[[Call, int, int, int | None], None],
    ) -> None:
        """`current(call_id)`: (call, position, queue length, estimate) now, or None once the call left the line;
        `tell(call, position, length, estimate)`: deliver it to the caller."""
        self.interval_s = interval_s
        self._current = current
        self._tell = tell
        self._told: dict[str, _Told] = {}
        self._due: list[tuple[float, str]] = []  # heap of (due time, call id) for held callers
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    def update(self, call: Call, position: int, length: int, estimate: int | None) -> bool:
        """The caller's place as just computed. True if it differs from what the caller was last told."""
        told = self._told.get(call.id)
        if told is None:
            told = self._told[call.id] = _Told()
        value = (position, estimate)
        if value == told.value:
            return False
        if told.held:
            return True  # told when due, with the value of that moment
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = told.at + self.interval_s
        if now >= due:
            told.value, told.at = value, now
            self._tell(call, position, length, estimate)
        else:
            told.held = True
            heapq.heappush(self._due, (due, call.id))
            self._arm(loop, due)
        return True

    def told(self, call_id: str) -> Place | None:
        told = self._told.get(call_id)
        return told.value if told is not None else None

    def forget(self, call_id: str) -> None:
        """The call left the line (answered, ended): nothing more to tell it (a stale heap entry is skipped)."""
        self._told.pop(call_id, None)

    def __len__(self) -> int:
        return len(self._told)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._due and self._due[0][0] <= now:
            _, call_id = heapq.heappop(self._due)
            told = self._told.get(call_id)
            if told is None or not told.held:
                continue
            told.held = False
            current = self._current(call_id)
            if current is None:
                self._told.pop(call_id, None)
                continue
            call, position, length, estimate = current
            if (position, estimate) != told.value:
                told.value, told.at = (position, estimate), now
                self._tell(call, position, length, estimate)
        if self._due:
            self._arm(loop, self._due[0][0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        self._told.clear()
