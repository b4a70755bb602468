"""One slow viewer must not cost everyone else: a keyframe budget per viewer, and pausing the video of a viewer that
cannot keep up.

Without simulcast the relay has one encoding of the caller's video for everybody. A viewer on a slow or lossy
link falls behind, drops to the next keyframe and asks for one, again and again: every keyframe is big and goes to
every viewer, and the slow viewer's queue only grows (seconds of delay, its audio stuck behind its video).

- `KeyframeBudget`: a viewer may cause `burst` keyframe requests at once, then one per `interval_s`. A request
  beyond the budget is deferred (sent when the budget allows, one pending at most, never lost) and counted as an
  overrun.
- `ViewerGuard`: a viewer whose send backlog (user-space buffer plus the kernel's send queue of its socket) stays
  above `max_backlog_bytes`, or whose requests keep overrunning its budget, has its video paused (its audio goes
  on); it is retried after `resume_after_s`, doubling while it fails again soon after, once its backlog drained.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

OVERRUN_WINDOW_S = 10.0
OVERRUNS_TO_PAUSE = 3  # budget overruns within the window that pause a viewer's video
BACKLOG_CHECKS_TO_PAUSE = 2  # consecutive checks above the limit (a keyframe burst on a fast link is gone by then)
MAX_RESUME_AFTER_S = 60.0
RELAPSE_S = 30.0  # paused again within this long after a resume: wait twice as long next time


class PauseReason(StrEnum):
    BACKLOG = "backlog"  # media queued for the viewer faster than its link takes it
    KEYFRAMES = "keyframes"  # the viewer keeps losing the picture and asking for keyframes


@dataclass(frozen=True, slots=True)
class ViewerConfig:
    keyframe_interval_s: float = 2.0
    keyframe_burst: int = 2
    max_backlog_bytes: int = 64 * 1024
    resume_after_s: float = 5.0


class KeyframeBudget:
    """Token bucket for one viewer's keyframe requests; deferred, not dropped, when empty."""

    def __init__(self, interval_s: float, burst: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()
        self._pending: asyncio.TimerHandle | None = None
        self._send: Callable[[], None] | None = None
        self.sent = 0
        self.deferred = 0
        self._overruns: deque[float] = deque(maxlen=64)
        self.closed = False

    def _refill(self, now: float) -> None:
        if self.interval_s <= 0:
            self._tokens = float(self.burst)
        else:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) / self.interval_s)
        self._at = now

    def ask(self, send: Callable[[], None], counts: bool = True) -> bool:
        """Send a keyframe request through `send` now if the budget allows (True), else once it does.

        `counts=False`: a request while the viewer already waits for a keyframe (a browser repeats its PLI until
        the picture comes back): deferred like any other, but not held against the viewer as an overrun."""
        if self.closed:
            return False
        now = self._clock()
        self._refill(now)
        if self._pending is None and self._tokens >= 1:
            self._tokens -= 1
            self.sent += 1
            send()
            return True
        self._send = send
        if counts:
            self._overruns.append(now)
        if self._pending is None:
            self.deferred += 1
            wait = (1 - self._tokens) * self.interval_s
            self._pending = asyncio.get_running_loop().call_later(max(0.0, wait), self._fire)
        return False

    def _fire(self) -> None:
        self._pending = None
        send, self._send = self._send, None
        if self.closed or send is None:
            return
        self._refill(self._clock())
        self._tokens = max(0.0, self._tokens - 1)
        self.sent += 1
        send()

    def overruns_since(self, since: float) -> int:
        return sum(1 for t in self._overruns if t >= since)

    def forget_overruns(self) -> None:
        self._overruns.clear()

    def close(self) -> None:
        self.closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


def pass_keyframe_request(send: Callable[[], None] | None, budget: KeyframeBudget | None, *, paused: bool,
                          waiting: bool) -> None:
    """A viewer's keyframe request, passed on to the source through `send` (None: no source): not while its video
    is paused; within its `budget` if it has one (`waiting`: it waits for a keyframe already, so the request is no
    overrun)."""
    if send is None or paused:
        return
    if budget is None:
        send()
    else:
        budget.ask(send, counts=not waiting)


def _shared(consumer: Any) -> bool:
    """Whether the stream a consumer forwards also goes to other viewers (unknown: assume it does)."""
    source = getattr(consumer, "source", None)
    return source is None or len(source.consumers) > 1


class ViewerGuard:
    """Pauses and resumes the video sent to one viewer (one leg); driven by `check(backlog, now)`. `consumers` are
    the leg's outgoing streams (RtpForwarder / ForwardTrack: `kind`, `budget`, `pause()`, `resume()`)."""

    def __init__(self, config: ViewerConfig, consumers: Callable[[], Iterable[Any]],
                 on_change: Callable[[bool, str], None]) -> None:
        self.config = config
        self._consumers = consumers
        self._on_change = on_change
        self.paused = False
        self.reason: PauseReason | None = None
        self._over = 0
        self._resume_after = config.resume_after_s
        self._resume_at = 0.0
        self._resumed_at: float | None = None
        self.pauses = 0

    def _video(self) -> list[Any]:
        return [c for c in self._consumers() if getattr(c, "kind", None) == "video"]

    def check(self, backlog: int, now: float) -> None:
        video = self._video()
        if not video:
            return
        limit = self.config.max_backlog_bytes
        self._over = self._over + 1 if backlog > limit else 0
        if not self.paused:
            # Just resumed (on probation): the first check over the limit pauses again.
            probation = self._resumed_at is not None and now - self._resumed_at < RELAPSE_S
            if self._over >= (1 if probation else BACKLOG_CHECKS_TO_PAUSE):
                self._pause(video, PauseReason.BACKLOG, now)
                return
            # Keyframes asked for by a lone viewer cost nobody else (its budget already spaces them out): only a
            # viewer whose requests reach other viewers too is paused for them.
            overruns = sum(c.budget.overruns_since(now - OVERRUN_WINDOW_S) for c in video
                           if c.budget is not None and _shared(c))
            if overruns >= OVERRUNS_TO_PAUSE:
                self._pause(video, PauseReason.KEYFRAMES, now)
            return
        if now >= self._resume_at and backlog <= limit // 4:
            self._resume(video, now)

    def _pause(self, video: list[Any], reason: PauseReason, now: float) -> None:
        if self._resumed_at is not None and now - self._resumed_at < RELAPSE_S:
            self._resume_after = min(MAX_RESUME_AFTER_S, self._resume_after * 2)
        else:
            self._resume_after = self.config.resume_after_s
        self.paused = True
        self.reason = reason
        self.pauses += 1
        self._resume_at = now + self._resume_after
        for consumer in video:
            consumer.pause()
        self._on_change(True, reason.value)

    def _resume(self, video: list[Any], now: float) -> None:
        self.paused = False
        self._over = 0
        self._resumed_at = now
        for consumer in video:
            if consumer.budget is not None:
                consumer.budget.forget_overruns()
            consumer.resume()
        self._on_change(False, (self.reason or PauseReason.BACKLOG).value)
        self.reason = None
