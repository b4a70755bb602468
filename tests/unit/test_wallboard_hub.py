"""The supervisors' wallboard hub: re-checks (every RECHECK_S) only while someone watches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import signaling.wallboard as wallboard
from signaling.wallboard import WallboardHub


class Board:
    """What the hub reads: call events to subscribe to and the wallboard's data (changed by the test, no event)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"at": 0.0, "queues": [], "calls": [], "waiting": [], "agents": []}
        self.reads = 0

    def on(self, _name: str, _listener: Any) -> None:
        pass

    def wallboard(self) -> dict[str, Any]:
        self.reads += 1
        return dict(self.data)


async def test_rechecks_run_only_while_someone_watches_and_push_a_change_that_raised_no_event(monkeypatch):
    monkeypatch.setattr(wallboard, "RECHECK_S", 0.02)
    monkeypatch.setattr(wallboard.Wire, "of", staticmethod(lambda message: message))
    board = Board()
    hub = WallboardHub(board)
    hub.start()
    await asyncio.sleep(0.1)  # five recheck periods with nobody watching: no read, no wake-up of the recheck
    assert board.reads == 0 and not hub._rechecks.running
    pushed: list[Any] = []
    hub.subscribe(pushed.append)
    assert hub._rechecks.running
    away = {"username": "alice", "display_name": None, "status": "away", "call_id": None, "since": 1.0}
    board.data["agents"] = [away]  # an agent went away: no call event
    deadline = time.monotonic() + 5
    while not pushed and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pushed and pushed[-1].agents[0].status == "away"
    hub.unsubscribe(pushed.append)
    assert not hub._rechecks.running
    reads = board.reads
    await asyncio.sleep(0.1)
    assert board.reads == reads  # nobody watches: nothing re-checked
    await hub.stop()
