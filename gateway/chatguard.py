"""Chat limits of one call: each sender (the caller, or a staff username) may send at most
`chat_max_lines_per_call` lines in the call, in bursts of `chat_burst` refilled at `chat_lines_per_minute`."""

from __future__ import annotations

import math

from .clock import Clock
from .config import Settings
from .errors import RateLimited
from .limits import TokenBucket


class ChatGuard:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.max_lines = settings.chat_max_lines_per_call
        self._rate = TokenBucket(settings.chat_burst, settings.chat_lines_per_minute, clock)
        self._sent: dict[str, int] = {}

    def check(self, sender: str) -> None:
        """Raise when `sender` may not send one more line now. Changes nothing."""
        if self._sent.get(sender, 0) >= self.max_lines:
            raise RateLimited(f"at most {self.max_lines} chat lines per call", code="chat_limit_reached",
                              retryable=False)
        retry = self._rate.check(sender)
        if retry is not None:
            raise RateLimited(f"too many chat lines at once; try again in {max(1, math.ceil(retry))} s",
                              code="chat_rate_limited")

    def sent(self, sender: str) -> None:
        self._sent[sender] = self._sent.get(sender, 0) + 1
        self._rate.hit(sender)
