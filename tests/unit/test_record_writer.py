"""The record writer and node leases on a real SQLite file: coalescing, batching, durability, retry, reaping."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

from sqlalchemy import func, select

from gateway.calls import Call
from gateway.models import CallContext, CallerIdentity, CallType
from gateway.store import nodes
from gateway.store.db import Database
from gateway.store.models import CallEventRow, CallRow, NodeRow
from gateway.store.record_writer import RecordWriter
from gateway.store.records import call_columns


def make_call(call_id: str) -> Call:
    return Call(id=call_id, identity=CallerIdentity(subject=f"s-{call_id}", expires_at=2_000_000_000), call_type=CallType.VOICE, location=None,
                context=CallContext(), caller_session="sess")


def snapshot(call: Call, node: nodes.NodeLease, start: int) -> tuple[dict, list[dict]]:
    columns = {**call_columns(call, node.name), "node_id": node.id}
    events = [{"call_id": call.id, "seq": seq, "at": e.at, "kind": e.kind, "detail": e.detail}
              for seq, e in enumerate(call.events[start:], start=start)]
    return columns, events


async def migrated(tmp_path) -> tuple[str, Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"
    db = Database(url)
    await db.upgrade()
    return url, db


class Committed:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.event = threading.Event()

    def __call__(self, committed: list[tuple[str, int]]) -> None:
        self.ids += [call_id for call_id, _ in committed]
        self.event.set()


async def test_changes_of_one_call_are_coalesced_into_one_row_with_every_event(tmp_path):
    url, db = await migrated(tmp_path)
    node = nodes.NodeLease(id="n1", name="one", lease_s=10)
    committed = Committed()
    writer = RecordWriter(url, node, heartbeat_s=5, batch_max=500, on_committed=committed, on_reaped=lambda r: None)
    call = make_call("c1")
    written = 0
    for i in range(5):  # five changes before the writer comes round
        call.log("note", i=i)
        columns, events = snapshot(call, node, written)
        written += len(events)
        writer.put(call.id, columns, events)
    await asyncio.wrap_future(writer.start())
    await asyncio.to_thread(committed.event.wait, 10)
    await asyncio.wrap_future(writer.stop())
    assert committed.ids == ["c1"] and writer.batches == 1 and writer.rows == 1
    async with db.session() as session:
        kinds = (await session.scalars(select(CallEventRow.kind).where(CallEventRow.call_id == "c1")
                                       .order_by(CallEventRow.seq))).all()
        row = await session.get(CallRow, "c1")
        node_row = await session.get(NodeRow, "n1")
    assert kinds == ["queued"] + ["note"] * 5 and row.node_id == "n1" and row.state == "queued"
    assert node_row.stopped_at is not None  # a clean stop: any node may take over its callbacks at once
    await db.close()


async def test_many_calls_are_written_in_batches_and_a_locked_database_delays_but_loses_nothing(tmp_path):
    url, db = await migrated(tmp_path)
    node = nodes.NodeLease(id="n2", name="two", lease_s=10)
    committed = Committed()
    writer = RecordWriter(url, node, heartbeat_s=5, batch_max=500, on_committed=committed, on_reaped=lambda r: None)
    await asyncio.wrap_future(writer.start())
    lock = sqlite3.connect(tmp_path / "records.db", timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    calls = [make_call(f"b{i}") for i in range(1200)]
    for call in calls:
        writer.put(call.id, *snapshot(call, node, 0))
    await asyncio.sleep(0.5)
    assert committed.ids == []  # nothing is durable while the lock is held
    lock.rollback()
    lock.close()
    for _ in range(200):
        if len(committed.ids) == 1200:
            break
        await asyncio.sleep(0.05)
    await asyncio.wrap_future(writer.stop())
    assert sorted(committed.ids) == sorted(c.id for c in calls)
    assert writer.rows == 1200 and 3 <= writer.batches < 1200
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(CallRow)) == 1200
    await db.close()


async def test_a_dead_nodes_records_are_closed_once_its_lease_ran_out_by_exactly_one_node(tmp_path):
    _url, db = await migrated(tmp_path)
    dead = nodes.NodeLease(id="dead", name="same-name", lease_s=10)
    b = nodes.NodeLease(id="b", name="same-name", lease_s=10)  # the same name does not matter
    c = nodes.NodeLease(id="c", name="other", lease_s=10)
    open_call, callback, waiting = make_call("open"), make_call("cb"), make_call("waiting")
    callback.callback = True
    waiting.caller_resume = "ab" * 32  # a waiting caller who holds a resume token
    async with db.session() as session, session.begin():
        for lease in (dead, b, c):
            await nodes.register(session, lease, 1000.0)
        for call in (open_call, callback, waiting):
            columns, events = snapshot(call, dead, 0)
            session.add(CallRow(**columns))
            await session.flush()
            session.add_all(CallEventRow(**e) for e in events)
    async with db.session() as session, session.begin():
        await nodes.heartbeat(session, b, 1009.0)
        early = await nodes.reap(session, b, 1009.0)
    assert not early  # the dead node's lease holds until 1010
    async with db.session() as session, session.begin():
        await nodes.heartbeat(session, b, 1011.0)
        await nodes.heartbeat(session, c, 1011.0)
        first = await nodes.reap(session, b, 1011.0, restore_within_s=60)
    async with db.session() as session, session.begin():
        second = await nodes.reap(session, c, 1011.0, restore_within_s=60)
    assert first.nodes == ["dead"] and [r["id"] for r in first.closed] == ["open"]
    assert first.closed[0]["outcome"] == "interrupted" and "node_id" not in first.closed[0]
    assert "caller_resume" not in first.closed[0]  # never shown by the REST API nor sent in webhooks
    assert [r.row["id"] for r in first.callbacks] == ["cb"] and first.callbacks[0].caller_resume is None
    assert [e["kind"] for e in first.callbacks[0].events] == ["queued", "callback_restored"]
    assert [r.row["id"] for r in first.waiting] == ["waiting"] and first.waiting[0].caller_resume == "ab" * 32
    assert [e["kind"] for e in first.waiting[0].events] == ["queued", "restored"]
    assert not second  # claimed once
    async with db.session() as session:
        cb = await session.get(CallRow, "cb")
        assert cb.ended_at is None and cb.node_id == "b"  # the callback now belongs to the live node
        assert (await session.get(CallRow, "waiting")).node_id == "b"
    await db.close()


async def test_waiting_calls_of_a_node_dead_for_too_long_are_closed_not_restored(tmp_path):
    _url, db = await migrated(tmp_path)
    dead, live = nodes.NodeLease(id="dead", name="n", lease_s=10), nodes.NodeLease(id="live", name="n", lease_s=10)
    waiting = make_call("waiting")
    waiting.caller_resume = "cd" * 32
    async with db.session() as session, session.begin():
        for lease in (dead, live):
            await nodes.register(session, lease, 1000.0)
        columns, events = snapshot(waiting, dead, 0)
        session.add(CallRow(**columns))
        await session.flush()
        session.add_all(CallEventRow(**e) for e in events)
    async with db.session() as session, session.begin():
        await nodes.heartbeat(session, live, 1200.0)
        reaped = await nodes.reap(session, live, 1200.0, restore_within_s=120)  # last heard of 200 s ago
    assert [r["id"] for r in reaped.closed] == ["waiting"] and not reaped.restored
    await db.close()


async def test_records_are_committed_while_the_server_loop_is_blocked(tmp_path):
    """The writer has its own thread and loop: a server loop busy with media (here: blocked outright) does not
    hold the records back. The previous writer, a task on the server's loop, wrote nothing until the loop was free."""
    import time

    from gateway.store.records import CallRecorder, RecorderSettings

    url, db = await migrated(tmp_path)
    recorder = CallRecorder(db, "busy-node", RecorderSettings(lease_s=10, heartbeat_s=3))
    await recorder.start()
    call = make_call("busy")
    recorder.record(call)
    deadline = time.monotonic() + 10
    found = None
    with sqlite3.connect(tmp_path / "records.db") as check:
        while found is None and time.monotonic() < deadline:  # the event loop does not run in here
            found = check.execute("SELECT state FROM calls WHERE id = 'busy'").fetchone()
            time.sleep(0.02)
    assert found == ("queued",)
    await recorder.durable("busy")
    await recorder.stop()
    await db.close()


