"""Durable call records, written as the call happens.

The CallRecorder subscribes to the Switchboard's events and hands each change to the RecordWriter (its own
thread, event loop and engine; coalesced per call, written in batches): a row per call (identity snapshot,
location, context, queue, agents, timestamps, outcome, wrap-up) and its ordered event log. A new call's first
row is committed before the caller is told it is queued (durable()). A call left open by a node that crashed
is closed as "interrupted" by the first live node that sees the node's lease run out (gateway/store/nodes.py);
a callback request is restored into the live queue instead. CallQueries reads them back for the REST API
(filters, cursor pagination, stats).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..calls import Call
from ..errors import BadRequest, Forbidden, InvalidState, NotFound, Unavailable
from ..models import CallContext, CallerIdentity, CallEvent, CallState, CallType, EndReason, Location, now
from .db import Database
from .models import CallEventRow, CallRow, NodeRow
from .nodes import NodeLease, Reaped, hand_over, public_record
from .record_writer import Job, RecordWriter

log = structlog.get_logger("callin.records")


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # the caller left while queued; it never rang
    MISSED = "missed"  # it rang (ring timeout / agent gone) but nobody answered before the caller left
    DECLINED = "declined"  # an agent declined it and nobody answered before the caller left
    FAILED = "failed"  # media failure, queue full, records unavailable, shutdown before an answer
    AFTER_HOURS = "after_hours"  # placed outside business hours and not answered (see `message` for one left)
    MESSAGE_LEFT = "message_left"  # the caller left a message instead of waiting (unstaffed queue, max wait)
    CALLBACK_EXPIRED = "callback_expired"  # an agent took the callback but the caller did not rejoin in time
    INTERRUPTED = "interrupted"  # the gateway stopped without closing it (crash); closed on the next start
    REPLACED = "replaced"  # the same caller started a new call while this one waited; the new one took its place


def outcome_of(call: Call) -> Outcome | None:
    if call.state is not CallState.ENDED:
        return None
    if call.end_reason is EndReason.MEDIA_FAILED:
        return Outcome.FAILED
    if call.end_reason is EndReason.CALLBACK_EXPIRED:
        return Outcome.CALLBACK_EXPIRED
    if call.answered_at is not None:
        return Outcome.ANSWERED
    if call.end_reason in (EndReason.SHUTDOWN, EndReason.QUEUE_FULL, EndReason.RECORDS_UNAVAILABLE):
        return Outcome.FAILED
    if call.end_reason is EndReason.REPLACED:
        return Outcome.REPLACED
    if call.closed_reason == "after_hours":
        return Outcome.AFTER_HOURS
    if call.message is not None:
        return Outcome.MESSAGE_LEFT
    requeued = [e.detail.get("reason") for e in call.events if e.kind == CallState.QUEUED.value]
    if "declined" in requeued:
        return Outcome.DECLINED
    if any(e.kind == CallState.OFFERED.value for e in call.events):
        return Outcome.MISSED
    return Outcome.ABANDONED


def call_columns(call: Call, node: str | None = None) -> dict[str, Any]:
    """The record row of a call as it is now (a snapshot: the Call keeps changing)."""
    offered = [e for e in call.events if e.kind == CallState.OFFERED.value]
    agents: list[str] = []
    for name in [e.detail.get("agent") for e in offered] + [call.agent]:
        if name and name not in agents:
            agents.append(name)
    outcome = outcome_of(call)
    wait = None
    if call.answered_at is not None:
        wait = call.answered_at - call.created_at
    elif call.ended_at is not None:
        wait = call.ended_at - call.created_at
    talk = call.ended_at - call.answered_at if call.answered_at is not None and call.ended_at is not None else None
    return {
        "id": call.id,
        "subject": call.identity.subject,
        "identity": call.identity.model_dump(mode="json"),
        "location": call.location.model_dump(mode="json") if call.location else None,
        "context": call.context.model_dump(mode="json"),
        "call_type": call.call_type.value,
        "queue": call.queue,
        "state": call.state.value,
        "agent": call.agent,
        "agents": agents,
        "created_at": call.created_at,
        "queued_at": call.created_at,
        "offered_at": offered[0].at if offered else None,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "wait_s": wait,
        "talk_s": talk,
        "outcome": outcome.value if outcome else None,
        "end_reason": call.end_reason.value if call.end_reason else None,
        "hangup_side": call.ended_by,
        "node": node,
        "priority": call.priority,
        "closed_reason": call.closed_reason,
        "callback": call.callback,
        "callback_phone": call.callback_phone,
        "callback_ready_at": call.callback_ready_at,
        "rejoined_at": call.rejoined_at,
        "message": call.message,
        "caller_resume": call.caller_resume if call.state is not CallState.ENDED else None,
        "recording": call.recording.state.value if call.recording is not None else None,
        "recording_paused": call.recording.paused_spans() if call.recording is not None else None,
    }


class EventSource(Protocol):
    def on(self, event: str, f: Callable[..., Any]) -> Any: ...

    def restore_callback(self, call: Call) -> None: ...

    def restore_waiting(self, call: Call, caller_resume: str) -> None: ...

    def restore_rejoin(self, call: Call, caller_resume: str) -> None: ...


class RecordsUnavailable(Unavailable):
    code = "records_unavailable"


@dataclass(frozen=True)
class RecorderSettings:
    lease_s: float = 15.0  # a node that misses its heartbeat this long is taken for dead
    heartbeat_s: float = 5.0
    batch_max: int = 500  # call rows per transaction
    durable_timeout_s: float = 10.0  # how long a new call waits for its first record
    stop_timeout_s: float = 60.0  # how long stop() waits for the backlog to be written
    restore_within_s: float = 120.0  # waiting calls of a node last heard of this recently are restored, not closed


class CallRecorder:
    """Hands call snapshots to the RecordWriter (own thread, loop and engine) and keeps the node's lease.

    record() runs in the engine's event handlers and never waits; durable(call_id) is the promise that a call's
    first record is committed (the caller is told "queued" only then). A call interrupted by a crash (of this
    node or any other, by node lease, not by name) is closed as "interrupted" and reported to the listeners of
    on_interrupted (the call.ended webhook); a pending callback request is put back in the live queue instead.
    """

    def __init__(self, db: Database, node: str, settings: RecorderSettings | None = None) -> None:
        self.db = db
        self.node = node
        self.settings = settings or RecorderSettings()
        self.lease = NodeLease(id=secrets.token_hex(8), name=node, lease_s=self.settings.lease_s)
        self._written: dict[str, int] = {}
        self._handed: dict[str, int] = {}  # call id -> generation of its latest snapshot not known to be committed
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._writer: RecordWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._board: EventSource | None = None
        self._interrupted_listeners: list[Callable[[dict[str, Any]], None]] = []
        self._fenced_listeners: list[Callable[[str], None]] = []
        self._interrupted: list[dict[str, Any]] = []  # closed before anyone listened (at start)
        self._restored: list[tuple[Call, str | None]] = []  # read back before the switchboard existed (at start)
        self._rejoins: list[tuple[Call, str]] = []  # callers of interrupted calls, to wait again at the front

    # -- lifecycle
    async def start(self) -> int:
        """Register this node, close the records of dead nodes, then start writing. Returns how many were closed."""
        self._loop = asyncio.get_running_loop()
        writer = RecordWriter(self.db.url, self.lease, heartbeat_s=self.settings.heartbeat_s,
                              batch_max=self.settings.batch_max, restore_within_s=self.settings.restore_within_s,
                              on_committed=self._committed_threadsafe,
                              on_reaped=self._reaped_threadsafe, on_fenced=self._fenced)
        reaped = await asyncio.wrap_future(writer.start())
        self._writer = writer
        self._reaped(reaped)
        return len(reaped.closed)

    async def stop(self) -> None:
        """Write everything handed over so far, then stop (the node is marked stopped)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        done = writer.stop()
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), self.settings.stop_timeout_s)
        except asyncio.TimeoutError:
            log.error("records.stop_timeout", pending=writer.backlog)
            writer.abandon()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.wrap_future(done), 5)
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(RecordsUnavailable("the gateway is stopping", code="records_unavailable"))
        self._waiters.clear()

    def attach(self, board: EventSource) -> None:
        for name in ("call.queued", "call.answered", "call.ended", "call.updated", "call.callback_ready"):
            board.on(name, self.record)
        board.on("call.offered", lambda call, _agent: self.record(call))
        board.on("call.withdrawn", lambda call, _agent, _reason: self.record(call))
        self._board = board
        self._restore()

    def on_interrupted(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """listener(record) for every call closed as interrupted (those closed at start are replayed now)."""
        self._interrupted_listeners.append(listener)
        replay, self._interrupted = self._interrupted, []
        for record in replay:
            listener(record)

    @property
    def backlog(self) -> int:
        return self._writer.backlog if self._writer is not None else 0

    # -- writing
    def record(self, call: Call) -> None:
        """Snapshot the call now (synchronously, in the engine's event handler) and hand it to the writer."""
        columns = call_columns(call, self.node)
        columns["node_id"] = self.lease.id
        start = self._written.get(call.id, 0)
        events = [{"call_id": call.id, "seq": seq, "at": event.at, "kind": event.kind,
                   "detail": _jsonable(event.detail)}
                  for seq, event in enumerate(call.events[start:], start=start)]
        self._written[call.id] = start + len(events)
        if call.state is CallState.ENDED:
            self._written.pop(call.id, None)
        if self._writer is None:
            log.error("records.not_started", call_id=call.id)
            return
        generation = self._handed.get(call.id, 0) + 1
        self._handed[call.id] = generation
        self._writer.put(call.id, columns, events, generation)

    async def durable(self, call_id: str) -> None:
        """Wait until the call's record, as last handed to the writer, is committed (a new call: before the caller
        is told "queued"; a callback request: before it is confirmed). RecordsUnavailable after durable_timeout_s."""
        target = self._handed.get(call_id)
        if target is None or self._loop is None:
            return  # nothing outstanding
        future: asyncio.Future[None] = self._loop.create_future()
        entry = (target, future)
        self._waiters.setdefault(call_id, []).append(entry)
        try:
            await asyncio.wait_for(future, self.settings.durable_timeout_s)
        except asyncio.TimeoutError:
            raise RecordsUnavailable("the call could not be recorded in time; please try again shortly",
                                     code="records_unavailable") from None
        finally:
            waiters = self._waiters.get(call_id)
            if waiters is not None and entry in waiters:
                waiters.remove(entry)
                if not waiters:
                    del self._waiters[call_id]

    def _committed_threadsafe(self, committed: list[tuple[str, int]]) -> None:
        self._threadsafe(self._committed, committed)

    def _committed(self, committed: list[tuple[str, int]]) -> None:
        for call_id, generation in committed:
            if self._handed.get(call_id, 0) <= generation:
                self._handed.pop(call_id, None)
            for target, future in self._waiters.get(call_id, ()):
                if target <= generation and not future.done():
                    future.set_result(None)

    def on_fenced(self, listener: Callable[[str], None]) -> None:
        """listener(reason), called in the writer's thread, when another node has reaped this one while it was
        still running (frozen or cut off): nothing more is written (gateway/store/nodes.py `fence`)."""
        self._fenced_listeners.append(listener)

    def _fenced(self, reason: str) -> None:
        for listener in list(self._fenced_listeners):
            listener(reason)

    def _reaped_threadsafe(self, reaped: Reaped) -> None:
        self._threadsafe(self._reaped, reaped)

    def _threadsafe(self, f: Callable[[Any], None], arg: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the server's loop is closed: nothing waits any more
            loop.call_soon_threadsafe(f, arg)

    def _reaped(self, reaped: Reaped) -> None:
        if reaped.closed:
            log.warning("records.interrupted_calls_closed", count=len(reaped.closed),
                        calls=[r["id"] for r in reaped.closed][:100])
        for record in reaped.closed:
            if self._interrupted_listeners:
                for listener in self._interrupted_listeners:
                    listener(record)
            else:
                self._interrupted.append(record)
        for restored in reaped.restored:
            try:
                call = call_from_record(restored.row, restored.events)
            except ValueError:  # a record this version cannot read back: it stays open, claimed by this node
                log.exception("records.restore_unreadable", call_id=restored.row.get("id"))
                continue
            self._written[call.id] = len(call.events)
            log.warning("records.callback_restored" if call.callback else "records.waiting_restored",
                        call_id=call.id, queue=call.queue)
            self._restored.append((call, restored.caller_resume))
        for rejoin in reaped.rejoins:
            if rejoin.caller_resume is None:
                continue
            try:
                call = rejoin_call(rejoin.row)
            except ValueError:
                log.exception("records.rejoin_unreadable", call_id=rejoin.row.get("id"))
                continue
            log.warning("records.rejoin_front", call_id=call.id, interrupted=call.rejoin_of, queue=call.queue)
            self._rejoins.append((call, rejoin.caller_resume))
        self._restore()

    def _restore(self) -> None:
        """Hand the restored calls to the switchboard, oldest first (once it is attached)."""
        if self._board is None:
            return
        restored, self._restored = self._restored, []
        for call, caller_resume in sorted(restored, key=lambda item: item[0].created_at):
            if caller_resume is None:
                self._board.restore_callback(call)
            else:
                self._board.restore_waiting(call, caller_resume)
        rejoins, self._rejoins = self._rejoins, []
        for call, caller_resume in sorted(rejoins, key=lambda item: item[0].arrived_at or 0.0):
            self._board.restore_rejoin(call, caller_resume)

    async def submit(self, job: Job) -> Any:
        """Run a write in order with the snapshots handed over before it, and wait for its result."""
        if self._writer is None:
            async with self.db.session() as session, session.begin():
                return await job(session)
        return await asyncio.wrap_future(self._writer.submit(job))

    def reap_now(self, dead: Collection[str] = ()) -> None:
        """Take over what stopped or dead nodes left (their callers are on their way) now, not at the next
        heartbeat; `dead`: node instances the registry found silent, whatever their database lease says."""
        if self._writer is not None:
            self._writer.reap_now(dead)

    def hold_reaps(self) -> None:
        """This node drains: it takes nothing over from other nodes any more."""
        if self._writer is not None:
            self._writer.hold_reaps()

    async def hand_over(self, call_ids: Collection[str]) -> str:
        """This node drains: its open records `call_ids` (waiting calls, callback requests; their last snapshots
        are written first) go to a stopped instance that any other node reaps and restores. This node reaps no
        more (it would take them back). Returns the instance id the records moved to."""
        if self._writer is not None:
            self._writer.hold_reaps()
        ids = list(call_ids)
        for call_id in ids:
            self._written.pop(call_id, None)
            self._handed.pop(call_id, None)

        async def job(session: AsyncSession) -> str:
            return await hand_over(session, self.lease, ids, time.time())

        return await self.submit(job)

    async def awaiting_restore(self, caller_resume: str) -> float | None:
        """A resume token this node does not know, of a caller whose call is still open on a node that stopped or
        crashed but has not been taken over yet: in how many seconds it will be (its lease runs out, then this node
        or another restores it). None: no such call (the token is unknown for good)."""
        async def job(session: AsyncSession) -> float | None:
            row = (await session.execute(
                select(NodeRow.heartbeat_at, NodeRow.lease_s, NodeRow.stopped_at)
                .join(CallRow, CallRow.node_id == NodeRow.id)
                .where(CallRow.caller_resume == caller_resume, CallRow.ended_at.is_(None),
                       NodeRow.reaped_by.is_(None), NodeRow.id != self.lease.id))).first()
            if row is None:
                # Taken over by this node a moment ago, on its way into the live queue: ask again in a second.
                mine = await session.scalar(select(CallRow.id).where(
                    CallRow.caller_resume == caller_resume, CallRow.ended_at.is_(None), CallRow.callback.is_(False),
                    CallRow.node_id == self.lease.id).limit(1))
                return 1.0 if mine is not None else None
            heartbeat_at, lease_s, stopped_at = row
            if stopped_at is not None:  # stopped or handed over: taken over now, not at the next heartbeat
                self.reap_now()
                return 1.0
            due = heartbeat_at + lease_s + self.settings.heartbeat_s
            return max(1.0, due - time.time())

        return await self.submit(job)

    async def wrap_up(self, call_id: str, username: str, disposition: str | None, notes: str | None) -> CallRow:
        async def job(session: AsyncSession) -> CallRow:
            row = await session.get(CallRow, call_id)
            if row is None:
                raise NotFound(f"no call {call_id}", code="unknown_call")
            if row.agent != username:
                raise Forbidden("only the agent who took the call can wrap it up", code="not_your_call")
            if row.ended_at is None:
                raise InvalidState("wrap-up comes after the call has ended", code="call_not_ended")
            row.disposition = disposition
            row.notes = notes
            row.wrapped_up_at = now()
            row.wrapped_up_by = username
            seq = await session.scalar(select(func.max(CallEventRow.seq)).where(CallEventRow.call_id == call_id))
            session.add(CallEventRow(call_id=call_id, seq=(seq if seq is not None else -1) + 1,
                                     at=row.wrapped_up_at, kind="wrap_up",
                                     detail={"by": username, "disposition": disposition, "notes_length": len(notes or "")}))
            return row

        return await self.submit(job)

    async def message_handled(self, call_id: str, username: str, notes: str | None) -> CallRow:
        """An agent dealt with a message a caller left (the console's inbox): recorded as the call's wrap-up by that
        agent (disposition message_handled), once."""
        async def job(session: AsyncSession) -> CallRow:
            row = await session.get(CallRow, call_id)
            if row is None or row.message is None or row.ended_at is None:
                raise NotFound(f"no message left with call {call_id}", code="unknown_message")
            if row.wrapped_up_at is not None:
                raise InvalidState(f"{row.wrapped_up_by or 'someone'} has handled this message already",
                                   code="message_handled")
            row.disposition = "message_handled"
            row.notes = notes
            row.wrapped_up_at = now()
            row.wrapped_up_by = username
            seq = await session.scalar(select(func.max(CallEventRow.seq)).where(CallEventRow.call_id == call_id))
            session.add(CallEventRow(call_id=call_id, seq=(seq if seq is not None else -1) + 1,
                                     at=row.wrapped_up_at, kind="message_handled",
                                     detail={"by": username, "notes_length": len(notes or "")}))
            return row

        return await self.submit(job)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class CallFilter:
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    agent: str | None = None
    queue: str | None = None
    subject: str | None = None


def encode_cursor(created_at: float, call_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{call_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, call_id = raw.partition("|")
        value = float(created)
        if not call_id or not math.isfinite(value):
            raise ValueError
        return value, call_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the cursor is not valid; use next_cursor from the previous page", code="invalid_cursor") from None


def row_dict(row: CallRow) -> dict[str, Any]:
    return public_record(row)


def _caller_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a call read back from its record keeps of its caller and request (no caller session yet)."""
    return {
        "id": row["id"],
        "identity": CallerIdentity.model_validate(row["identity"]),
        "call_type": CallType(row["call_type"]),
        "location": Location.model_validate(row["location"]) if row["location"] else None,
        "context": CallContext.model_validate(row["context"]),
        "caller_session": "",
        "priority": row["priority"],
        "queue": row["queue"],
        "created_at": row["created_at"],
    }


def call_from_record(row: dict[str, Any], events: list[dict[str, Any]]) -> Call:
    """A callback request or a waiting call read back from its record, waiting again (a callback has no caller
    session: the caller rejoins; a waiting call gets a restored one: Switchboard.restore_waiting)."""
    call = Call(
        **_caller_fields(row),
        closed_reason=row["closed_reason"],
        callback=bool(row["callback"]),
        callback_phone=row["callback_phone"],
        callback_offered=bool(row["callback"]),
    )
    call.events = [CallEvent(at=e["at"], kind=e["kind"], detail=e["detail"] or {}) for e in events]
    return call


REJOIN_AHEAD_S = 1e9  # a rejoining caller's place counts from this long before its cut-off call arrived (the front)


def rejoin_call(row: dict[str, Any]) -> Call:
    """The new waiting call (its record claimed by the reap) for the caller of a connected call closed as interrupted
    (`rejoin_of`: its node died): same caller, queue, priority, type and context; at the front of the line
    (Switchboard.restore_rejoin)."""
    return Call(
        **_caller_fields(row),
        arrived_at=row["first_arrived"] - REJOIN_AHEAD_S,
        rejoin_of=row["rejoin_of"],
    )


def event_dict(row: CallEventRow) -> dict[str, Any]:
    return {"seq": row.seq, "at": row.at, "kind": row.kind, "detail": row.detail}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[index]


HANDLING_EVENTS = ("connected", "consult_joined")


def handled_by(record: dict[str, Any]) -> set[str]:
    """The agents who handled a call (were connected to it, took part in a warm transfer or wrapped it up), from a
    record with its events. An agent the call only rang at is not among them."""
    names = {record.get("agent"), record.get("wrapped_up_by")}
    names.update(e["detail"].get("agent") for e in record.get("events", []) if e["kind"] in HANDLING_EVENTS)
    return {name for name in names if isinstance(name, str) and name}


class CallQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, where: CallFilter, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        conditions = self._conditions(where)
        if cursor:
            created, call_id = decode_cursor(cursor)
            conditions.append(or_(CallRow.created_at < created,
                                  and_(CallRow.created_at == created, CallRow.id < call_id)))
        query = (select(CallRow).where(*conditions).order_by(CallRow.created_at.desc(), CallRow.id.desc())
                 .limit(limit + 1))
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
        return [row_dict(r) for r in rows], next_cursor

    async def get(self, call_id: str) -> dict[str, Any]:
        async with self.db.session() as session:
            row = await session.get(CallRow, call_id)
            if row is None:
                raise NotFound(f"no call {call_id}", code="unknown_call")
            events = (await session.scalars(
                select(CallEventRow).where(CallEventRow.call_id == call_id).order_by(CallEventRow.seq))).all()
        return {**row_dict(row), "events": [event_dict(e) for e in events]}

    async def open_messages(self, queues: set[str] | None, limit: int) -> list[dict[str, Any]]:
        """Messages callers left that nobody has handled yet, newest first (queues: only these; None: all)."""
        conditions = [CallRow.message.is_not(None), CallRow.wrapped_up_at.is_(None), CallRow.ended_at.is_not(None)]
        if queues is not None:
            conditions.append(CallRow.queue.in_(sorted(queues)))
        query = select(CallRow).where(*conditions).order_by(CallRow.created_at.desc(), CallRow.id.desc()).limit(limit)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [row_dict(r) for r in rows]

    async def open_callbacks(self, queues: set[str] | None, limit: int) -> list[dict[str, Any]]:
        """Callback requests still waiting for an agent, on any node (or left by a node that died), oldest first
        (queues: only these; None: all). Records are written behind the calls: a request made a moment ago on
        another node may not be here yet."""
        conditions = [CallRow.callback.is_(True), CallRow.ended_at.is_(None), CallRow.callback_ready_at.is_(None),
                      CallRow.state.in_([CallState.QUEUED.value, CallState.OFFERED.value])]
        if queues is not None:
            conditions.append(CallRow.queue.in_(sorted(queues)))
        query = select(CallRow).where(*conditions).order_by(CallRow.created_at, CallRow.id).limit(limit)
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [row_dict(r) for r in rows]

    async def contact_history(self, subject: str, issuer: str | None, exclude: str, limit: int) -> list[dict[str, Any]]:
        """The earlier calls of one signed caller (subject and issuer), newest first, without `exclude`."""
        query = (select(CallRow).where(CallRow.subject == subject, CallRow.id != exclude)
                 .order_by(CallRow.created_at.desc(), CallRow.id.desc()).limit(limit * 4))
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        same = [r for r in rows if (r.identity or {}).get("issuer") == issuer]
        return [row_dict(r) for r in same[:limit]]

    async def stats(self, since: float | None, until: float | None) -> dict[str, Any]:
        conditions = self._conditions(CallFilter(since=since, until=until))
        query = select(CallRow.outcome, CallRow.wait_s, CallRow.talk_s).where(*conditions, CallRow.ended_at.is_not(None))
        async with self.db.session() as session:
            rows = (await session.execute(query)).all()
        total = len(rows)
        answered = [r for r in rows if r.outcome == Outcome.ANSWERED.value]
        abandoned = [r for r in rows if r.outcome == Outcome.ABANDONED.value]
        waits = [r.wait_s for r in rows if r.wait_s is not None]
        talks = [r.talk_s for r in answered if r.talk_s is not None]
        by_outcome: dict[str, int] = {o.value: 0 for o in Outcome}
        for r in rows:
            if r.outcome:
                by_outcome[r.outcome] = by_outcome.get(r.outcome, 0) + 1
        return {
            "since": since,
            "until": until,
            "calls": total,
            "answered": len(answered),
            "answer_rate": len(answered) / total if total else None,
            "abandoned": len(abandoned),
            "abandonment_rate": len(abandoned) / total if total else None,
            "wait_avg_s": sum(waits) / len(waits) if waits else None,
            "wait_p90_s": percentile(waits, 90),
            "handle_avg_s": sum(talks) / len(talks) if talks else None,
            "by_outcome": by_outcome,
        }

    @staticmethod
    def _conditions(where: CallFilter) -> list[Any]:
        conditions: list[Any] = []
        if where.since is not None:
            conditions.append(CallRow.created_at >= where.since)
        if where.until is not None:
            conditions.append(CallRow.created_at < where.until)
        if where.outcome:
            conditions.append(CallRow.outcome == where.outcome)
        if where.agent:
            conditions.append(CallRow.agent == where.agent)
        if where.queue:
            conditions.append(CallRow.queue == where.queue)
        if where.subject:
            conditions.append(CallRow.subject == where.subject)
        return conditions
