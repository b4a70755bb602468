"""Run the real gateway app on a free loopback port."""

from __future__ import annotations

import json

import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from gateway.config import Settings
from gateway.switchboard import Switchboard
from signaling.app import create_app
from signaling.hardening import server_options
from signaling.keys import SWITCHBOARD

TEST_SECRET = "test-secret-0123456789-abcdefghij"
LOOSE_CALLER_LIMITS: dict[str, Any] = dict(
    caller_max_sessions_per_subject=1000, caller_max_calls_per_subject=100, caller_call_starts_per_minute=10_000,
    caller_max_sessions_per_address=100_000, caller_call_starts_per_address_per_minute=100_000,
    caller_unknown_resume_burst=100_000, caller_unknown_resumes_per_address_per_minute=100_000,
    chat_burst=1000, chat_lines_per_minute=6000,
)
LIMIT_DEFAULTS: dict[str, Any] = {name: Settings.model_fields[name].default for name in LOOSE_CALLER_LIMITS}
# The tests' webhook receivers listen on loopback, which webhooks may not reach by default.
TEST_WEBHOOK_NETWORKS = ["127.0.0.0/8"]


def test_env() -> dict[str, str]:
    """The same test-only relaxations as CALLIN_* variables, for tests that start `callin serve` as a process: many
    callers share 127.0.0.1 and a few tokens, and webhook receivers listen on loopback; and asyncio's event loop."""
    env = {f"CALLIN_{name.upper()}": str(value) for name, value in LOOSE_CALLER_LIMITS.items()}
    env["CALLIN_WEBHOOK_ALLOWED_NETWORKS"] = json.dumps(TEST_WEBHOOK_NETWORKS)
    # The test extra installs uvloop (event_loop=auto would take it): served processes keep asyncio's loop, as the
    # in-process gateways do, unless a test asks for uvloop (GatewayProcess.set(event_loop="uvloop")).
    env["CALLIN_EVENT_LOOP"] = "asyncio"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        host="127.0.0.1",
        port=free_port(),
        demo=True,
        caller_token_secret=TEST_SECRET,
        media_host_addresses=["127.0.0.1"],
        ice_servers=[],
        resume_grace_s=2.0,
        password_hash_time_cost=1,
        password_hash_memory_kib=8192,
        webhook_retry_base_s=0.2,
        # the tests' webhook receivers listen on loopback, which webhooks may not reach by default
        webhook_allowed_networks=TEST_WEBHOOK_NETWORKS,
        # Tests of other features place many calls with one caller token; the caller limits have their own tests
        # (tests/integration/test_caller_limits.py), which put the production defaults back (LIMIT_DEFAULTS).
        **LOOSE_CALLER_LIMITS,
    )
    values.update(overrides)
    return Settings(**values)


class RunningGateway:
    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.base_url = f"http://127.0.0.1:{settings.port}"

    @property
    def board(self) -> Switchboard:
        return self.app[SWITCHBOARD]


@asynccontextmanager
async def running_gateway(**overrides: Any) -> AsyncIterator[RunningGateway]:
    """Each gateway gets its own database: a fresh SQLite file, unless a database_url is given."""
    data_dir = None
    if "database_url" not in overrides and "data_dir" not in overrides:
        data_dir = tempfile.mkdtemp(prefix="callin-test-")
        overrides["data_dir"] = data_dir
    settings = test_settings(**overrides)
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2, **server_options(settings))
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", settings.port)
        await site.start()
        yield RunningGateway(app, settings)
    finally:
        await runner.cleanup()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
