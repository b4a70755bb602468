"""Integrator API keys for the REST API. Only a SHA-256 of the secret part is stored; the key is shown once.

A key looks like `ck_<id>_<secret>`; the id is public (listing, revoking), the secret is 32 random bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from ..errors import NotFound, Unauthorized
from ..models import now
from .db import Database
from .models import ApiKeyRow

PREFIX = "ck_"


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    name: str
    created_at: float
    created_by: str | None
    revoked_at: float | None
    last_used_at: float | None

    def public(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at, "created_by": self.created_by,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at, "revoked": self.revoked_at is not None}


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, name=row.name, created_at=row.created_at, created_by=row.created_by,
                      revoked_at=row.revoked_at, last_used_at=row.last_used_at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(value: str) -> bool:
    return value.startswith(PREFIX)


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, created_by: str | None = None) -> tuple[ApiKeyInfo, str]:
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        row = ApiKeyRow(id=key_id, name=name, secret_hash=_digest(secret), created_at=now(), created_by=created_by)
        async with self.db.session() as session, session.begin():
            session.add(row)
        return _info(row), f"{PREFIX}{key_id}_{secret}"

    async def list(self) -> list[ApiKeyInfo]:
        async with self.db.session() as session:
            rows = (await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))).all()
        return [_info(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKeyInfo:
        async with self.db.session() as session, session.begin():
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFound(f"no API key {key_id}", code="unknown_api_key")
            if row.revoked_at is None:
                row.revoked_at = now()
            return _info(row)

    async def verify(self, key: str) -> ApiKeyInfo:
        body = key[len(PREFIX):] if key.startswith(PREFIX) else ""
        key_id, _, secret = body.partition("_")
        if not key_id or not secret or len(key) > 256:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        async with self.db.session() as session, session.begin():
            row = await session.get(ApiKeyRow, key_id)
            expected = row.secret_hash if row is not None else _digest(secrets.token_hex(8))
            if not hmac.compare_digest(expected, _digest(secret)) or row is None:
                raise Unauthorized("the API key is not valid", code="invalid_api_key")
            if row.revoked_at is not None:
                raise Unauthorized("this API key was revoked", code="api_key_revoked")
            row.last_used_at = now()
            return _info(row)
