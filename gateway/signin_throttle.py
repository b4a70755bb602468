"""Sign-in throttling: failed passwords slow down the account and the address they came from.

Each key (an account name, a client address) may fail `free_failures` times; from then on every further failure
blocks the key for base * 2**k seconds (k = failures past the free ones), up to `max_s`. While a key is
blocked, sign-in is refused with 429 before any password is hashed, so the slow hash costs an attacker's guess
nothing on our side. A success clears the account's and the address's count; a key with no failure for
`forget_after_s` is forgotten. The table is bounded (oldest keys dropped first).

State is per process: with several nodes an attacker spreading guesses gets at most N times the rate.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    free_failures: int
    base_s: float
    max_s: float

    def block_s(self, count: int) -> float:
        past = count - self.free_failures
        return 0.0 if past < 0 else min(self.max_s, self.base_s * 2 ** min(past, 40))


class _Table:
    def __init__(self, rule: ThrottleRule, forget_after_s: float, max_entries: int) -> None:
        self.rule = rule
        self.forget_after_s = forget_after_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def _get(self, key: str, now: float) -> _Failures | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last > max(self.forget_after_s, entry.blocked_until - entry.last):
            del self._entries[key]
            return None
        return entry

    def wait_s(self, key: str, now: float) -> float:
        entry = self._get(key, now)
        return max(0.0, entry.blocked_until - now) if entry else 0.0

    def failed(self, key: str, now: float) -> int:
        entry = self._get(key, now) or _Failures()
        entry.count += 1
        entry.last = now
        entry.blocked_until = now + self.rule.block_s(entry.count)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry.count

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)


class SignInThrottle:
    def __init__(self, *, account: ThrottleRule, address: ThrottleRule, forget_after_s: float = 3600,
                 max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._accounts = _Table(account, forget_after_s, max_entries)
        self._addresses = _Table(address, forget_after_s, max_entries)
        self._clock = clock

    def retry_after(self, username: str, address: str) -> float:
        """Seconds to wait before this account may try again from this address (0: go ahead)."""
        now = self._clock()
        return max(self._accounts.wait_s(username.lower(), now), self._addresses.wait_s(address, now))

    def failed(self, username: str, address: str) -> tuple[int, int]:
        """Counts a failure; returns the account's and the address's failure counts."""
        now = self._clock()
        return self._accounts.failed(username.lower(), now), self._addresses.failed(address, now)

    def succeeded(self, username: str, address: str) -> None:
        self._accounts.clear(username.lower())
        self._addresses.clear(address)
