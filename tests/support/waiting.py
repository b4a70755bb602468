"""Waiting for a condition with a deadline (never a fixed sleep): the one polling loop the tests share."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def until(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10, interval: float = 0.02,
                message: str = "condition not met in time") -> None:
    """Polls `predicate` (plain or async) every `interval` s until it is true; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} ({timeout:g} s)")
        await asyncio.sleep(interval)
