"""The event loop's own protections: the turnstile that spreads a crowd's set-ups over turns of the loop, the lag
monitor, and the garbage-collection policy of a served process."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from gateway.config import Settings
from gateway.gcpolicy import NEVER, GcPolicy
from signaling.looplag import LoopLag
from signaling.turnstile import Turnstile


async def test_turnstile_lets_a_few_through_per_turn_in_order():
    gate = Turnstile(per_iteration=3)
    turns: list[int] = []  # the loop turn in which each waiter passed
    turn = 0
    passed: list[int] = []

    async def ticker() -> None:
        nonlocal turn
        while True:
            await asyncio.sleep(0)
            turn += 1

    async def member(index: int) -> None:
        await gate.turn()
        turns.append(turn)
        passed.append(index)

    tick = asyncio.ensure_future(ticker())
    await asyncio.gather(*(member(i) for i in range(20)))
    tick.cancel()
    assert passed == list(range(20))  # first come, first served
    per_turn: dict[int, int] = {}
    for t in turns:
        per_turn[t] = per_turn.get(t, 0) + 1
    # At most the set number per turn (plus those let in at once while nobody waited): spread over several turns.
    assert max(per_turn.values()) <= 2 * gate.per_iteration
    assert len(per_turn) >= 20 // (2 * gate.per_iteration)
    assert gate.parked > 0 and gate.waiting == 0


async def test_turnstile_skips_a_cancelled_waiter():
    gate = Turnstile(per_iteration=1)
    order: list[str] = []

    async def member(name: str) -> None:
        await gate.turn()
        order.append(name)

    first = asyncio.ensure_future(member("first"))
    second = asyncio.ensure_future(member("second"))
    third = asyncio.ensure_future(member("third"))
    await asyncio.sleep(0)  # all three have asked: the first passed, two wait
    second.cancel()  # its socket closed while it waited
    await asyncio.wait_for(asyncio.gather(first, third), 2)
    assert order == ["first", "third"] and second.cancelled()


def test_turnstile_needs_room_for_one():
    with pytest.raises(ValueError):
        Turnstile(0)


async def test_loop_lag_sees_a_blocked_loop():
    lags: list[float] = []
    monitor = LoopLag(lags.append, interval_s=0.02, warn_s=10)
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # a callback that hogs the loop (what a big full collection does)
    deadline = time.monotonic() + 5
    while monitor.worst_s < 0.2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await monitor.stop()
    assert monitor.worst_s >= 0.2 and max(lags) == monitor.worst_s


async def test_loop_lag_keeps_probing_after_an_observer_error_and_stops_for_good():
    """The probe is a timer callback that arms the next one first: an observer that raises once (a metrics bug) is
    reported by the loop and the monitor goes on; stop() ends it (no probe after)."""
    lags: list[float] = []

    def observe(lag: float) -> None:
        lags.append(lag)
        if len(lags) == 1:
            raise RuntimeError("observer failed")

    errors: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        monitor = LoopLag(observe, interval_s=0.01, warn_s=10)
        monitor.start()
        deadline = time.monotonic() + 5
        while len(lags) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await monitor.stop()
        seen = len(lags)
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(None)
    assert seen >= 3 and len(lags) == seen
    assert len(errors) == 1 and isinstance(errors[0].get("exception"), RuntimeError)


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_gc_policy_sweeps_new_garbage_and_frees_frozen_garbage_on_a_complete_sweep():
    saved = gc.get_threshold()
    policy = GcPolicy(sweep_interval_s=3600, complete_every=3)
    kept = Cycle()  # alive at start: frozen with everything else
    kept_ref = weakref.ref(kept)
    policy.start()
    try:
        assert gc.get_threshold()[2] == NEVER and gc.get_freeze_count() > 0
        # Garbage made after start (a cycle: only the collector frees it) is gone after the next sweep.
        new_ref = weakref.ref(Cycle())
        policy.sweep()
        assert new_ref() is None and policy.sweeps == 1
        # An object frozen at start that becomes garbage is not walked by an ordinary sweep...
        del kept
        policy.sweep()
        assert kept_ref() is not None
        # ...but a complete sweep (every third here) unfreezes, collects and freezes again.
        policy.sweep()
        assert kept_ref() is None and gc.get_freeze_count() > 0
    finally:
        await policy.stop()
    assert gc.get_threshold() == saved and gc.get_freeze_count() == 0


async def test_gc_policy_default_walks_a_call_setup_burst_in_small_pieces():
    """An ordinary sweep walks what became long-lived since the last one, so the interval bounds its pause. Every
    object a set-up call keeps (peer connection, transports, SDP, codecs: a few thousand per call) is walked once,
    by the first sweep after it; with a 30 s interval, 48 calls set up in ~20 s were walked in one 90 ms pause
    (278 ms at 64 calls) while their media flowed (docs/benchmark.md, "Step 6"). Here: long-lived cyclic objects
    made at ~15,000 per second for 4.5 s, the policy with the served process's defaults."""
    interval = Settings.model_fields["gc_sweep_interval_s"].default
    complete_every = Settings.model_fields["gc_complete_every"].default
    assert interval * complete_every == 300  # the complete sweep (walking everything) stays once per 5 minutes
    pauses: list[tuple[str, float]] = []
    policy = GcPolicy(interval, complete_every, observe=lambda kind, seconds: pauses.append((kind, seconds)))
    policy.start()
    kept: list[list[Cycle]] = []
    try:
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            kept.append([Cycle() for _ in range(750)])  # ~1,500 tracked objects (instance + its __dict__)
            await asyncio.sleep(0.1)
    finally:
        await policy.stop()
    sweeps = [seconds for kind, seconds in pauses if kind == "sweep"]
    # The burst was walked in pieces while it was made (not in one pause later), each piece well under 50 ms.
    assert len(sweeps) >= 2, pauses
    assert max(sweeps) < 0.05, pauses
    assert sum(len(batch) for batch in kept) >= 30 * 750
