"""bench.run's `system_cpu_wait` (how long the measured system waited, runnable, for its CPU) and
`others_on_system_cpus` (what other processes used of its CPUs). The system is pinned to one CPU; on a shared
machine another busy process there takes half of it, and the system's delays and losses then come from that
(docs/benchmark.md, "Step 6"), so each point says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run import cpus_busy_seconds, tree_runqueue_wait_seconds

SPIN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not Path(f"/proc/{os.getpid()}/schedstat").exists(),
                    reason="needs /proc/PID/task/TID/schedstat (Linux with schedstats)")
def rate(pid: int, seconds: float) -> float:
    """Runqueue wait of `pid` per second over the next `seconds`."""
    before, started = tree_runqueue_wait_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (tree_runqueue_wait_seconds(pid) - before) / (time.monotonic() - started)


def test_runqueue_wait_counts_the_time_a_pinned_process_shares_its_cpu():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        for proc in spinners:
            os.sched_setaffinity(proc.pid, {cpu})
        time.sleep(0.3)
        shared = rate(spinners[0].pid, 1.0)  # two busy processes on one CPU: each waits about half the time
        spinners[1].kill()
        spinners[1].wait()
        time.sleep(0.2)
        alone = rate(spinners[0].pid, 1.0)  # the same process alone there (other jobs on this machine aside)
        # Waiting, not running: a measure of CPU time would go the other way (~0.5 then ~1.0 s per second).
        assert shared >= 0.25 and shared - alone >= 0.15, (shared, alone)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def test_busy_seconds_of_a_cpu_count_whoever_ran_there():
    cpu = sorted(os.sched_getaffinity(0))[-1]
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        os.sched_setaffinity(spinner.pid, {cpu})
        time.sleep(0.3)
        before, started = cpus_busy_seconds([cpu]), time.monotonic()
        time.sleep(1.0)
        busy = (cpus_busy_seconds([cpu]) - before) / (time.monotonic() - started)
        # The spinner alone keeps that CPU busy (idle time counted instead would be ~0)
        assert busy >= 0.8, busy
    finally:
        spinner.kill()
        spinner.wait()
