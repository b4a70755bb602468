"""Durable call records, written as the call happens.

The CallRecorder subscribes to the Switchboard's events and writes each change through one writer task, in
order: a row per call (identity snapshot, location, context, queue, agents, timestamps, outcome, wrap-up) and
its ordered event log. A call left open by a crash is closed as "interrupted" on the next start.
CallQueries reads them back for the REST API (filters, cursor pagination, stats).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import structlog
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..calls import Call
from ..errors import BadRequest, Forbidden, InvalidState, NotFound
from ..models import CallState, EndReason, now
from .db import Database
from .models import CallEventRow, CallRow

log = structlog.get_logger("callin.records")


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # the caller left while queued; it never rang
    MISSED = "missed"  # it rang (ring timeout / agent gone) but nobody answered before the caller left
    DECLINED = "declined"  # an agent declined it and nobody answered before the caller left
    FAILED = "failed"  # media failure, queue full, shutdown before an answer
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
    if call.end_reason in (EndReason.SHUTDOWN, EndReason.QUEUE_FULL):
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
    }


Job = Callable[[AsyncSession], Awaitable[Any]]


class EventSource(Protocol):
    def on(self, event: str, f: Callable[..., Any]) -> Any: ...


class CallRecorder:
    """One writer task; every write (call snapshots, wrap-ups, closing interrupted calls) goes through it in order.

    The queue is not bounded on purpose: records must not be lost. A write that fails is retried, then logged.
    """

    RETRIES = 3

    def __init__(self, db: Database, node: str) -> None:
        self.db = db
        self.node = node
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[Any] | None] | None] = asyncio.Queue()
        self._written: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle
    async def start(self) -> int:
        """Close the calls a previous process left open, then start writing. Returns how many were closed."""
        closed = await self._close_interrupted()
        self._task = asyncio.ensure_future(self._run())
        return closed

    async def stop(self, timeout: float = 10) -> None:
        """Write everything queued so far, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            log.error("records.stop_timeout", pending=self._queue.qsize())
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def attach(self, board: EventSource) -> None:
        for name in ("call.queued", "call.answered", "call.ended", "call.updated", "call.callback_ready"):
            board.on(name, self.record)
        board.on("call.offered", lambda call, _agent: self.record(call))
        board.on("call.withdrawn", lambda call, _agent, _reason: self.record(call))

    # -- writing
    def record(self, call: Call) -> None:
        """Snapshot the call now (synchronously, in the engine's event handler) and queue the write."""
        columns = call_columns(call, self.node)
        start = self._written.get(call.id, 0)
        events = list(call.events[start:])
        self._written[call.id] = start + len(events)
        if call.state is CallState.ENDED:
            self._written.pop(call.id, None)

        async def write(session: AsyncSession) -> None:
            row = await session.get(CallRow, call.id)
            if row is None:
                session.add(CallRow(**columns))
            else:
                for key, value in columns.items():
                    setattr(row, key, value)
            await session.flush()  # the call row before its events (foreign key)
            for seq, event in enumerate(events, start=start):
                session.add(CallEventRow(call_id=call.id, seq=seq, at=event.at, kind=event.kind,
                                         detail=_jsonable(event.detail)))

        self._queue.put_nowait((write, None))

    async def submit(self, job: Job) -> Any:
        """Run a write in order with the others and wait for its result."""
        if self._task is None:
            async with self.db.session() as session, session.begin():
                return await job(session)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            job, future = item
            for attempt in range(1, self.RETRIES + 1):
                try:
                    async with self.db.session() as session, session.begin():
                        result = await job(session)
                except (BadRequest, Forbidden, NotFound, InvalidState) as exc:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                    break
                except Exception as exc:
                    if attempt == self.RETRIES:
                        log.exception("records.write_failed")
                        if future is not None and not future.done():
                            future.set_exception(exc)
                        break
                    await asyncio.sleep(0.2 * attempt)
                else:
                    if future is not None and not future.done():
                        future.set_result(result)
                    break

    async def _close_interrupted(self) -> int:
        async with self.db.session() as session, session.begin():
            rows = (await session.scalars(
                select(CallRow).where(CallRow.ended_at.is_(None), or_(CallRow.node == self.node, CallRow.node.is_(None)))
            )).all()
            for row in rows:
                last = await session.scalar(select(func.max(CallEventRow.at)).where(CallEventRow.call_id == row.id))
                seq = await session.scalar(select(func.max(CallEventRow.seq)).where(CallEventRow.call_id == row.id))
                ended = last or row.created_at
                row.ended_at = ended
                row.state = CallState.ENDED.value
                row.outcome = Outcome.INTERRUPTED.value
                row.end_reason = Outcome.INTERRUPTED.value
                row.hangup_side = "system"
                row.wait_s = (row.answered_at or ended) - row.created_at
                row.talk_s = ended - row.answered_at if row.answered_at is not None else None
                session.add(CallEventRow(call_id=row.id, seq=(seq if seq is not None else -1) + 1, at=now(),
                                         kind="interrupted", detail={"closed_at_start": True, "last_seen": ended}))
            if rows:
                log.warning("records.interrupted_calls_closed", count=len(rows), calls=[r.id for r in rows])
            return len(rows)

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
    return {c.name: getattr(row, c.name) for c in CallRow.__table__.columns if c.name != "node"}


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
