"""A fresh keyframe waiting for the accept.

An agent's console sets up its media while the call rings (docs/protocol.md, "Media while ringing"), so that the
accept only opens the gate. Its first picture is then the relay's cache of the caller's video since the latest
keyframe (forward.Producer.replay), sent the moment the gate opens, if that keyframe is recent: browsers send a
keyframe only when asked. While a leg waits behind the gate, the warmer asks the caller for a keyframe whenever the
cached one gets old, so that the replay is short (the agent starts at most `max_age_s` behind) and never has to
wait for a keyframe request's round trip. The caller's video reaches nobody meanwhile: the extra keyframes cost its
uplink only, and only while a call rings at a console that pre-connected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..tasks import Periodic

log = logging.getLogger(__name__)

MAX_AGE_S = 0.5  # well inside forward.GOP_CACHE_SECONDS: a keyframe asked for arrives after a round trip
CHECK_S = 0.1


class KeyframeWarmer:
    """Runs while `active`; `producer()` is the caller's video Producer, or None (no caller video yet)."""

    def __init__(self, producer: Callable[[], Any], max_age_s: float = MAX_AGE_S, check_s: float = CHECK_S) -> None:
        self._producer = producer
        self.max_age_s = max_age_s
        self._loop = Periodic(self._check, check_s, log=log, failed="keyframe warmer: a check failed", at_once=True,
                              name="callin-keyframe-warmer")
        self._asked_at = -1e9
        self.requests = 0

    @property
    def check_s(self) -> float:
        return self._loop.interval_s

    @property
    def active(self) -> bool:
        return self._loop.running

    def set_active(self, active: bool) -> None:
        if active:
            self._loop.start()
        else:
            self.stop()

    def stop(self) -> None:
        self._loop.cancel()

    async def close(self) -> None:
        await self._loop.stop()

    def _check(self) -> None:
        producer = self._producer()
        now = time.monotonic()
        # Old, and not asked for already (the keyframe asked for is on its way: a round trip and an encode).
        if (producer is not None and producer.codec and now - producer.gop_started >= self.max_age_s
                and now - self._asked_at >= self.max_age_s):
            self._asked_at = now
            self.requests += 1
            producer.request_keyframe()
