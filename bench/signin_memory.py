"""Memory of a password-guessing burst: peak RSS of a real `callin serve` process while N wrong sign-ins arrive at
once, with the hash bound (CALLIN_PASSWORD_HASH_CONCURRENCY, default 2) against the bound lifted to N (what the
gateway did before: one argon2 hash of CALLIN_PASSWORD_HASH_MEMORY_KIB per concurrent request), in the same run.

    python -m bench.signin_memory --burst 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402
from bench.run import wait_healthy  # noqa: E402


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


async def burst(concurrency: int, burst_size: int) -> tuple[int, int, dict[int, int], float]:
    import aiohttp

    from tests.support.server import free_port

    port = free_port()
    data = tempfile.mkdtemp(prefix="callin-bench-")
    env = dict(os.environ, CALLIN_DEMO="true", CALLIN_PORT=str(port), CALLIN_DATA_DIR=data,
               CALLIN_CALLER_TOKEN_SECRET="bench-secret-0123456789abcdef", CALLIN_LOG_LEVEL="error",
               CALLIN_PASSWORD_HASH_CONCURRENCY=str(concurrency), CALLIN_PASSWORD_HASH_QUEUE="1000",
               CALLIN_EVENT_LOOP="asyncio")
    proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        before = rss_kib(proc.pid, "VmRSS")
        statuses: dict[int, int] = {}
        started = time.monotonic()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            async def guess(i: int) -> None:
                async with http.post(base + "/api/v1/agent/login",
                                     json={"username": f"user{i}", "password": "guess"}) as r:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
            await asyncio.gather(*(guess(i) for i in range(burst_size)))
        elapsed = time.monotonic() - started
        return before, rss_kib(proc.pid, "VmHWM"), statuses, elapsed
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=40)
    args = parser.parse_args()
    ensure_loopback_namespace()
    for label, concurrency in (("unbounded (old)", args.burst), ("bounded (default 2)", 2)):
        before, peak, statuses, elapsed = asyncio.run(burst(concurrency, args.burst))
        print(f"{label:22s}: RSS {before / 1024:6.0f} MiB before, peak {peak / 1024:6.0f} MiB "
              f"(+{(peak - before) / 1024:.0f} MiB); answers {statuses}; {elapsed:.1f} s")


if __name__ == "__main__":
    main()
