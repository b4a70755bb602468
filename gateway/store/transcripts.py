"""Call transcripts in the records: each final segment written as it comes (through the record writer, so media
cannot starve it), read back for the REST API, and the complete transcript handed on once its last segment is
durable (the transcript.ready webhook)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..calls import Call
from ..errors import NotFound
from ..models import now
from .db import Database
from .models import CallRow, TranscriptSegmentRow
from .records import CallRecorder

log = structlog.get_logger("callin.transcripts")

ReadyListener = Callable[[Call, list[dict[str, Any]], bool], None]
SEGMENT_FIELDS = ("seq", "participant", "role", "name", "utterance", "text", "start_s", "end_s", "at")


class TranscriptStore:
    def __init__(self, db: Database, recorder: CallRecorder) -> None:
        self.db = db
        self.recorder = recorder
        self._writes: dict[str, set[asyncio.Task[None]]] = {}  # call id -> its segment writes in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[ReadyListener] = []
        self.failed = 0

    def attach(self, board: Any) -> None:
        board.on("call.transcript_segment", self._segment)
        board.on("call.transcript", self._ready)

    def on_ready(self, listener: ReadyListener) -> None:
        """listener(call, segments, complete) once a call's transcript is complete and stored."""
        self._listeners.append(listener)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _segment(self, call: Call, segment: Any) -> None:
        values = {**segment.as_dict(), "call_id": call.id, "at": now()}
        task = asyncio.ensure_future(self._write(values))
        writes = self._writes.setdefault(call.id, set())
        writes.add(task)
        task.add_done_callback(writes.discard)
        self._track(task)

    async def _write(self, values: dict[str, Any]) -> None:
        async def job(session: AsyncSession) -> None:
            session.add(TranscriptSegmentRow(**values))

        try:
            await self.recorder.submit(job)
        except Exception as exc:  # noqa: BLE001 - logged and counted; the webhook still carries the segment
            self.failed += 1
            log.error("transcripts.write_failed", call_id=values["call_id"], seq=values["seq"], error=str(exc))

    def _ready(self, call: Call, segments: list[dict[str, Any]], complete: bool) -> None:
        self._track(asyncio.ensure_future(self._announce(call, segments, complete)))

    async def _announce(self, call: Call, segments: list[dict[str, Any]], complete: bool) -> None:
        writes = self._writes.pop(call.id, set())
        if writes:
            await asyncio.gather(*writes, return_exceptions=True)
        for listener in list(self._listeners):
            try:
                listener(call, segments, complete)
            except Exception:  # noqa: BLE001
                log.exception("transcripts.listener_failed", call_id=call.id)

    async def get(self, call_id: str) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            if await session.get(CallRow, call_id) is None:
                raise NotFound(f"no call {call_id}", code="unknown_call")
            rows = (await session.scalars(select(TranscriptSegmentRow).where(TranscriptSegmentRow.call_id == call_id)
                                          .order_by(TranscriptSegmentRow.seq))).all()
        return [{name: getattr(row, name) for name in SEGMENT_FIELDS} for row in rows]

    async def stop(self) -> None:
        """Wait for the writes and announcements under way (the switchboard has closed: no new ones come)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
