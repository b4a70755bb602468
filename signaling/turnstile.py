"""A turnstile: at most `per_iteration` tasks pass per turn of the event loop, first come first served.

asyncio runs, in each turn of its loop, every callback that was ready when the turn began. When a crowd joins
(hundreds of sockets handshaking, saying hello and starting calls at once), that is hundreds of session set-ups
in one turn: half a second or more during which no media packet is forwarded and no ICE check is answered. The
work itself is not the problem (it has to be done); doing all of it in one turn is. So each costly set-up step
(the WebSocket handshake, a hello, a call.start) first passes the turnstile: a few per turn, the rest parked (a
parked task costs nothing) until a later turn, with media and everything else served in between.

A waiter that is cancelled (its socket closed) gives its place up.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turnstile:
    def __init__(self, per_iteration: int) -> None:
        if per_iteration < 1:
            raise ValueError("per_iteration must be at least 1")
        self.per_iteration = per_iteration
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._passed = 0  # in this turn of the loop
        self._armed = False
        self.parked = 0  # tasks that had to wait, since start (for metrics and tests)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiting if not f.done())

    async def turn(self) -> None:
        """Return at once if this turn has room and nobody is waiting; otherwise in a later turn, in order."""
        if not self._waiting and self._passed < self.per_iteration:
            self._passed += 1
            self._arm()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self.parked += 1
        self._arm()
        await future

    def _arm(self) -> None:
        # call_soon from inside a turn runs at the start of the next one: that is where the count starts again
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._armed = False
        self._passed = 0
        while self._waiting and self._passed < self.per_iteration:
            future = self._waiting.popleft()
            if not future.done():  # cancelled: its place goes to the next one
                future.set_result(None)
                self._passed += 1
        if self._waiting or self._passed:
            self._arm()
