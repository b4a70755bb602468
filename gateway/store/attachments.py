"""Files exchanged in a call (chat attachments, app screenshots, snapshots), kept with the call on disk.

Types are checked by content (magic bytes), not by what the client claims; sizes are capped.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import GatewayError, NotFound

SIGNATURES: list[tuple[str, bytes, int]] = [
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF8", 0),
    ("image/webp", b"WEBP", 8),
    ("application/pdf", b"%PDF-", 0),
]
ALLOWED = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


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

    def public(self) -> dict[str, object]:
        data = asdict(self)
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


class AttachmentStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _dir(self, call_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{1,64}", call_id):
            raise NotFound("no such call", code="unknown_call")
        return self.root / call_id

    def save(self, call_id: str, name: str, data: bytes, uploaded_by: str) -> Attachment:
        if not data:
            raise AttachmentError("the file is empty", code="empty_attachment")
        if len(data) > self.max_bytes:
            raise AttachmentError(f"files are at most {self.max_bytes} bytes", code="attachment_too_large")
        mime = sniff(data)
        if mime not in ALLOWED:
            raise AttachmentError("only PNG, JPEG, GIF, WebP, PDF and plain text files are accepted",
                                  code="attachment_type")
        clean = _NAME.sub("_", name).strip() or "file"
        attachment = Attachment(id=secrets.token_hex(8), call_id=call_id, name=clean[:120], mime=mime, size=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), uploaded_by=uploaded_by, at=time.time())
        folder = self._dir(call_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / attachment.id).write_bytes(data)
        (folder / f"{attachment.id}.json").write_text(json.dumps(asdict(attachment)))
        return attachment

    def get(self, call_id: str, attachment_id: str) -> tuple[Attachment, Path]:
        if not re.fullmatch(r"[0-9a-f]{16}", attachment_id):
            raise NotFound("no such attachment", code="unknown_attachment")
        folder = self._dir(call_id)
        meta = folder / f"{attachment_id}.json"
        if not meta.is_file():
            raise NotFound("no such attachment", code="unknown_attachment")
        return Attachment(**json.loads(meta.read_text())), folder / attachment_id
