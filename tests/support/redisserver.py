"""A real redis-server for tests, started on a free loopback port (inside the test's network namespace), nothing
kept on disk."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from .process import stop_process
from .server import free_port


@asynccontextmanager
async def running_redis(directory: Path) -> AsyncIterator[str]:
    """Yields the server's URL (redis://127.0.0.1:PORT/0)."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not installed (Debian's redis-server)"
    port = free_port()
    log = directory / "redis.log"
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"redis-server exited: {log.read_text(errors='replace')[-1500:]}"
            client = Redis.from_url(url)
            try:
                if await client.ping():
                    break
            except (OSError, RedisConnectionError):
                pass
            finally:
                await client.aclose()
            assert time.monotonic() < deadline, "redis-server did not answer"
            await asyncio.sleep(0.05)
        yield url
    finally:
        stop_process(process)
