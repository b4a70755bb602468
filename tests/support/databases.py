"""Databases for the record tests: a fresh SQLite file, or the machine's PostgreSQL.

PostgreSQL is reached through its Unix socket (/var/run/postgresql, trust auth), which also works inside the
loopback-only network namespace of the test run. A test session creates its own database
(callin_test_<random>) and drops it at the end; each test gets an empty public schema.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from typing import Any

import asyncpg

PG_SOCKET = os.environ.get("CALLIN_TEST_PG_HOST", "/var/run/postgresql")
PG_USER = os.environ.get("CALLIN_TEST_PG_USER", "postgres")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_SOCKET, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run_apart(coro: Any) -> None:
    """Run a coroutine to completion on its own loop in a thread (callers may be inside a running loop)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def create_pg_database() -> str:
    name = f"callin_test_{secrets.token_hex(4)}"
    _run_apart(_admin(f'CREATE DATABASE "{name}"'))
    return name


def drop_pg_database(name: str) -> None:
    _run_apart(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def reset_pg_schema(name: str) -> None:
    conn = await asyncpg.connect(host=PG_SOCKET, user=PG_USER, database=name)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@/{name}?host={PG_SOCKET}"
