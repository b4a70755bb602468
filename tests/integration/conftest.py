"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.redisserver import running_redis


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real redis-server of this test's own, on a free loopback port: its URL."""
    directory = tmp_path / "redis"
    directory.mkdir()
    async with running_redis(directory) as url:
        yield url
