"""Files exchanged in a call (chat attachments, app screenshots, snapshots of the caller's video).

Types are checked by content (magic bytes), not by what the client claims; sizes are capped per file, per call, per
caller identity and in total, and files are deleted after a retention time. `AttachmentStore` does the checks; where
the bytes and their metadata live is an `AttachmentBackend`:

- `DiskAttachments`: files under `CALLIN_DATA_DIR/attachments` with an index in memory, for one node (the default
  with the embedded SQLite database);
- `DatabaseAttachments`: two tables of the records database (`attachments`, `attachment_chunks`: the bytes in
  chunks of CHUNK_BYTES), used when the records are in PostgreSQL, so that every node of a cluster reads every
  file, including after the node that took it in died (`CALLIN_ATTACHMENTS_STORAGE`, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import case, delete, func, literal, select, text

from ..errors import GatewayError, NotFound
from ..scan import scan_upload
from ..tasks import Periodic
from .db import Database
from .models import AttachmentChunkRow, AttachmentRow

SIGNATURES: list[tuple[str, bytes, int]] = [
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF8", 0),
    ("image/webp", b"WEBP", 8),
    ("application/pdf", b"%PDF-", 0),
]
ALLOWED = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
CHUNK_BYTES = 256 * 1024  # a row of attachment_chunks
CHUNKS_PER_READ = 4  # a download reads this many chunks per query (1 MiB held at most)
SWEEP_BATCH = 500  # files deleted per transaction by the database sweeper
# every node's uploads take this PostgreSQL advisory lock while they check the quotas and insert (one cluster-wide
# budget: two nodes cannot both take the last bytes)
QUOTA_LOCK = zlib.crc32(b"callin.attachments.quota")
log = structlog.get_logger("callin.attachments")


class AttachmentError(GatewayError):
    code = "bad_attachment"
    status = 422


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    call_id: str
    name: str
    mime: str
    size: int
    sha256: str
    uploaded_by: str
    at: float
    owner: str | None = None  # the caller identity (issuer|subject) that uploaded it; None for staff
    # a caller's picture: the codes read in it and where the photo was taken (gateway/scan.py); None otherwise
    scan: dict[str, Any] | None = None

    def public(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("owner")
        data["url"] = f"/api/v1/calls/{self.call_id}/attachments/{self.id}"
        return data


def sniff(data: bytes) -> str | None:
    for mime, magic, offset in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return mime
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain" if "\x00" not in text else None


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """What the files of calls may take (settings.max_attachment_bytes, attachments_*)."""

    max_bytes: int = 5 * 1024 * 1024  # one file
    per_call_bytes: int = 50 * 1024 * 1024
    per_call_count: int = 50
    per_owner_bytes: int = 25 * 1024 * 1024  # one caller identity, over all its files kept
    total_bytes: int = 10 * 1024 * 1024 * 1024  # the disk budget of every kept file
    retention_s: float = 30 * 24 * 3600.0  # files are deleted this long after upload

    @classmethod
    def from_settings(cls, settings: Any) -> "AttachmentLimits":
        return cls(max_bytes=settings.max_attachment_bytes, per_call_bytes=settings.attachments_per_call_bytes,
                   per_call_count=settings.attachments_per_call_count,
                   per_owner_bytes=settings.attachments_per_caller_bytes, total_bytes=settings.attachments_total_bytes,
                   retention_s=settings.attachments_retention_s)


class QuotaExceeded(AttachmentError):
    status = 413


class StorageFull(AttachmentError):
    code = "storage_full"
    status = 507
    retryable = True


@dataclass(frozen=True, slots=True)
class Budget:
    """What is kept now against the quotas one upload is checked by (one query in the database)."""

    call_files: int
    call_bytes: int
    owner_bytes: int  # 0 without an owner
    total_bytes: int


def check_quotas(limits: AttachmentLimits, size: int, owner: str | None, budget: Budget) -> None:
    """Raise QuotaExceeded/StorageFull if one more file of `size` bytes does not fit."""
    count, used = budget.call_files, budget.call_bytes
    if count + 1 > limits.per_call_count:
        raise QuotaExceeded(f"a call keeps at most {limits.per_call_count} files", code="call_quota_exceeded")
    if used + size > limits.per_call_bytes:
        raise QuotaExceeded(f"the files of a call take at most {limits.per_call_bytes} bytes "
                            f"({used} used)", code="call_quota_exceeded")
    if owner is not None:
        mine = budget.owner_bytes
        if mine + size > limits.per_owner_bytes:
            raise QuotaExceeded(f"your files take at most {limits.per_owner_bytes} bytes ({mine} used); "
                                "they are deleted after the retention time", code="caller_quota_exceeded")
    total = budget.total_bytes
    if total + size > limits.total_bytes:
        raise StorageFull("the gateway's file storage is full; try again later", code="storage_full")


class AttachmentBackend(Protocol):
    """Where the files of calls and their metadata are kept."""

    shared: bool  # True: every node of a cluster reads what any node wrote

    async def open(self) -> None:
        """Ready to serve (a disk index rebuilt, ...)."""

    async def usage(self, call_id: str | None, owner: str | None) -> tuple[int, int]:
        """(files, bytes) kept for a call, an owner, or (both None) in total; files being written count."""

    async def budget(self, call_id: str, owner: str | None) -> Budget:
        """What the quotas of one more file of this call and owner are checked against."""

    async def put(self, attachment: Attachment, data: bytes, admit: Callable[[Budget], None]) -> None:
        """Keep the file if `admit(budget)` (the quota check) passes; the check and the write are one step."""

    async def find(self, attachment_id: str) -> Attachment | None:
        """The attachment, None if unknown or deleted."""

    def local_path(self, attachment: Attachment) -> Path | None:
        """The file on this machine, if the backend keeps files (served with sendfile); None otherwise."""

    def chunks(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """The file's bytes, in order (raises NotFound before the first piece if it is gone)."""

    async def expire(self, cutoff: float) -> int:
        """Delete every file uploaded at or before `cutoff`; how many."""

    async def discard(self, attachment: Attachment) -> None:
        """Delete one file at once (an upload its call refused)."""


