"""When the cyclic garbage collector may stop the process, and for how long.

CPython's collector is not incremental: a full (generation 2) collection walks every tracked object while every
thread waits. A waiting caller is ~130 tracked objects (socket, session, call, replay buffer, tasks), so with
10,000 callers waiting a full collection stops the event loop for about a second on a small machine, and by
default one runs each time the heap has grown by about a quarter: twenty of them while 10,000 callers join. That
event loop forwards media and answers ICE checks; an aioice peer gives up a connection after six consent checks
go unanswered for half a second each, and every media packet waits as long as the pause.

The policy (one per process, started once the process has loaded what it keeps):
  - what exists at start (modules, settings, the app) is frozen: never walked again;
  - young collections run as usual (cheap: they walk only new objects);
  - automatic full collections are off; instead a *sweep* every `sweep_interval_s` collects what is not frozen
    and then freezes the survivors, so each sweep walks only what became long-lived since the last one;
  - every `complete_every`-th sweep first unfreezes everything, so cyclic garbage among objects that were frozen
    (a caller's socket and session once they are gone) is collected too: memory is bounded, and the one long pause
    comes every `sweep_interval_s * complete_every` seconds instead of every few seconds while a crowd joins.

An ordinary sweep's pause is proportional to what became long-lived since the previous one, so the interval bounds
it: every object a set-up call keeps is walked once, by the first sweep after the call is set up. At 30 s, 48 media
calls set up within one interval were walked in one 70-100 ms stop of their media (278 ms at 64 calls; docs/
benchmark.md "Step 6"); at 2 s a sweep walks a few seconds' worth, 5-10 ms at 48-64 calls on a small VM.

Pauses are reported through `observe(kind, seconds)` (the `callin_gc_pause_seconds` histogram).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import structlog

from .tasks import Periodic

log = structlog.get_logger("callin.gc")

YOUNG_THRESHOLD = 7000  # allocations (net) before a generation-0 collection (CPython's default: 700)
NEVER = 2**31 - 1  # generation-1 collections before an automatic full one: never


class GcPolicy:
    def __init__(self, sweep_interval_s: float = 2.0, complete_every: int = 150,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.sweep_interval_s = sweep_interval_s
        self.complete_every = max(1, complete_every)
        self.observe = observe or (lambda _kind, _s: None)
        self.sweeps = 0
        self.longest_s = 0.0
        self._saved: tuple[int, int, int] | None = None
        self._sweeper = Periodic(self.sweep, sweep_interval_s, log=log, failed="gc.sweep_failed", name="callin-gc")

    def start(self) -> None:
        """Freeze what exists, turn automatic full collections off, sweep on a timer (needs a running loop)."""
        self._saved = gc.get_threshold()
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self._report("start", time.perf_counter() - started)
        young, middle, _ = self._saved
        gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, NEVER)
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None

    def sweep(self) -> float:
        """One sweep (complete every `complete_every`-th time); returns how long the process was stopped."""
        self.sweeps += 1
        complete = self.sweeps % self.complete_every == 0
        started = time.perf_counter()
        if complete:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        seconds = time.perf_counter() - started
        self._report("complete" if complete else "sweep", seconds)
        return seconds

    def _report(self, kind: str, seconds: float) -> None:
        self.longest_s = max(self.longest_s, seconds)
        self.observe(kind, seconds)
        if seconds >= 0.1:
            log.info("gc.pause", kind=kind, seconds=round(seconds, 3), frozen=gc.get_freeze_count())
