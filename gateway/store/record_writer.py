"""The record writer: its own thread, its own event loop and its own database engine.

Media and signaling share the server's event loop; a busy loop must not delay records, and records must not
delay media. So the engine only *hands over* snapshots, through a thread-safe buffer keyed by call id: a call
that changes five times before the writer comes round is written once (its latest row), with every event-log
entry it gained meanwhile. Each round takes the whole buffer and writes it in batches, one transaction per batch
(an upsert of the call rows, then an insert of their events). A batch that fails goes back into the buffer
(behind nothing: newer snapshots win, older events first) and is retried with a backoff: records are not
dropped. Other writes that must keep their order with the snapshots (wrap-ups) are jobs run after the
snapshots taken before them.

The writer also keeps the node's lease: a heartbeat every `heartbeat_s`, and a reap of dead nodes each time
(gateway/store/nodes.py). reap_now() asks for a reap at once (a node stopped or went silent: its callers are on
their way), hold_reaps() stops reaping for good (this node drains: it takes nothing over). stop() drains
everything, marks the node stopped and closes the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ..errors import GatewayError
from . import nodes
from .db import Database
from .models import CallEventRow, CallRow

log = structlog.get_logger("callin.records.writer")

Job = Callable[[AsyncSession], Awaitable[Any]]
Committed = Callable[[list[tuple[str, int]]], None]  # (call id, generation) now durable; called in the writer thread
ReapedHook = Callable[[nodes.Reaped], None]  # called in the writer thread


@dataclass
class Pending:
    """The latest row of one call and the event-log entries not written yet."""

    columns: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    generation: int = 0  # of the latest snapshot: what a commit of this row makes durable


@functools.lru_cache(maxsize=16)
def upsert_calls(dialect: str, columns: tuple[str, ...]) -> Insert:
    """INSERT ... ON CONFLICT (id) DO UPDATE of the given columns (SQLite and PostgreSQL speak the same here).
    Built once per column set: building `excluded` walks every column, and a writer thread that spends its time in
    Python holds the GIL that the event loop (media included) needs after each socket call."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(CallRow.__table__)
    return statement.on_conflict_do_update(index_elements=["id"],
                                           set_={c: statement.excluded[c] for c in columns if c != "id"})


