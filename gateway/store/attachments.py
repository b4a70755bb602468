"""Files exchanged in a call (chat attachments, app screenshots, snapshots), kept with the call on disk.

Types are checked by content (magic bytes), not by what the client claims; sizes are capped per file, per call, per
caller identity and in total, and files are deleted after a retention time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import GatewayError, NotFound
from ..scan import scan_upload
from ..tasks import Periodic

SIGNATURES: list[tuple[str, bytes, int]] = [
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF8", 0),
    ("image/webp", b"WEBP", 8),
    ("application/pdf", b"%PDF-", 0),
]
ALLOWED = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
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


class AttachmentStore:
    """Files on disk under root/<call_id>/<id> with <id>.json beside each; an index in memory (rebuilt by `open`)
    keeps the quotas: per file, per call (bytes and count), per caller identity (`owner`) and in total. Files are
    deleted `retention_s` after upload by a sweeper task (`start`/`stop`). Disk work runs in threads."""

    def __init__(self, root: Path, limits: AttachmentLimits | int, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.limits = limits if isinstance(limits, AttachmentLimits) else AttachmentLimits(max_bytes=limits)
        self.max_bytes = self.limits.max_bytes
        self._clock = clock
        self._index: dict[str, Attachment] = {}  # written and readable
        self._pending: dict[str, Attachment] = {}  # being written: they count toward the quotas already
        self._sweeper = Periodic(self.sweep, min(max(self.limits.retention_s / 4, 0.2), 3600.0), log=log,
                                 failed="attachments.sweep_failed", name="callin-attachments-sweeper")

    def _dir(self, call_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{1,64}", call_id):
            raise NotFound("no such call", code="unknown_call")
        return self.root / call_id

    # -- usage
    def _all(self) -> list[Attachment]:
        return [*self._index.values(), *self._pending.values()]

    def usage(self, call_id: str | None = None, owner: str | None = None) -> tuple[int, int]:
        """(files, bytes) kept for a call, an owner, or (both None) in total."""
        items = [a for a in self._all()
                 if (call_id is None or a.call_id == call_id) and (owner is None or a.owner == owner)]
        return len(items), sum(a.size for a in items)

    def _check_quotas(self, call_id: str, size: int, owner: str | None) -> None:
        limits = self.limits
        count, used = self.usage(call_id=call_id)
        if count + 1 > limits.per_call_count:
            raise QuotaExceeded(f"a call keeps at most {limits.per_call_count} files", code="call_quota_exceeded")
        if used + size > limits.per_call_bytes:
            raise QuotaExceeded(f"the files of a call take at most {limits.per_call_bytes} bytes "
                                f"({used} used)", code="call_quota_exceeded")
        if owner is not None:
            _, mine = self.usage(owner=owner)
            if mine + size > limits.per_owner_bytes:
                raise QuotaExceeded(f"your files take at most {limits.per_owner_bytes} bytes ({mine} used); "
                                    "they are deleted after the retention time", code="caller_quota_exceeded")
        _, total = self.usage()
        if total + size > limits.total_bytes:
            raise StorageFull("the gateway's file storage is full; try again later", code="storage_full")

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
        folder = self._dir(call_id)
        self._check_quotas(call_id, len(data), owner)
        clean = _NAME.sub("_", name).strip() or "file"
        scan = await scan_upload(data, mime) if owner is not None else None  # a caller's picture: codes, place
        attachment = Attachment(id=secrets.token_hex(8), call_id=call_id, name=clean[:120], mime=mime, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), uploaded_by=uploaded_by, at=self._clock(),
                                owner=owner, scan=scan)
        self._pending[attachment.id] = attachment
        try:
            await asyncio.to_thread(_write, folder, attachment, data)
        finally:
            self._pending.pop(attachment.id, None)
        self._index[attachment.id] = attachment
        return attachment

    def get(self, call_id: str, attachment_id: str) -> tuple[Attachment, Path]:
        if not re.fullmatch(r"[0-9a-f]{16}", attachment_id):
            raise NotFound("no such attachment", code="unknown_attachment")
        folder = self._dir(call_id)
        attachment = self._index.get(attachment_id)
        if attachment is None or attachment.call_id != call_id:
            raise NotFound("no such attachment (files are deleted after the retention time)",
                           code="unknown_attachment")
        return attachment, folder / attachment_id

    # -- the index, retention
    async def open(self) -> None:
        """Rebuild the index from disk (files written before a restart) and delete what is past retention."""
        found = await asyncio.to_thread(_scan, self.root)
        self._index = {a.id: a for a in found}
        await self.sweep()

    async def sweep(self) -> int:
        """Delete the files older than the retention time; returns how many."""
        cutoff = self._clock() - self.limits.retention_s
        expired = [a for a in self._index.values() if a.at <= cutoff]
        for attachment in expired:
            self._index.pop(attachment.id, None)  # unreadable from now on, even before the disk is done
        if expired:
            await asyncio.to_thread(_delete, self.root, expired)
        return len(expired)

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