class DiskAttachments:
    """Files on disk under root/<call_id>/<id> with <id>.json beside each; an index in memory (rebuilt by `open`)
    answers the quotas. For one node: another node does not see these files. Disk work runs in threads."""

    shared = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, Attachment] = {}  # written and readable
        self._pending: dict[str, Attachment] = {}  # being written: they count toward the quotas already
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        found = await asyncio.to_thread(_scan, self.root)
        self._index = {a.id: a for a in found}

    async def usage(self, call_id: str | None, owner: str | None) -> tuple[int, int]:
        items = [a for a in (*self._index.values(), *self._pending.values())
                 if (call_id is None or a.call_id == call_id) and (owner is None or a.owner == owner)]
        return len(items), sum(a.size for a in items)

    async def budget(self, call_id: str, owner: str | None) -> Budget:
        call_files, call_bytes = await self.usage(call_id, None)
        owner_bytes = (await self.usage(None, owner))[1] if owner is not None else 0
        return Budget(call_files, call_bytes, owner_bytes, (await self.usage(None, None))[1])

    async def put(self, attachment: Attachment, data: bytes, admit: Callable[[Budget], None]) -> None:
        async with self._lock:  # the check and the reservation together (the write itself runs unlocked)
            admit(await self.budget(attachment.call_id, attachment.owner))
            self._pending[attachment.id] = attachment
        try:
            await asyncio.to_thread(_write, self.root / attachment.call_id, attachment, data)
        finally:
            self._pending.pop(attachment.id, None)
        self._index[attachment.id] = attachment

    async def find(self, attachment_id: str) -> Attachment | None:
        return self._index.get(attachment_id)

    def local_path(self, attachment: Attachment) -> Path | None:
        return self.root / attachment.call_id / attachment.id

    async def chunks(self, attachment: Attachment) -> AsyncIterator[bytes]:
        path = self.local_path(attachment)
        try:
            data = await asyncio.to_thread(path.read_bytes) if path is not None else None
        except FileNotFoundError:
            data = None
        if data is None:
            raise NotFound("no such attachment (files are deleted after the retention time)",
                           code="unknown_attachment")
        for offset in range(0, len(data), CHUNK_BYTES):
            yield data[offset:offset + CHUNK_BYTES]

    async def expire(self, cutoff: float) -> int:
        expired = [a for a in self._index.values() if a.at <= cutoff]
        for attachment in expired:
            self._index.pop(attachment.id, None)  # unreadable from now on, even before the disk is done
        if expired:
            await asyncio.to_thread(_delete, self.root, expired)
        return len(expired)

    async def discard(self, attachment: Attachment) -> None:
        if self._index.pop(attachment.id, None) is not None:
            await asyncio.to_thread(_delete, self.root, [attachment])


_COLUMNS = [f.name for f in fields(Attachment)]