@functools.lru_cache(maxsize=4)
def insert_events(dialect: str) -> Insert:
    """Events are keyed by (call_id, seq): a batch retried after an unknown commit outcome adds nothing twice."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(CallEventRow.__table__).on_conflict_do_nothing(index_elements=["call_id", "seq"])


class RecordWriter:
    def __init__(self, url: str, node: nodes.NodeLease, *, heartbeat_s: float, batch_max: int,
                 on_committed: Committed, on_reaped: ReapedHook, restore_within_s: float = 0.0,
                 on_fenced: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.node = node
        self.heartbeat_s = heartbeat_s
        self.batch_max = batch_max
        self.on_committed = on_committed
        self.on_reaped = on_reaped
        self.on_fenced = on_fenced
        self.fenced: str | None = None  # why this node may not write any more (another node reaped it)
        self.restore_within_s = restore_within_s
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._jobs: deque[tuple[Job, concurrent.futures.Future[Any]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._woken = False
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._ready: concurrent.futures.Future[nodes.Reaped] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._retry_s = 0.05
        self._in_flight = 0
        self._reap_asked = False
        self._dead: set[str] = set()  # node instances named dead by the registry, for the next reap
        self._reaps_held = False
        self.batches = 0  # transactions committed (for metrics and the benchmark)
        self.rows = 0

    # ------------------------------------------------------------------ the engine's side (any thread)
    def put(self, call_id: str, columns: dict[str, Any], events: list[dict[str, Any]], generation: int = 0) -> None:
        with self._lock:
            pending = self._pending.get(call_id)
            if pending is None:
                self._pending[call_id] = Pending(columns, list(events), generation)
            else:
                pending.columns = columns
                pending.events.extend(events)
                pending.generation = generation
            wake = not self._woken
            self._woken = True
        if wake:
            self._poke()

    def submit(self, job: Job) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._jobs.append((job, future))
            self._woken = True
        self._poke()
        return future

    @property
    def backlog(self) -> int:
        """Snapshots and jobs handed over and not committed yet (those being written included)."""
        with self._lock:
            return len(self._pending) + len(self._jobs) + self._in_flight

    def start(self) -> concurrent.futures.Future[nodes.Reaped]:
        """Register the node, reap dead ones, then write. The future resolves once registered and reaped."""
        self._thread = threading.Thread(target=self._main, name=f"callin-records-{self.node.id}", daemon=True)
        self._thread.start()
        return self._ready

    def stop(self) -> concurrent.futures.Future[None]:
        """Write everything handed over so far, mark the node stopped, close the engine."""
        self._stopping = True
        self._poke()
        return self._done

    def reap_now(self, dead: Collection[str] = ()) -> None:
        """Reap before the next heartbeat is due; `dead`: node instances known dead whatever their lease says."""
        with self._lock:
            self._dead.update(dead)
            self._reap_asked = True
            self._woken = True
        self._poke()

    def hold_reaps(self) -> None:
        """Take no other node's calls over any more (this node is draining)."""
        self._reaps_held = True

    def abandon(self) -> None:
        """stop() took too long (the database is down): give up retrying and let the thread end."""
        self._abandon = True
        self._poke()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the writer's loop is closed: stopped already
                pass

    # ------------------------------------------------------------------ the writer thread
    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported through the futures
            log.exception("records.writer_crashed")
            if not self._ready.done():
                self._ready.set_exception(exc)
        finally:
            if not self._done.done():
                self._done.set_result(None)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()  # anything handed over before the loop existed
        db = Database(self.url)
        try:
            try:
                at = time.time()
                async with db.session() as session, session.begin():
                    await nodes.register(session, self.node, at)
                async with db.session() as session, session.begin():
                    reaped = await nodes.reap(session, self.node, at, legacy=True,
                                              restore_within_s=self.restore_within_s)
            except BaseException as exc:
                self._ready.set_exception(exc)
                return
            self._ready.set_result(reaped)
            next_beat = time.monotonic() + self.heartbeat_s
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                await self._drain(db)
                if self.fenced is None and time.monotonic() >= next_beat:
                    await self._beat(db)
                    next_beat = time.monotonic() + self.heartbeat_s
                elif self._reap_asked:
                    await self._reap(db, time.time())
                if self._abandon or (self._stopping and not self.backlog):
                    break
            lost = self.backlog
            if self.fenced is not None:
                pass  # nothing of this node's is its own any more: not even "stopped" is written
            elif lost:
                log.error("records.lost_at_stop", calls_and_jobs=lost)
            else:
                try:
                    async with db.session() as session, session.begin():
                        await nodes.stopped(session, self.node, time.time())
                except Exception:
                    log.exception("records.node_stop_failed")
        finally:
            await db.close()

    async def _beat(self, db: Database) -> None:
        at = time.time()
        try:
            async with db.session() as session, session.begin():
                alive = await nodes.heartbeat(session, self.node, at)
            if not alive:
                log.error("records.node_reaped_while_alive", node=self.node.id,
                          hint="the heartbeat was late past the lease (database or machine too slow?)")
                self._fence(f"node {self.node.name} ({self.node.id}) was reaped while it was silent", [], [])
                return
        except Exception:
            log.exception("records.heartbeat_failed")
            return
        await self._reap(db, at)

    async def _reap(self, db: Database, at: float) -> None:
        with self._lock:
            dead, self._dead = self._dead, set()
            self._reap_asked = False
        if self._reaps_held:
            return
        try:
            async with db.session() as session, session.begin():
                reaped = await nodes.reap(session, self.node, at, restore_within_s=self.restore_within_s, dead=dead)
            if reaped:
                log.warning("records.nodes_reaped", nodes=reaped.nodes, closed=len(reaped.closed),
                            callbacks=len(reaped.callbacks), waiting=len(reaped.waiting))
                self.on_reaped(reaped)
        except Exception:
            with self._lock:
                self._dead.update(dead)  # named again at the next reap
            log.exception("records.reap_failed")

    async def _drain(self, db: Database) -> None:
        """Write what was handed over so far, in batches. One pass: the caller loops (and keeps the heartbeat
        going between passes, however busy); a failed batch goes back into the buffer and is retried later."""
        with self._lock:
            taken, self._pending = self._pending, {}
            jobs = list(self._jobs)
            self._jobs.clear()
            self._woken = False
            self._in_flight = len(taken) + len(jobs)
        if not taken and not jobs:
            return
        try:
            await self._write_taken(db, taken, jobs)
        finally:
            with self._lock:
                self._in_flight = 0

    async def _write_taken(self, db: Database, taken: dict[str, Pending],
                           jobs: list[tuple[Job, concurrent.futures.Future[Any]]]) -> None:
        items = list(taken.items())
        for start in range(0, len(items), self.batch_max):
            batch = items[start:start + self.batch_max]
            try:
                await self._write(db, batch)
            except nodes.NodeFenced as exc:
                self._fence(str(exc), items[start:], jobs)
                return
            except Exception:
                log.exception("records.batch_failed", calls=len(items) - start, retry_in_s=self._retry_s)
                self._give_back(items[start:], jobs)
                await asyncio.sleep(self._retry_s)
                self._retry_s = min(self._retry_s * 2, 5.0)
                assert self._wake is not None
                self._wake.set()
                return
            self.on_committed([(call_id, pending.generation) for call_id, pending in batch])
        self._retry_s = 0.05
        for job, future in jobs:
            if self.fenced is not None:
                future.set_exception(nodes.NodeFenced(self.fenced))
                continue
            await self._run_job(db, job, future)

    def _fence(self, why: str, items: list[tuple[str, Pending]],
               jobs: list[tuple[Job, concurrent.futures.Future[Any]]]) -> None:
        """Another node reaped this one: nothing more is written (the records are that node's now); what was
        waiting is dropped, the jobs fail, and the node is told (it stops at once: signaling/fence.py)."""
        with self._lock:
            if self.fenced is None:
                self.fenced = why
                log.critical("records.fenced", node=self.node.id, reason=why, unwritten=len(items) + len(self._pending))
            self._pending.clear()
            self._in_flight = 0
            jobs = jobs + list(self._jobs)
            self._jobs.clear()
        for _, future in jobs:
            if not future.done():
                future.set_exception(nodes.NodeFenced(why))
        self._abandon = True
        if self.on_fenced is not None:
            self.on_fenced(why)

    def _give_back(self, items: list[tuple[str, Pending]], jobs: list[tuple[Job, concurrent.futures.Future[Any]]]) -> None:
        with self._lock:
            self._in_flight = 0
            for call_id, old in items:
                newer = self._pending.get(call_id)
                if newer is None:
                    self._pending[call_id] = old
                else:
                    newer.events[:0] = old.events
            self._jobs.extendleft(reversed(jobs))

    async def _write(self, db: Database, batch: list[tuple[str, Pending]]) -> None:
        rows = [pending.columns for _, pending in batch]
        events = [event for _, pending in batch for event in pending.events]
        async with db.session() as session, session.begin():
            await nodes.fence(session, self.node, db.dialect)
            await session.execute(upsert_calls(db.dialect, tuple(rows[0])), rows)
            if events:
                await session.execute(insert_events(db.dialect), events)
        self.batches += 1
        self.rows += len(rows)

    async def _run_job(self, db: Database, job: Job, future: concurrent.futures.Future[Any]) -> None:
        for attempt in range(1, 4):
            try:
                async with db.session() as session, session.begin():
                    await nodes.fence(session, self.node, db.dialect)
                    result = await job(session)
            except nodes.NodeFenced as exc:
                self._fence(str(exc), [], [(job, future)])
                return
            except GatewayError as exc:
                future.set_exception(exc)
                return
            except Exception as exc:
                if attempt == 3:
                    log.exception("records.job_failed")
                    future.set_exception(exc)
                    return
                await asyncio.sleep(0.2 * attempt)
            else:
                future.set_result(result)
                return
