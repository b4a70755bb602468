"""Call recordings at rest: where the files live (a small storage interface; a local directory by default), their
catalog in the database (one row per recorded call: checksum, tracks, paused spans, retention), the audit log of
every access, the archive step that files a finished recording, and the sweeper that deletes recordings past
their retention.

The media plane writes a call's file where `RecordingStorage.prepare` says (a local path: the recorder runs beside
the call's media). When the call ends the engine emits `recording.stopped` (call, RecordingInfo); the archive
hashes the file (SHA-256, off the event loop), files its row and publishes the signed webhook `recording.ready`.
An S3-compatible storage is not built: a second implementation of RecordingStorage would upload in `keep` and
serve through a signed URL (docs/recording.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update

from ..errors import NotFound
from ..media.plane import RecordingInfo
from ..tasks import Periodic
from .db import Database
from .models import CallRow, RecordingAccessRow, RecordingRow

log = structlog.get_logger("callin.recordings")

CHUNK = 1024 * 1024
SUFFIXES = {".webm": "webm", ".mkv": "mkv", ".mp4": "mp4"}


class RecordingStorage(Protocol):
    """Where recordings are kept. Keys are what the catalog stores; `local_file` is what the server streams."""

    async def prepare(self, call_id: str, at: float) -> str:
        """The local path the media plane writes the call's file to (its folder exists)."""

    def key_of(self, path: str) -> str:
        """The storage key of a file the plane wrote."""

    def local_file(self, key: str) -> Path | None:
        """The file of `key` on this machine, None if it is gone."""

    async def delete(self, key: str) -> bool:
        """Remove the file; False if it was gone already."""

    def local_files(self) -> list[Path]:
        """The recording files on this machine (for filing those a crash left unfiled)."""


