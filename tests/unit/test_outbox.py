"""The socket outbox: a pending queue position is replaced, never queued behind another; broadcasts are serialised
once and can carry a per-recipient sequence number."""

from __future__ import annotations

import json

from gateway.events import CallEnded, QueueUpdate
from signaling import protocol as p
from signaling.outbox import Outbox, Wire
from signaling.ws import OUTBOX_LIMIT, event_wire


async def drain(box: Outbox) -> list[str | tuple[int, str]]:
    box.put_close(1000, "")
    items = []
    while True:
        item = await box.get()
        items.append(item)
        if isinstance(item, tuple):
            return items


def update(call_id: str, position: int) -> Wire:
    return event_wire(QueueUpdate(call_id=call_id, position=position, queue_length=10_000, estimated_wait_s=None))


async def test_a_pending_position_is_replaced_not_queued_behind():
    box = Outbox(OUTBOX_LIMIT)
    for position in range(10_000, 0, -1):  # far more than the limit: a slow reader is not cut off for it
        wire = update("c1", position)
        assert box.put(wire.text, wire.slot)
    assert len(box) == 1
    items = await drain(box)
    assert [json.loads(i)["position"] for i in items[:-1]] == [1]


async def test_replacing_keeps_the_order_of_what_was_put():
    box = Outbox(OUTBOX_LIMIT)
    for wire in (update("c1", 5), Wire.of(p.Pong(id="x")), update("c2", 9), update("c1", 4)):
        box.put(wire.text, wire.slot)
    items = await drain(box)
    assert [(m["type"], m.get("position")) for m in map(json.loads, items[:-1])] == [
        ("pong", None), ("queue.position", 9), ("queue.position", 4)]
    assert items[-1] == (1000, "")


async def test_other_messages_still_fill_the_outbox():
    box = Outbox(3)
    other = event_wire(CallEnded(call_id="c1", reason="caller_hangup", by="caller"))
    assert other.slot is None
    assert all(box.put(other.text) for _ in range(3))
    assert not box.put(other.text)  # full: the connection closes a client this slow
    wire = update("c1", 2)
    assert not box.put(wire.text, wire.slot)  # a position needs a free place the first time...
    box2 = Outbox(2)
    box2.put(wire.text, wire.slot)
    box2.put(other.text)
    assert box2.put(update("c1", 1).text, wire.slot)  # ...but replacing a pending one never needs another


def test_a_wire_is_serialised_once_and_takes_a_sequence_number():
    message = p.QueuePosition(call_id="c1", position=3, queue_length=7, estimated_wait_s=None)
    wire = Wire.of(message)
    assert json.loads(wire.with_seq(42)) == {"seq": 42, **json.loads(message.model_dump_json())}
    assert json.loads(wire.text) == json.loads(message.model_dump_json())
