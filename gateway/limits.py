"""Counting what one party does: sliding-window rates and token buckets, keyed, on the engine's clock.

Every limiter forgets keys that have been quiet for a window, so a flood of distinct keys cannot grow them forever.
`check` says whether one more is allowed (and when it would be) without counting it; `hit` counts it. The engine
validates first and counts only what it applies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from .clock import Clock


class SlidingWindow:
    """At most `limit` events per key in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Clock) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[Hashable, deque[float]] = {}
        self._next_sweep = 0.0

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window_s
        for key in [k for k, events in self._events.items() if not events or events[-1] <= now - self.window_s]:
            del self._events[key]

    def check(self, key: Hashable) -> float | None:
        """None when one more is allowed now; else the seconds until it would be."""
        now = self._clock.time()
        events = self._recent(key, now)
        if len(events) < self.limit:
            return None
        return max(0.0, events[len(events) - self.limit] + self.window_s - now)

    def hit(self, key: Hashable) -> None:
        now = self._clock.time()
        self._sweep(now)
        events = self._events.setdefault(key, deque())
        events.append(now)
        while len(events) > self.limit:
            events.popleft()

    def __len__(self) -> int:
        return len(self._events)


class TokenBucket:
    """A burst of `burst`, refilled at `per_minute` per minute, per key (a key whose bucket is full again is
    forgotten: it is the same as one never seen)."""

    def __init__(self, burst: int, per_minute: float, clock: Clock) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)
        self._refill_s = burst / self.rate if self.rate > 0 else float("inf")  # empty to full
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._refill_s
        for key in [k for k in self._buckets if self._tokens(k, now) >= self.burst]:
            del self._buckets[key]

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def check(self, key: Hashable) -> float | None:
        now = self._clock.time()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return None
        return (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")

    def hit(self, key: Hashable) -> None:
        now = self._clock.time()
        self._sweep(now)
        self._buckets[key] = (self._tokens(key, now) - 1.0, now)

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
