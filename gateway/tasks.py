"""Background tasks: stopping one (cancel it and wait until it has finished: every task started is stopped), and
`Periodic`, the loop that runs a piece of work every few seconds (sweepers, re-checks, the keyframe warmer)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: nothing) and wait for it; its cancellation is not an error."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Periodic:
    """Runs `work` (a function, or a coroutine function) every `interval_s` seconds in a task of its own, at once
    when started (`at_once`) or after a first interval. A run that raises is logged with `log.exception(failed)`
    (a structlog or a standard logger) and the next one comes as usual: the loop ends only when stopped.
    `interval_s` is read before each wait (its owner may change it)."""

    def __init__(self, work: Callable[[], Awaitable[Any] | Any], interval_s: float, *, log: Any, failed: str,
                 at_once: bool = False, name: str | None = None) -> None:
        self.work = work
        self.interval_s = interval_s
        self.at_once = at_once
        self.name = name
        self._log = log
        self._failed = failed
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop (needs a running event loop); nothing if it runs already."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def cancel(self) -> None:
        """Stop without waiting (from synchronous code; stop() waits)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        """Stop the loop and wait until it has ended (a run in progress is cancelled)."""
        task, self._task = self._task, None
        await stop_task(task)

    async def run_once(self) -> None:
        """One run of the work; an exception is logged, never raised."""
        try:
            result = self.work()
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._log.exception(self._failed)

    async def _run(self) -> None:
        if not self.at_once:
            await asyncio.sleep(self.interval_s)
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)