async def test_durable_waits_for_the_latest_snapshot_not_an_earlier_commit(tmp_path):
    """durable() after a change (a callback request) waits for *that* snapshot: an earlier commit of the same call
    does not count, and a database that cannot take it makes durable() fail (records_unavailable) rather than lie."""
    import pytest

    from gateway.store.records import CallRecorder, RecorderSettings, RecordsUnavailable

    url, db = await migrated(tmp_path)
    recorder = CallRecorder(db, "n", RecorderSettings(lease_s=10, heartbeat_s=3, durable_timeout_s=0.5))
    await recorder.start()
    call = make_call("promise")
    recorder.record(call)
    await recorder.durable("promise")  # the first insert
    lock = sqlite3.connect(tmp_path / "records.db", timeout=30)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        call.callback = True
        call.log("callback_requested")
        recorder.record(call)
        with pytest.raises(RecordsUnavailable) as refused:
            await recorder.durable("promise")
        assert refused.value.code == "records_unavailable" and refused.value.retryable
    finally:
        lock.rollback()
        lock.close()
    await recorder.durable("promise")  # written once the database is free again
    async with db.session() as session:
        assert (await session.get(CallRow, "promise")).callback is True
    await recorder.stop()
    await db.close()


async def _open_records(db: Database, node: nodes.NodeLease, calls: list[Call], at: float) -> None:
    async with db.session() as session, session.begin():
        await nodes.register(session, node, at)
        for call in calls:
            columns, events = snapshot(call, node, 0)
            session.add(CallRow(**columns))
            await session.flush()
            for event in events:
                session.add(CallEventRow(**event))


