"""gateway.tasks.Periodic, the one loop behind the sweepers and re-checks: runs its work again and again, survives
(and logs) a failing run, runs at once or after a first interval, and stops cleanly even mid-run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.tasks import Periodic
from tests.support.waiting import until

log = logging.getLogger("tests.tasks")


async def test_a_failing_run_is_logged_and_the_next_runs_come(caplog):
    runs: list[int] = []

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("the disk is gone")

    loop = Periodic(work, 0.01, log=log, failed="tests.work_failed", at_once=True)
    with caplog.at_level(logging.ERROR, logger="tests.tasks"):
        loop.start()
        loop.start()  # running already: not a second loop
        await until(lambda: len(runs) >= 4, 10, message="runs after the failing one")
        await loop.stop()
    assert not loop.running
    assert [r.getMessage() for r in caplog.records] == ["tests.work_failed"]
    assert "the disk is gone" in caplog.text  # with its traceback
    assert runs == list(range(len(runs)))  # one loop: every run once, in order


async def test_without_at_once_the_first_run_waits_an_interval_and_plain_functions_run_too():
    runs: list[str] = []
    loop = Periodic(lambda: runs.append("run"), 3600, log=log, failed="tests.work_failed", name="tests-periodic")
    loop.start()
    assert loop.running
    await asyncio.sleep(0)  # the task starts and waits its first interval
    assert runs == []
    await loop.run_once()  # what each turn does: a plain function is called
    assert runs == ["run"]
    await loop.stop()
    await loop.stop()  # idempotent
    assert not loop.running


async def test_stop_cancels_a_run_in_progress_and_cancel_needs_no_await():
    entered = asyncio.Event()
    finished: list[bool] = []

    async def slow() -> None:
        entered.set()
        await asyncio.sleep(3600)
        finished.append(True)

    loop = Periodic(slow, 0.01, log=log, failed="tests.work_failed", at_once=True)
    loop.start()
    await asyncio.wait_for(entered.wait(), 10)
    await loop.stop()
    assert finished == [] and not loop.running
    entered.clear()
    loop.start()  # a stopped loop starts again
    await asyncio.wait_for(entered.wait(), 10)
    loop.cancel()
    assert not loop.running


@pytest.mark.parametrize("at_once", [True, False])
async def test_the_interval_is_read_before_each_wait(at_once):
    runs: list[float] = []
    loop = Periodic(lambda: runs.append(loop.interval_s), 3600, log=log, failed="tests.work_failed",
                    at_once=at_once)
    loop.interval_s = 0.01  # changed before start: the first wait (if any) uses it
    loop.start()
    await until(lambda: len(runs) >= 2, 10, message="runs at the new interval")
    await loop.stop()
    assert set(runs) == {0.01}