class LocalRecordingStorage:
    """Recordings in a local directory: <root>/YYYY/MM/DD/<call id>.<container>; keys are paths under the root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def prepare(self, call_id: str, at: float) -> str:
        day = datetime.fromtimestamp(at, timezone.utc)
        folder = self.root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        return str((folder / call_id).resolve())

    def key_of(self, path: str) -> str:
        resolved = Path(path).resolve()
        try:
            return str(resolved.relative_to(self.root.resolve()))
        except ValueError:  # written elsewhere (a plane told another folder): kept as an absolute path
            return str(resolved)

    def local_file(self, key: str) -> Path | None:
        path = Path(key) if Path(key).is_absolute() else self.root / key
        path = path.resolve()
        return path if path.is_file() else None

    async def delete(self, key: str) -> bool:
        path = self.local_file(key)
        if path is None:
            return False
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return True

    def local_files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file, read in chunks (run it in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def probe(path: Path) -> RecordingInfo | None:
    """What a file left by a crash holds (no index, no duration header, no chapters): its tracks with media and how
    long it plays, read packet by packet (run it in a thread). None: not a readable recording."""
    import av  # here: only recovery reads files back

    try:
        with av.open(str(path)) as container:
            ends: dict[int, float] = {}
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                    ends[packet.stream.index] = max(ends.get(packet.stream.index, 0.0), end)
            tracks = tuple({"participant": s.metadata.get("title") or f"track {s.index}", "kind": s.type,
                            "codec": s.codec_context.name} for s in container.streams if s.index in ends)
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    if not ends:
        return None
    stat = path.stat()
    duration = max(ends.values())
    return RecordingInfo(path=str(path), container=SUFFIXES.get(path.suffix, path.suffix.lstrip(".")),
                         started_at=stat.st_mtime - duration, duration_s=duration, size_bytes=stat.st_size,
                         tracks=tracks, paused_spans=())


def _public(row: RecordingRow) -> dict[str, Any]:
    return {"id": row.call_id, "call_id": row.call_id, "container": row.container, "queue": row.queue,
            "agent": row.agent, "started_at": row.started_at, "duration_s": row.duration_s,
            "size_bytes": row.size_bytes, "sha256": row.sha256, "tracks": row.tracks,
            "paused_spans": row.paused_spans, "created_at": row.created_at, "deleted_at": row.deleted_at,
            "deleted_reason": row.deleted_reason}


def _access(row: RecordingAccessRow) -> dict[str, Any]:
    return {"at": row.at, "principal": row.principal, "role": row.role, "action": row.action,
            "address": row.address, "range": row.byte_range, "status": row.status}


class RecordingCatalog:
    """The recordings table and its audit log."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, call_id: str, key: str, info: RecordingInfo, sha256: str, size: int, *, queue: str | None,
                  agent: str | None) -> dict[str, Any]:
        row = RecordingRow(call_id=call_id, storage_key=key, container=info.container, queue=queue, agent=agent,
                           started_at=info.started_at, duration_s=info.duration_s, size_bytes=size, sha256=sha256,
                           tracks=[dict(t) for t in info.tracks],
                           paused_spans=[[float(a), float(b)] for a, b in info.paused_spans],
                           created_at=time.time())
        async with self.db.session() as session, session.begin():
            await session.merge(row)
        return _public(row)

    async def _row(self, call_id: str) -> RecordingRow:
        async with self.db.session() as session:
            row = await session.get(RecordingRow, call_id)
        if row is None:
            raise NotFound(f"no recording of call {call_id}", code="unknown_recording")
        return row

    async def get(self, call_id: str) -> dict[str, Any]:
        return _public(await self._row(call_id))

    async def filed(self, call_ids: list[str], chunk: int = 500) -> set[str]:
        """Which of `call_ids` have a row (one query per `chunk` ids)."""
        found: set[str] = set()
        for start in range(0, len(call_ids), chunk):
            query = select(RecordingRow.call_id).where(RecordingRow.call_id.in_(call_ids[start:start + chunk]))
            async with self.db.session() as session:
                found.update((await session.scalars(query)).all())
        return found

    async def key(self, call_id: str) -> tuple[str, dict[str, Any]]:
        row = await self._row(call_id)
        return row.storage_key, _public(row)

    async def list(self, *, since: float | None, until: float | None, queue: str | None, limit: int,
                   before: float | None) -> list[dict[str, Any]]:
        """Newest first; `before`: started before (the previous page's last started_at)."""
        conditions: list[Any] = []
        if since is not None:
            conditions.append(RecordingRow.started_at >= since)
        if until is not None:
            conditions.append(RecordingRow.started_at < until)
        if before is not None:
            conditions.append(RecordingRow.started_at < before)
        if queue:
            conditions.append(RecordingRow.queue == queue)
        query = (select(RecordingRow).where(*conditions)
                 .order_by(RecordingRow.started_at.desc(), RecordingRow.call_id.desc()).limit(limit))
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [_public(r) for r in rows]

    async def log_access(self, call_id: str, *, principal: str, role: str, action: str, address: str | None,
                         byte_range: str | None, status: int) -> None:
        async with self.db.session() as session, session.begin():
            session.add(RecordingAccessRow(call_id=call_id, at=time.time(), principal=principal[:128], role=role[:16],
                                           action=action, address=(address or None) and address[:64],
                                           byte_range=(byte_range or None) and byte_range[:64], status=status))

    async def access_log(self, call_id: str, limit: int = 200) -> list[dict[str, Any]]:
        query = (select(RecordingAccessRow).where(RecordingAccessRow.call_id == call_id)
                 .order_by(RecordingAccessRow.id.desc()).limit(limit))
        async with self.db.session() as session:
            rows = (await session.scalars(query)).all()
        return [_access(r) for r in rows]

    async def expired(self, before: float, limit: int) -> list[tuple[str, str]]:
        """(call id, key) of kept recordings that started before `before`, oldest first."""
        query = (select(RecordingRow.call_id, RecordingRow.storage_key)
                 .where(RecordingRow.deleted_at.is_(None), RecordingRow.started_at < before)
                 .order_by(RecordingRow.started_at).limit(limit))
        async with self.db.session() as session:
            return [(r.call_id, r.storage_key) for r in (await session.execute(query)).all()]

    async def mark_deleted(self, call_id: str, reason: str) -> None:
        """The file is gone: its row (and the call record's recording state) say so."""
        async with self.db.session() as session, session.begin():
            await session.execute(update(RecordingRow).where(RecordingRow.call_id == call_id)
                                  .values(deleted_at=time.time(), deleted_reason=reason))
            await session.execute(update(CallRow).where(CallRow.id == call_id).values(recording="deleted"))


