"""A real `callin serve` subprocess that the crash tests can SIGKILL and start again (same database)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import aiohttp

from .server import TEST_SECRET, free_port, test_env

ROOT = Path(__file__).resolve().parents[2]


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10, kill_timeout: float = 5) -> int:
    """SIGTERM, then wait up to `timeout` s for it to exit, then SIGKILL; returns the exit status. A process that has
    already exited is only reaped."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(kill_timeout)


async def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 60,
                       output: Callable[[], str] = lambda: "", ssl: Any = True) -> None:
    """Until GET /healthz answers 200; fails at once if the process exits, or at the deadline (with `output()`, e.g.
    the end of its log). `ssl`: an SSLContext for an https URL with a test certificate."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert proc.poll() is None, f"the gateway exited with {proc.returncode}: {output()}"
            try:
                async with http.get(base_url + "/healthz", ssl=ssl) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway did not become healthy within {timeout:.0f} s: {output()}")


class GatewayProcess:
    def __init__(self, database_url: str, data_dir: Path, **settings: Any) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, CALLIN_PORT=str(self.port), CALLIN_HOST="127.0.0.1", CALLIN_DEMO="true",
                        CALLIN_CALLER_TOKEN_SECRET=TEST_SECRET, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
                        CALLIN_LOG_LEVEL="warning", CALLIN_DATABASE_URL=database_url, CALLIN_DATA_DIR=str(data_dir),
                        CALLIN_PASSWORD_HASH_TIME_COST="1", CALLIN_PASSWORD_HASH_MEMORY_KIB="8192", **test_env())
        self.set(**settings)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "gateway-stderr.log"

    def set(self, **settings: Any) -> None:
        """CALLIN_<NAME> for the next start (values as the environment spells them)."""
        for key, value in settings.items():
            self.env[f"CALLIN_{key.upper()}"] = str(value)

    async def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=err)
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = 60) -> None:
        assert self.proc is not None
        await wait_healthy(self.base_url, self.proc, timeout, self.stderr)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, timeout: float = 120) -> int:
        """SIGTERM, then wait for the graceful stop to finish; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, timeout)

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
