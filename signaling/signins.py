"""Live agent sockets by sign-in session: when a session ends (sign-out, password change, an admin, expiry, or any
of these on another node) its sockets are told `session_revoked` and closed.

Ending a session on this node closes its sockets at once; a sweep every `check_s` asks the store which of the
sessions with sockets here are still live, which catches expiry and sessions ended through another node.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.tasks import Periodic
from gateway.store.signins import SignInStore

log = structlog.get_logger("callin.signins")

Closer = Callable[[str], None]  # called with the reason


class LiveSignIns:
    def __init__(self, store: SignInStore, check_s: float = 15.0) -> None:
        self.store = store
        self.check_s = check_s
        self._sockets: dict[str, set[Closer]] = {}
        self._sweeper = Periodic(self.check, check_s, log=log, failed="signins.check_failed",
                                 name="callin-signins-check")

    def register(self, sid: str, closer: Closer) -> Callable[[], None]:
        self._sockets.setdefault(sid, set()).add(closer)

        def unregister() -> None:
            closers = self._sockets.get(sid)
            if closers is not None:
                closers.discard(closer)
                if not closers:
                    del self._sockets[sid]
        return unregister

    def end(self, sids: list[str], reason: str) -> int:
        """Closes the sockets of these sessions (already revoked in the store); returns how many."""
        closed = 0
        for sid in sids:
            for closer in list(self._sockets.pop(sid, ())):
                closer(reason)
                closed += 1
        if closed:
            log.info("signins.sockets_closed", sessions=len(sids), sockets=closed, reason=reason)
        return closed

    async def check(self) -> int:
        sids = list(self._sockets)
        live = await self.store.still_live(sids)
        return self.end([sid for sid in sids if sid not in live], "session_ended")

    def start(self) -> None:
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