class DatabaseAttachments:
    """Files in the records database: a row of metadata in `attachments` and the bytes in `attachment_chunks`
    (CHUNK_BYTES each). Every node of a cluster on one PostgreSQL reads every file, also after the node that took it
    in was killed. The quotas are sums over the table, checked and the file inserted in one transaction under an
    advisory lock on PostgreSQL (one budget for the cluster); a download reads one chunk at a time."""

    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = asyncio.Lock()  # this process's uploads one at a time (SQLite has no advisory locks)

    async def open(self) -> None:
        return None

    @staticmethod
    async def _usage(session: Any, call_id: str | None, owner: str | None) -> tuple[int, int]:
        query = select(func.count(AttachmentRow.id), func.coalesce(func.sum(AttachmentRow.size), 0))
        if call_id is not None:
            query = query.where(AttachmentRow.call_id == call_id)
        if owner is not None:
            query = query.where(AttachmentRow.owner == owner)
        count, used = (await session.execute(query)).one()
        return int(count), int(used)

    async def usage(self, call_id: str | None, owner: str | None) -> tuple[int, int]:
        async with self.db.session() as session:
            return await self._usage(session, call_id, owner)

    @staticmethod
    async def _budget(session: Any, call_id: str, owner: str | None) -> Budget:
        size = AttachmentRow.size
        in_call = AttachmentRow.call_id == call_id
        query = select(func.coalesce(func.sum(case((in_call, 1), else_=0)), 0),
                       func.coalesce(func.sum(case((in_call, size), else_=0)), 0),
                       func.coalesce(func.sum(case((AttachmentRow.owner == owner, size), else_=0)), 0)
                       if owner is not None else literal(0),
                       func.coalesce(func.sum(size), 0))
        call_files, call_bytes, owner_bytes, total = (await session.execute(query)).one()
        return Budget(int(call_files), int(call_bytes), int(owner_bytes), int(total))

    async def budget(self, call_id: str, owner: str | None) -> Budget:
        async with self.db.session() as session:
            return await self._budget(session, call_id, owner)

    async def put(self, attachment: Attachment, data: bytes, admit: Callable[[Budget], None]) -> None:
        async with self._lock, self.db.session() as session, session.begin():
            if self.db.dialect == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUOTA_LOCK})
            admit(await self._budget(session, attachment.call_id, attachment.owner))
            session.add(AttachmentRow(**asdict(attachment)))
            await session.flush()  # the parent row before its chunks
            session.add_all([AttachmentChunkRow(attachment_id=attachment.id, seq=seq,
                                                data=data[offset:offset + CHUNK_BYTES])
                             for seq, offset in enumerate(range(0, len(data), CHUNK_BYTES))])

    async def find(self, attachment_id: str) -> Attachment | None:
        async with self.db.session() as session:
            row = await session.get(AttachmentRow, attachment_id)
        if row is None:
            return None
        return Attachment(**{name: getattr(row, name) for name in _COLUMNS})

    def local_path(self, attachment: Attachment) -> Path | None:
        return None

    async def chunks(self, attachment: Attachment) -> AsyncIterator[bytes]:
        count = -(-attachment.size // CHUNK_BYTES)
        for first in range(0, count, CHUNKS_PER_READ):
            wanted = list(range(first, min(first + CHUNKS_PER_READ, count)))
            async with self.db.session() as session:
                rows = (await session.execute(
                    select(AttachmentChunkRow.seq, AttachmentChunkRow.data)
                    .where(AttachmentChunkRow.attachment_id == attachment.id,
                           AttachmentChunkRow.seq.between(wanted[0], wanted[-1]))
                    .order_by(AttachmentChunkRow.seq))).all()
            if [seq for seq, _ in rows] != wanted:  # deleted meanwhile (retention)
                if first == 0:
                    raise NotFound("no such attachment (files are deleted after the retention time)",
                                   code="unknown_attachment")
                raise OSError(f"attachment {attachment.id} was deleted while it was read")
            for _, piece in rows:
                yield bytes(piece)

    async def expire(self, cutoff: float) -> int:
        deleted = 0
        while True:
            async with self.db.session() as session, session.begin():
                ids = list((await session.scalars(select(AttachmentRow.id).where(AttachmentRow.at <= cutoff)
                                                  .limit(SWEEP_BATCH))).all())
                if not ids:
                    return deleted
                await session.execute(delete(AttachmentChunkRow).where(AttachmentChunkRow.attachment_id.in_(ids)))
                await session.execute(delete(AttachmentRow).where(AttachmentRow.id.in_(ids)))
            deleted += len(ids)

    async def discard(self, attachment: Attachment) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(delete(AttachmentChunkRow).where(AttachmentChunkRow.attachment_id == attachment.id))
            await session.execute(delete(AttachmentRow).where(AttachmentRow.id == attachment.id))


class AttachmentStore:
    """The checks of the files of calls (size, type by content, quotas per file, per call in bytes and count, per
    caller identity `owner` and in total) over a backend that keeps them; files are deleted `retention_s` after
    upload by a sweeper task (`start`/`stop`). A Path as `backend` means DiskAttachments there."""

    def __init__(self, backend: AttachmentBackend | Path, limits: AttachmentLimits | int,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend: AttachmentBackend = DiskAttachments(backend) if isinstance(backend, Path) else backend
        self.limits = limits if isinstance(limits, AttachmentLimits) else AttachmentLimits(max_bytes=limits)
        self.max_bytes = self.limits.max_bytes
        self._clock = clock
        self._sweeper = Periodic(self.sweep, min(max(self.limits.retention_s / 4, 0.2), 3600.0), log=log,
                                 failed="attachments.sweep_failed", name="callin-attachments-sweeper")

    @property
    def shared(self) -> bool:
        """Every node reads these files (the database backend)."""
        return self.backend.shared

    @staticmethod
    def _check_call_id(call_id: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{1,64}", call_id):
            raise NotFound("no such call", code="unknown_call")

    async def usage(self, call_id: str | None = None, owner: str | None = None) -> tuple[int, int]:
        """(files, bytes) kept for a call, an owner, or (both None) in total."""
        return await self.backend.usage(call_id, owner)

    # -- writing and reading
    async def save(self, call_id: str, name: str, data: bytes, uploaded_by: str,
                   owner: str | None = None) -> Attachment:
        """Validate (size, type by content, quotas), then write. `owner`: the caller identity that uploaded it."""
        if not data:
            raise AttachmentError("the file is empty", code="empty_attachment")
        if len(data) > self.max_bytes:
            raise AttachmentError(f"files are at most {self.max_bytes} bytes", code="attachment_too_large")
        mime = sniff(data)
        if mime not in ALLOWED:
            raise AttachmentError("only PNG, JPEG, GIF, WebP, PDF and plain text files are accepted",
                                  code="attachment_type")
        self._check_call_id(call_id)

        def admit(budget: Budget) -> None:
            check_quotas(self.limits, len(data), owner, budget)

        scanned = owner is not None  # a caller's picture: the codes read in it and where it was taken
        if scanned:  # checked before the scan too (it costs); always with the write
            admit(await self.backend.budget(call_id, owner))
        clean = _NAME.sub("_", name).strip() or "file"
        scan = await scan_upload(data, mime) if scanned else None
        attachment = Attachment(id=secrets.token_hex(8), call_id=call_id, name=clean[:120], mime=mime, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), uploaded_by=uploaded_by, at=self._clock(),
                                owner=owner, scan=scan)
        await self.backend.put(attachment, data, admit)
        return attachment

    async def get(self, call_id: str, attachment_id: str) -> Attachment:
        """The attachment `attachment_id` of call `call_id` (NotFound if it is not that call's, or is gone)."""
        if not re.fullmatch(r"[0-9a-f]{16}", attachment_id):
            raise NotFound("no such attachment", code="unknown_attachment")
        self._check_call_id(call_id)
        attachment = await self.backend.find(attachment_id)
        if attachment is None or attachment.call_id != call_id \
                or attachment.at <= self._clock() - self.limits.retention_s:
            raise NotFound("no such attachment (files are deleted after the retention time)",
                           code="unknown_attachment")
        return attachment

    def local_path(self, attachment: Attachment) -> Path | None:
        return self.backend.local_path(attachment)

    def chunks(self, attachment: Attachment) -> AsyncIterator[bytes]:
        return self.backend.chunks(attachment)

    async def discard(self, attachment: Attachment) -> None:
        """Delete a file at once (an upload through another node that the call's home refused)."""
        await self.backend.discard(attachment)

    async def read(self, attachment: Attachment) -> bytes:
        return b"".join([piece async for piece in self.backend.chunks(attachment)])

    # -- retention
    async def open(self) -> None:
        """Ready the backend (the disk index of files written before a restart) and delete what is past retention."""
        await self.backend.open()
        await self.sweep()

    async def sweep(self) -> int:
        """Delete the files older than the retention time; returns how many."""
        return await self.backend.expire(self._clock() - self.limits.retention_s)

    def start(self) -> None:
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()


def _write(folder: Path, attachment: Attachment, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / attachment.id).write_bytes(data)
    (folder / f"{attachment.id}.json").write_text(json.dumps(asdict(attachment)))


def _scan(root: Path) -> list[Attachment]:
    found: list[Attachment] = []
    if not root.is_dir():
        return found
    for meta in root.glob("*/*.json"):
        try:
            attachment = Attachment(**json.loads(meta.read_text()))
        except (OSError, ValueError, TypeError):
            log.warning("attachments.unreadable_meta", path=str(meta))
            continue
        if (meta.parent / attachment.id).is_file():
            found.append(attachment)
    return found


def _delete(root: Path, attachments: list[Attachment]) -> None:
    for attachment in attachments:
        folder = root / attachment.call_id
        for path in (folder / attachment.id, folder / f"{attachment.id}.json"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when it is empty
