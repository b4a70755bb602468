from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.auth import mint_caller_token  # noqa: E402
from tests.support.redisserver import running_redis  # noqa: E402
from tests.support.server import TEST_SECRET, RunningGateway, running_gateway  # noqa: E402


@pytest.fixture
async def gateway() -> AsyncIterator[RunningGateway]:
    async with running_gateway() as gw:
        yield gw


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real redis-server of this test's own, on a free loopback port: its URL."""
    directory = tmp_path / "redis"
    directory.mkdir()
    async with running_redis(directory) as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of this test's own redis-server."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def caller_token():
    def make(sub: str = "cust-42", name: str = "Dana Caller", **extra):
        return mint_caller_token(TEST_SECRET, sub=sub, name=name, extra=extra)
    return make


@pytest.fixture(autouse=True)
def _loopback_only(request):
    """Media and browser tests run where no packet can leave the machine (scripts/test.sh uses `unshare -rn`)."""
    if "media" in request.keywords or "browser" in request.keywords:
        interfaces = {name for _, name in socket.if_nameindex()}
        if not interfaces <= {"lo"} and os.environ.get("CALLIN_ALLOW_HOST_NETWORK") != "1":
            pytest.fail(f"media tests must run in a loopback-only network namespace (found {sorted(interfaces)}); "
                        "use scripts/test.sh")


@pytest.fixture(scope="session")
def pg_database():
    """One PostgreSQL database for the test session, dropped at the end."""
    from tests.support.databases import create_pg_database, drop_pg_database

    try:
        name = create_pg_database()
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable through {os.environ.get('CALLIN_TEST_PG_HOST', '/var/run/postgresql')}: "
                    f"{exc}")
    yield name
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path) -> AsyncIterator[str]:
    """Each record test runs against the embedded SQLite and against the real PostgreSQL (an empty schema)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}"
        return
    from tests.support.databases import pg_url, reset_pg_schema

    name = request.getfixturevalue("pg_database")
    await reset_pg_schema(name)
    yield pg_url(name)