async def test_a_draining_node_hands_waiting_calls_over_and_another_node_restores_them_at_once(tmp_path):
    """hand_over moves the open records to an instance registered as stopped: another node's reap restores the
    waiting one in place (its resume hash kept) and the callback request, although the draining node's own lease is
    fresh; a record of a call that already ended, or one that is not named, stays where it is."""
    _, db = await migrated(tmp_path)
    a = nodes.NodeLease(id="a1", name="node-a", lease_s=600)
    b = nodes.NodeLease(id="b1", name="node-b", lease_s=600)
    waiting, callback, talking = make_call("w1"), make_call("cb1"), make_call("t1")
    waiting.caller_resume = "hash-w1"
    callback.callback = True
    await _open_records(db, a, [waiting, callback, talking], at=1000.0)
    async with db.session() as session, session.begin():
        handed = await nodes.hand_over(session, a, ["w1", "cb1", "nope"], at=1001.0)
    async with db.session() as session, session.begin():
        reaped = await nodes.reap(session, b, 1001.5, restore_within_s=120)
    assert reaped.nodes == [handed] and not reaped.closed
    assert {r.row["id"]: r.caller_resume for r in reaped.restored} == {"w1": "hash-w1", "cb1": None}
    assert [e["detail"] for e in reaped.restored[0].events if e["kind"] in ("restored", "callback_restored")] == [
        {"from_node": "node-a", "to_node": "node-b"}]
    async with db.session() as session:
        owner = await session.scalar(select(CallRow.node_id).where(CallRow.id == "t1"))
        a_reaped = await session.scalar(select(NodeRow.reaped_by).where(NodeRow.id == "a1"))
    assert owner == "a1" and a_reaped is None  # the connected call stays with the live, draining node
    await db.close()


async def test_a_node_named_dead_by_the_registry_is_reaped_whatever_its_lease(tmp_path):
    _, db = await migrated(tmp_path)
    a = nodes.NodeLease(id="a1", name="node-a", lease_s=600)
    b = nodes.NodeLease(id="b1", name="node-b", lease_s=600)
    waiting = make_call("w1")
    waiting.caller_resume = "hash-w1"
    await _open_records(db, a, [waiting], at=1000.0)
    async with db.session() as session, session.begin():
        assert not await nodes.reap(session, b, 1010.0, restore_within_s=120)  # its lease runs 600 s
    async with db.session() as session, session.begin():
        reaped = await nodes.reap(session, b, 1010.0, restore_within_s=120, dead=["a1"])
    assert reaped.nodes == ["a1"] and [r.row["id"] for r in reaped.restored] == ["w1"]
    await db.close()


async def test_a_resume_that_races_the_restore_is_asked_to_retry_not_refused(tmp_path):
    """A caller's resume reaches this node while its call has just been taken over (record ours and open, the session
    not in the live queue yet): retry in 1 s. A callback request has no session to resume: unknown."""
    from gateway.store.records import CallRecorder

    _, db = await migrated(tmp_path)
    recorder = CallRecorder(db, "node-b")
    waiting, callback = make_call("w1"), make_call("cb1")
    waiting.caller_resume, callback.caller_resume = "hash-w1", "hash-cb1"
    callback.callback = True
    await _open_records(db, recorder.lease, [waiting, callback], at=1000.0)
    assert await recorder.awaiting_restore("hash-w1") == 1.0
    assert await recorder.awaiting_restore("hash-cb1") is None
    assert await recorder.awaiting_restore("hash-other") is None
    await db.close()


