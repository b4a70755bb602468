"""What a WebSocket has yet to send: messages serialised once, and a bounded outbox in which a newer message of a
replaceable kind (a caller's queue position) replaces the pending one instead of queueing behind it."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Wire:
    """A message as JSON text, serialised once however many sockets it goes to.

    `slot`: messages with the same slot replace each other while pending (only the newest is worth sending)."""

    text: str
    slot: str | None = None

    @classmethod
    def of(cls, message: BaseModel, slot: str | None = None) -> "Wire":
        return cls(message.model_dump_json(), slot)

    def with_seq(self, seq: int) -> str:
        """The same JSON object with `"seq": N` first: one serialisation, a per-recipient sequence number."""
        return f'{{"seq":{seq},{self.text[1:]}' if self.text != "{}" else f'{{"seq":{seq}}}'


class _Item:
    __slots__ = ("text", "slot", "close")

    def __init__(self, text: str | None, slot: str | None = None, close: tuple[int, str] | None = None) -> None:
        self.text = text  # None once replaced by a newer message of its slot
        self.slot = slot
        self.close = close


class Outbox:
    """Messages in order, then possibly one close (code, reason). `put` returns False when `limit` live messages
    are already waiting (the client reads too slowly). A message with a slot replaces the pending one of that slot:
    the old one is dropped and the new one goes to the back, so the order of what is sent stays the order in which
    it was put (sequence numbers stay increasing) and a slot never holds more than one message."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[_Item] = deque()
        self._live = 0
        self._slots: dict[str, _Item] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        """Messages waiting to be sent (replaced ones do not count)."""
        return self._live

    def put(self, text: str, slot: str | None = None) -> bool:
        pending = self._slots.pop(slot, None) if slot is not None else None
        if pending is not None:
            pending.text = None
            self._live -= 1
        elif self._live >= self.limit:
            return False
        item = _Item(text, slot)
        if slot is not None:
            self._slots[slot] = item
        self._items.append(item)
        self._live += 1
        self._ready.set()
        return True

    def put_close(self, code: int, reason: str) -> None:
        self._items.append(_Item(None, close=(code, reason)))
        self._ready.set()

    async def get(self) -> str | tuple[int, str]:
        """The next message text, or a (code, reason) close."""
        while True:
            while self._items:
                item = self._items.popleft()
                if item.close is not None:
                    return item.close
                if item.text is None:
                    continue  # replaced by a newer one of its slot
                self._live -= 1
                if item.slot is not None and self._slots.get(item.slot) is item:
                    del self._slots[item.slot]
                return item.text
            self._ready.clear()
            await self._ready.wait()
