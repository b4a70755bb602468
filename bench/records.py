"""Call-record throughput: the record writer against the old per-snapshot writer, on SQLite and PostgreSQL.

    python -m bench.records --calls 2000 --changes 4
    python -m bench.records --calls 2000 --databases sqlite     # without a PostgreSQL

N calls are placed and each changes `changes` times (queued, then notes in its event log), as fast as the engine
emits them. Two writers take the same snapshots, each on a fresh database:

- baseline: the previous CallRecorder's algorithm (one asyncio queue on the server's loop, one ORM transaction
  per snapshot), reimplemented here so that both are measured in the same run;
- writer: gateway.store.record_writer.RecordWriter (own thread, loop and engine; coalesced per call; batches).

Printed per database: seconds until every call's last snapshot is committed, calls per second, and the ratio
writer / baseline (higher is better), plus the longest stall of the emitting loop while the writer works (a
ticker on the emitting loop measures how late it runs). PostgreSQL is reached as the tests reach it
(CALLIN_TEST_PG_HOST, default /var/run/postgresql, user postgres); a throwaway database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from gateway.calls import Call  # noqa: E402
from gateway.models import CallContext, CallerIdentity, CallType  # noqa: E402
from gateway.store import nodes  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.store.models import CallEventRow, CallRow  # noqa: E402
from gateway.store.record_writer import RecordWriter  # noqa: E402
from gateway.store.records import call_columns  # noqa: E402


def snapshots(calls: int, changes: int) -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(call id, row, new events) in the order the engine would emit them: calls interleaved."""
    out: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
    live = [Call(id=secrets.token_hex(8), identity=CallerIdentity(subject=f"bench-{i}", expires_at=2_000_000_000),
                 call_type=CallType.VOICE, location=None, context=CallContext(), caller_session="s")
            for i in range(calls)]
    written = {c.id: 0 for c in live}
    for change in range(changes):
        for call in live:
            if change:
                call.log("note", change=change)
            start = written[call.id]
            events = [{"call_id": call.id, "seq": seq, "at": e.at, "kind": e.kind, "detail": e.detail}
                      for seq, e in enumerate(call.events[start:], start=start)]
            written[call.id] = len(call.events)
            out.append((call.id, {**call_columns(call, "bench"), "node_id": "bench"}, events))
    return out


class Stall:
    """How late a 10 ms ticker on the emitting loop runs (the media loop's view of the records work)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - before - 0.01)

    def __enter__(self) -> "Stall":
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def baseline(url: str, items: list[tuple[str, dict[str, Any], list[dict[str, Any]]]]) -> tuple[float, float]:
    """The previous recorder: one queue on this loop, one ORM transaction per snapshot."""
    db = Database(url)
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def run() -> None:
        while (item := await queue.get()) is not None:
            call_id, columns, events = item
            async with db.session() as session, session.begin():
                row = await session.get(CallRow, call_id)
                if row is None:
                    session.add(CallRow(**columns))
                else:
                    for key, value in columns.items():
                        setattr(row, key, value)
                await session.flush()
                for event in events:
                    session.add(CallEventRow(**event))

    with Stall() as stall:
        started = time.perf_counter()
        task = asyncio.ensure_future(run())
        for item in items:
            queue.put_nowait(item)
        queue.put_nowait(None)
        await task
        elapsed = time.perf_counter() - started
    await db.close()
    return elapsed, stall.worst


async def writer(url: str, items: list[tuple[str, dict[str, Any], list[dict[str, Any]]]],
                 batch_max: int) -> tuple[float, float, int]:
    """The record writer: snapshots handed over as the engine emits them; stop() returns once all are committed."""
    lease = nodes.NodeLease(id=secrets.token_hex(8), name="bench", lease_s=60)
    records = RecordWriter(url, lease, heartbeat_s=20, batch_max=batch_max, on_committed=lambda ids: None,
                           on_reaped=lambda r: None)
    await asyncio.wrap_future(records.start())
    with Stall() as stall:
        started = time.perf_counter()
        for index, (call_id, columns, events) in enumerate(items):
            records.put(call_id, columns, events)
            if index % 200 == 0:
                await asyncio.sleep(0)  # the engine yields to the loop between events
        await asyncio.wrap_future(records.stop())
        elapsed = time.perf_counter() - started
    return elapsed, stall.worst, records.batches


async def check(url: str, calls: int, changes: int) -> None:
    db = Database(url)
    async with db.session() as session:
        rows = len((await session.scalars(select(CallRow.id))).all())
        events = len((await session.scalars(select(CallEventRow.id))).all())
    await db.close()
    assert rows == calls and events == calls * changes, (rows, events)


async def fresh(kind: str, tmp: Path, label: str) -> tuple[str, Any]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / (label + '.db')}"
        cleanup = None
    else:
        from tests.support.databases import create_pg_database, drop_pg_database, pg_url

        name = await asyncio.to_thread(create_pg_database)
        url = pg_url(name)

        def cleanup() -> None:
            drop_pg_database(name)
    db = Database(url)
    await db.upgrade()
    await db.close()
    return url, cleanup


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=4, help="snapshots per call (the first is the insert)")
    parser.add_argument("--batch-max", type=int, default=500)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    items = snapshots(args.calls, args.changes)
    print(f"{args.calls} calls x {args.changes} snapshots = {len(items)} snapshots")
    print(f"{'database':<11} {'writer':<9} {'seconds':>8} {'calls/s':>9} {'loop stall ms':>14} {'batches':>8}  ratio")
    with tempfile.TemporaryDirectory(prefix="callin-bench-records-") as tmp:
        for kind in args.databases.split(","):
            url, cleanup = await fresh(kind, Path(tmp), "baseline")
            try:
                base_s, base_stall = await baseline(url, items)
                await check(url, args.calls, args.changes)
            finally:
                if cleanup:
                    await asyncio.to_thread(cleanup)
            print(f"{kind:<11} {'baseline':<9} {base_s:8.2f} {args.calls / base_s:9.0f} {base_stall * 1000:14.1f}"
                  f" {len(items):8d}  1.00")
            url, cleanup = await fresh(kind, Path(tmp), "writer")
            try:
                new_s, new_stall, batches = await writer(url, items, args.batch_max)
                await check(url, args.calls, args.changes)
            finally:
                if cleanup:
                    await asyncio.to_thread(cleanup)
            print(f"{kind:<11} {'writer':<9} {new_s:8.2f} {args.calls / new_s:9.0f} {new_stall * 1000:14.1f}"
                  f" {batches:8d}  {base_s / new_s:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
