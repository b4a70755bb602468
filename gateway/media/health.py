"""Is a participant's media alive? A watchdog over what its peer connection receives.

A peer connection can die without anyone hanging up: the app was killed, the phone lost its address, a NAT
binding expired. ICE consent checks notice after about 30 s (aioice: 6 failed checks 5 s apart), and a remote
that closes its connection may never say so. The watchdog looks at what arrives instead: RTP, RTCP (a participant
that only receives still sends receiver reports) and ICE checks. Silent for `silence_s`: the participant is
`disconnected`; anything arrives again: `connected`; silent for `grace_s` more: the leg is dead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Liveness(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    silence_s: float = 4.0  # nothing received this long: disconnected
    grace_s: float = 20.0  # disconnected this long: dead

    @property
    def check_interval_s(self) -> float:
        return max(0.05, min(0.5, self.silence_s / 4))


class MediaWatchdog:
    """Pure logic, driven by `check(received, now)` with a monotonically growing count of received datagrams."""

    def __init__(self, config: WatchdogConfig, on_change: Callable[[Liveness], None]) -> None:
        self.config = config
        self._on_change = on_change
        self._count: int | None = None
        self._last_at = 0.0
        self._silent_since: float | None = None
        self.state = Liveness.CONNECTED

    def check(self, received: int, now: float) -> Liveness:
        if self.state is Liveness.DEAD:
            return self.state
        if self._count is None or received != self._count:
            self._count = received
            self._last_at = now
            self._silent_since = None
            self._set(Liveness.CONNECTED)
        elif self._silent_since is None:
            if now - self._last_at >= self.config.silence_s:
                self._silent_since = now
                self._set(Liveness.DISCONNECTED)
        elif now - self._silent_since >= self.config.grace_s:
            self._set(Liveness.DEAD)
        return self.state

    @property
    def silent_for(self) -> float | None:
        return None if self._silent_since is None else self._silent_since - self._last_at

    def _set(self, state: Liveness) -> None:
        if state is not self.state:
            self.state = state
            self._on_change(state)