class RecordingSweeper:
    """Every `interval_s`, deletes the recordings older than `retention_days` (0: never) and marks them deleted."""

    BATCH = 200

    def __init__(self, catalog: RecordingCatalog, storage: RecordingStorage, retention_days: float,
                 interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.storage = storage
        self.retention_s = retention_days * 86_400
        self.interval_s = interval_s
        self.clock = clock
        self._loop = Periodic(self.sweep, interval_s, log=log, failed="recordings.sweep_failed", at_once=True,
                              name="callin-recordings-sweeper")

    async def sweep(self) -> int:
        """One pass; returns how many recordings were deleted."""
        if self.retention_s <= 0:
            return 0
        deleted = 0
        while True:
            batch = await self.catalog.expired(self.clock() - self.retention_s, self.BATCH)
            for call_id, key in batch:
                await self.storage.delete(key)
                await self.catalog.mark_deleted(call_id, "retention")
                deleted += 1
            if len(batch) < self.BATCH:
                break
        if deleted:
            log.info("recordings.swept", deleted=deleted)
        return deleted

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()


Publish = Callable[[str, dict[str, Any]], None]
Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]  # a call's record by id, None if there is none


class RecordingArchive:
    """Files each finished recording: checksum, catalog row, `recording.ready` webhook. Subscribes to the engine's
    `recording.stopped` (call, info); every task it starts is awaited by stop()."""

    def __init__(self, catalog: RecordingCatalog, storage: RecordingStorage, publish: Publish,
                 download_url: Callable[[str], str]) -> None:
        self.catalog = catalog
        self.storage = storage
        self.publish = publish
        self.download_url = download_url
        self._tasks: set[asyncio.Task[Any]] = set()
        self._filing: set[str] = set()  # call ids being filed now

    def attach(self, board: Any) -> None:
        board.on("recording.stopped", self.stopped)

    def stopped(self, call: Any, info: RecordingInfo | None) -> None:
        if info is None:
            return
        self._spawn(self.file(call.id, info, queue=call.queue, agent=call.agent))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def file(self, call_id: str, info: RecordingInfo, *, queue: str | None, agent: str | None) -> None:
        self._filing.add(call_id)
        try:
            await self._file(call_id, info, queue=queue, agent=agent)
        finally:
            self._filing.discard(call_id)

    async def _file(self, call_id: str, info: RecordingInfo, *, queue: str | None, agent: str | None) -> None:
        path = Path(info.path)
        try:
            sha256, size = await asyncio.to_thread(file_digest, path)
        except OSError:
            log.error("recordings.file_missing", call_id=call_id, path=str(path))
            return
        try:
            record = await self.catalog.add(call_id, self.storage.key_of(info.path), info, sha256, size,
                                            queue=queue, agent=agent)
        except Exception:
            log.exception("recordings.catalog_failed", call_id=call_id)
            return
        log.info("recordings.ready", call_id=call_id, size=size, duration_s=round(info.duration_s, 1))
        self.publish("recording.ready", {**record, "download_url": self.download_url(call_id)})

    # -- after a crash ------------------------------------------------------------------------------------------
    def start_recovery(self, is_live: Callable[[str], bool], lookup: Lookup) -> None:
        """File, in the background, the recordings a killed process left on this machine unfiled."""
        self._spawn(self.recover(is_live, lookup))

    async def recover(self, is_live: Callable[[str], bool], lookup: Lookup) -> int:
        """Every local recording file without a catalog row whose call is not live here was left by a process that
        died mid-call (SIGKILL, power loss): read back what it holds, then filed as any other (checksum, row,
        recording.ready). Its paused spans are in the call record (recording_paused), not in the file. Returns
        how many were filed."""
        filed = 0
        paths = await asyncio.to_thread(self.storage.local_files)
        known = await self.catalog.filed(sorted({p.stem for p in paths}))  # one query for them all (chunked)
        for path in paths:
            call_id = path.stem
            if is_live(call_id) or call_id in self._filing or call_id in known:
                continue
            info = await asyncio.to_thread(probe, path)
            if info is None:
                log.warning("recordings.unreadable_left_unfiled", path=str(path))
                continue
            known.add(call_id)  # another file of the same call is not filed over this one
            record = await lookup(call_id) or {}
            log.warning("recordings.recovered", call_id=call_id, duration_s=round(info.duration_s, 1))
            await self.file(call_id, info, queue=record.get("queue"), agent=record.get("agent"))
            filed += 1
        return filed

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
