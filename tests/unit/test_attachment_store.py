"""The attachment store: quotas survive a restart (the disk index is rebuilt, the database answers sums), retention
deletes files, and the database backend keeps a file's bytes in chunks that any other store on the same database
reads back byte for byte (what every node of a cluster does). The database tests run on the embedded SQLite and on
the real PostgreSQL (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from sqlalchemy import text

from gateway.errors import NotFound
from gateway.store.attachments import (CHUNK_BYTES, AttachmentLimits, AttachmentStore, DatabaseAttachments,
                                       QuotaExceeded, StorageFull)
from gateway.store.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


LIMITS = AttachmentLimits(max_bytes=1000, per_call_bytes=10_000, per_call_count=100, per_owner_bytes=2500,
                          total_bytes=1 << 20, retention_s=3600)


async def test_quota_survives_restart_and_retention_frees_it(tmp_path):
    clock = Clock()
    store = AttachmentStore(tmp_path, LIMITS, clock)
    await store.open()
    first = await store.save("abc", "a.txt", b"a" * 1000, "caller", owner="|dana")
    clock.now += 1800
    await store.save("abd", "b.txt", b"b" * 1000, "caller", owner="|dana")
    await store.save("abd", "c.txt", b"c" * 1000, "alice")  # staff files do not count for the caller

    again = AttachmentStore(tmp_path, LIMITS, clock)  # a restart
    await again.open()
    assert not again.shared
    assert await again.usage(owner="|dana") == (2, 2000) and await again.usage() == (3, 3000)
    with pytest.raises(QuotaExceeded) as info:
        await again.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")
    assert info.value.code == "caller_quota_exceeded"
    found = await again.get("abc", first.id)
    assert again.local_path(found).read_bytes() == b"a" * 1000 and await again.read(found) == b"a" * 1000

    clock.now += 1800  # the first file is an hour old
    assert await again.sweep() == 1
    assert not (tmp_path / "abc").exists()  # the emptied folder goes too
    assert await again.usage(owner="|dana") == (1, 1000)
    await again.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")


class SlowToInsert(DatabaseAttachments):
    """The real backend with a pause between reading the budget and inserting: every racer is inside that window at
    once, so a check and insert that were not one step would let them all through."""

    @staticmethod
    async def _budget(session, call_id, owner):
        budget = await DatabaseAttachments._budget(session, call_id, owner)
        await asyncio.sleep(0.05)
        return budget


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    await database.upgrade()
    yield database
    await database.close()


def png(size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)


async def test_database_files_are_read_by_another_store_in_chunks(db, database_url):
    clock = Clock()
    limits = AttachmentLimits(max_bytes=6 * CHUNK_BYTES, per_call_bytes=8 * CHUNK_BYTES, per_call_count=100,
                              per_owner_bytes=8 * CHUNK_BYTES, total_bytes=1 << 30, retention_s=3600)
    node_a = AttachmentStore(DatabaseAttachments(db), limits, clock)
    await node_a.open()
    assert node_a.shared
    data = png(5 * CHUNK_BYTES + 12_345)  # six chunks, the last one short: two reads of CHUNKS_PER_READ
    saved = await node_a.save("c0ffee", "../../etc/receipt?.png", data, "alice")
    assert saved.mime == "image/png" and saved.size == len(data) and saved.sha256 == hashlib.sha256(data).hexdigest()
    assert saved.name == ".._.._etc_receipt_.png"  # cleaned as before

    other = Database(database_url)  # another node: its own engine on the same database, a store that saved nothing
    try:
        node_b = AttachmentStore(DatabaseAttachments(other), limits, clock)
        await node_b.open()
        found = await node_b.get("c0ffee", saved.id)
        assert found == saved
        assert node_b.local_path(found) is None
        pieces = [piece async for piece in node_b.chunks(found)]
        assert [len(p) for p in pieces] == [CHUNK_BYTES] * 5 + [12_345]
        assert b"".join(pieces) == data
        with pytest.raises(NotFound) as info:
            await node_b.get("c0ffe0", saved.id)  # another call's id: not this call's file
        assert info.value.code == "unknown_attachment"
        with pytest.raises(NotFound):
            await node_b.get("c0ffee", "0" * 16)
        with pytest.raises(NotFound) as info:
            await node_b.get("../etc", saved.id)
        assert info.value.code == "unknown_call"
    finally:
        await other.close()
    async with db.engine.connect() as conn:
        chunks = (await conn.execute(text("SELECT count(*) FROM attachment_chunks WHERE attachment_id = :id"),
                                     {"id": saved.id})).scalar()
    assert chunks == 6


async def test_database_quotas_are_one_budget_and_retention_deletes_rows(db):
    clock = Clock()
    store = AttachmentStore(DatabaseAttachments(db), LIMITS, clock)
    await store.open()
    first = await store.save("abc", "a.txt", b"a" * 1000, "caller", owner="|dana")
    clock.now += 1800
    await store.save("abd", "b.txt", b"b" * 1000, "caller", owner="|dana")
    await store.save("abd", "c.txt", b"c" * 1000, "alice")
    restarted = AttachmentStore(DatabaseAttachments(db), LIMITS, clock)  # what another node sees
    assert await restarted.usage(owner="|dana") == (2, 2000) and await restarted.usage() == (3, 3000)
    assert await restarted.usage(call_id="abd") == (2, 2000)
    with pytest.raises(QuotaExceeded) as info:
        await restarted.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")
    assert info.value.code == "caller_quota_exceeded"

    # Uploads racing for the last bytes of a call: the check and the insert are one step, so exactly the ones that
    # fit are kept. On PostgreSQL the racers are three stores with their own engines (three nodes: the advisory lock
    # orders them; without it the three would all take the last slot together); SQLite serves one node, whose
    # uploads its store orders.
    others = [Database(db.url), Database(db.url)] if db.dialect == "postgresql" else []
    try:
        stores = [AttachmentStore(SlowToInsert(database), LIMITS, clock) for database in [db, *others]]
        racing = await asyncio.gather(*[stores[i % len(stores)].save("abf", f"{i}.txt", b"x" * 1000, "alice")
                                        for i in range(13)], return_exceptions=True)
    finally:
        for database in others:
            await database.close()
    kept = [r for r in racing if not isinstance(r, BaseException)]
    refused = [r for r in racing if isinstance(r, QuotaExceeded) and r.code == "call_quota_exceeded"]
    assert (len(kept), len(refused)) == (10, 3), racing
    assert await restarted.usage(call_id="abf") == (10, 10_000)

    clock.now += 1800  # the first file is an hour old: unreadable at once, then deleted by the sweep
    with pytest.raises(NotFound):
        await restarted.get("abc", first.id)
    assert await restarted.sweep() == 1
    assert await store.usage(owner="|dana") == (1, 1000)
    async with db.engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM attachment_chunks WHERE attachment_id = :id"),
                                   {"id": first.id})).scalar()
    assert left == 0
    await store.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")


async def test_database_total_budget(db):
    limits = AttachmentLimits(max_bytes=1000, per_call_bytes=10_000, per_call_count=100, per_owner_bytes=10_000,
                              total_bytes=2500, retention_s=3600)
    store = AttachmentStore(DatabaseAttachments(db), limits)
    longest = "i" * 256 + "|" + "s" * 256  # a caller's identity at the longest a token may give (iss|sub)
    await store.save("abc", "a.txt", b"a" * 1000, "caller", owner=longest)
    assert await store.usage(owner=longest) == (1, 1000)
    await store.save("abd", "a.txt", b"a" * 1000, "bob")
    with pytest.raises(StorageFull) as info:
        await store.save("abe", "a.txt", b"a" * 1000, "carol")
    assert info.value.code == "storage_full" and info.value.status == 507
