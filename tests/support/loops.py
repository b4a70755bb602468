"""The event loops a test runs on: asyncio's and uvloop's (the server's `event_loop=auto` takes uvloop when the
`fast` extra is installed; the test extra installs it)."""

from __future__ import annotations

import asyncio

import pytest


def event_loops() -> list:
    """pytest params of an event loop factory: asyncio's, and uvloop's (skipped, with the reason, if not installed)."""
    loops = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        loops.append(pytest.param(None, id="uvloop", marks=pytest.mark.skip(reason="uvloop is not installed")))
    else:
        loops.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    return loops