async def test_a_node_reaped_while_it_still_runs_writes_nothing_more_and_is_told(tmp_path):
    """Node A is frozen long enough for the registry to name it dead: node B reaps it and restores A's waiting caller
    as its own. When A runs again, its writer must not overwrite that record with what A still holds in memory (here:
    the caller gone, the call ended): the write is refused inside its transaction, nothing of A's is written (not
    even "stopped"), the jobs handed over fail, and A is told once (the server then exits: signaling/fence.py)."""
    url, db = await migrated(tmp_path)
    a = nodes.NodeLease(id="a-frozen", name="node-a", lease_s=600)
    b = nodes.NodeLease(id="b-live", name="node-b", lease_s=600)
    waiting = make_call("w-fence")
    waiting.caller_resume = "ef" * 32
    fenced: list[str] = []
    told = threading.Event()

    def on_fenced(reason: str) -> None:
        fenced.append(reason)
        told.set()

    writer = RecordWriter(url, a, heartbeat_s=60, batch_max=500, on_committed=lambda c: None,
                          on_reaped=lambda r: None, on_fenced=on_fenced)
    await asyncio.wrap_future(writer.start())
    columns, events = snapshot(waiting, a, 0)
    writer.put(waiting.id, columns, events)
    await asyncio.sleep(0)
    async with db.session() as session, session.begin():  # B's registry named A dead: B takes its caller over
        await nodes.register(session, b, 1000.0)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with db.session() as session:
            if await session.get(CallRow, "w-fence") is not None:
                break
        assert asyncio.get_running_loop().time() < deadline, "A's first record was never written"
        await asyncio.sleep(0.05)
    async with db.session() as session, session.begin():
        reaped = await nodes.reap(session, b, 1010.0, restore_within_s=600, dead=[a.id])
    assert [r.row["id"] for r in reaped.restored] == ["w-fence"]

    waiting.log("caller_disconnected")  # what A does with its stale copy when it runs again
    columns, events = snapshot(waiting, a, 1)
    columns.update(state="ended", outcome="abandoned", end_reason="caller_disconnected", ended_at=1020.0)
    writer.put(waiting.id, columns, events)
    job = writer.submit(lambda session: asyncio.sleep(0, result="ran"))
    assert await asyncio.to_thread(told.wait, 10), "the writer did not notice that its node was reaped"
    assert len(fenced) == 1 and "reaped" in fenced[0]
    try:
        await asyncio.wait_for(asyncio.wrap_future(job), 10)
    except nodes.NodeFenced:
        pass
    else:
        raise AssertionError("a job of a fenced node ran")
    await asyncio.wait_for(asyncio.wrap_future(writer.stop()), 10)
    async with db.session() as session:
        row = await session.get(CallRow, "w-fence")
        kinds = (await session.scalars(select(CallEventRow.kind).where(CallEventRow.call_id == "w-fence")
                                       .order_by(CallEventRow.seq))).all()
        a_row = await session.get(NodeRow, a.id)
    assert row.node_id == b.id and row.ended_at is None and row.state == "queued"  # B's, untouched
    assert "caller_disconnected" not in kinds
    assert a_row.stopped_at is None and a_row.reaped_by == b.id


async def test_a_heartbeat_tells_a_reaped_node_and_costs_few_database_round_trips(tmp_path, monkeypatch):
    """The writer beats every heartbeat_s on every node, calls or not (the server's fixed cost): a beat with its reap
    is 12 round trips to the aiosqlite thread (2 transactions of one statement each). Before: 23 (a pre-ping
    SELECT 1 per transaction, which an SQLite file does not need, and the heartbeat as UPDATE then SELECT)."""
    import aiosqlite.core

    url, db = await migrated(tmp_path)
    me, other = nodes.NodeLease(id="me", name="n", lease_s=10), nodes.NodeLease(id="other", name="n", lease_s=10)
    async with db.session() as session, session.begin():
        await nodes.register(session, me, 1000.0)
        await nodes.register(session, other, 1000.0)
    async with db.session() as session, session.begin():
        assert await nodes.heartbeat(session, me, 1011.0)  # alive
        assert (await nodes.reap(session, me, 1011.0)).nodes == ["other"]
    async with db.session() as session, session.begin():
        assert not await nodes.heartbeat(session, other, 1012.0)  # late: reaped meanwhile
        assert await nodes.heartbeat(session, me, 1012.0)
    async with db.session() as session:
        assert (await session.get(NodeRow, "me")).heartbeat_at == 1012.0
    writer = RecordWriter(url, me, heartbeat_s=5, batch_max=500, on_committed=lambda c: None, on_reaped=lambda r: None)
    await writer._beat(db)  # the pool's connection opened
    trips = 0
    execute = aiosqlite.core.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        nonlocal trips
        trips += 1
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    await writer._beat(db)
    assert 0 < trips <= 12
    async with db.session() as session:
        assert (await session.get(NodeRow, "me")).heartbeat_at > 1012.0  # the beat renewed the lease
    await db.close()
