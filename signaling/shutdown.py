"""Graceful stop, in this order: readiness false, new calls refused, live calls ended (their records written by
the recorder's observers), then every socket gets a `shutdown` message and a 1001 close, all at once and within
`shutdown_grace_s`. aiohttp's own shutdown wait only has the stuck leftovers to cut (see cli.HANDLER_CUTOFF_S)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Protocol

import structlog
from aiohttp import web

from .drain import DRAIN
from .keys import LIVE_SOCKETS, READY, SETTINGS, SWITCHBOARD

log = structlog.get_logger("callin.shutdown")


class Closable(Protocol):
    def shutdown(self, reason: str, retry_after_s: float, resume: bool | None = None) -> asyncio.Future[None] | None:
        """Queue the shutdown message and the 1001 close; returns what finishes when the socket is closed."""


class LiveSockets:
    """The open WebSockets of this process (both roles)."""

    def __init__(self) -> None:
        self._open: set[Closable] = set()

    def add(self, connection: Closable) -> None:
        self._open.add(connection)

    def discard(self, connection: Closable) -> None:
        self._open.discard(connection)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Closable]:
        return iter(list(self._open))

    async def close_all(self, reason: str, retry_after_s: float, within_s: float) -> int:
        """Tell every socket and close it (1001); returns how many were still closing after `within_s`."""
        waits = [w for w in (c.shutdown(reason, retry_after_s) for c in list(self._open)) if w is not None]
        if not waits:
            return 0
        _, pending = await asyncio.wait(waits, timeout=within_s)
        return len(pending)


async def graceful_stop(app: web.Application) -> None:
    """aiohttp's on_shutdown: runs once the listening sockets are closed, before the request handlers are cut."""
    started = time.monotonic()
    settings = app[SETTINGS]
    app[READY]["ready"] = False
    if SWITCHBOARD in app:
        board = app[SWITCHBOARD]
        board.closing = True
        drain = app.get(DRAIN)
        if drain is not None:  # SIGINT, a second SIGTERM, or the drain's end: what still waits goes to other nodes
            await drain.stop()
            try:
                await drain.hand_over()
            except Exception:  # the records stay open: the next node reaps them once this one is marked stopped
                log.exception("shutdown.hand_over_failed")
        await board.close()  # call.ended (shutdown) is queued on every participant's socket before the close
    calls_done = time.monotonic()
    sockets = app[LIVE_SOCKETS]
    count = len(sockets)
    left = await sockets.close_all("the gateway is shutting down", settings.shutdown_retry_after_s,
                                   settings.shutdown_grace_s)
    log.info("shutdown.sockets_closed", sockets=count, still_closing=left,
             calls_s=round(calls_done - started, 3), total_s=round(time.monotonic() - started, 3))
