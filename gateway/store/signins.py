"""Server-side agent sessions ("sign-ins"). A session token looks like `as_<id>_<secret>`: the id is the row's key,
only a SHA-256 of the secret is stored. A session lives `ttl_s` past its last refresh and never past `max_s`
after sign-in; sign-out, a password change or an admin revokes it, and every later use is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from ..auth import MAX_TOKEN_BYTES, ExpiredToken, TokenError
from ..errors import NotFound
from ..models import now
from .db import Database
from .models import SignInRow

PREFIX = "as_"


class SessionRevoked(TokenError):
    code = "session_revoked"


@dataclass(frozen=True, slots=True)
class SignIn:
    id: str
    username: str
    created_at: float
    expires_at: float
    ends_at: float
    revoked_at: float | None = None
    address: str | None = None

    def public(self) -> dict[str, object]:
        return {"id": self.id, "username": self.username, "created_at": self.created_at,
                "expires_at": self.expires_at, "ends_at": self.ends_at, "address": self.address}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _signin(row: SignInRow) -> SignIn:
    return SignIn(id=row.id, username=row.username, created_at=row.created_at, expires_at=row.expires_at,
                  ends_at=row.ends_at, revoked_at=row.revoked_at, address=row.address)


def looks_like_session_token(token: str) -> bool:
    return token.startswith(PREFIX)


class SignInStore:
    def __init__(self, db: Database, *, ttl_s: float, max_s: float, clock: Callable[[], float] = now) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_s = max(max_s, ttl_s)
        self._clock = clock

    async def open(self, username: str, address: str | None = None) -> tuple[SignIn, str]:
        """A new session for the account; returns it with its token (shown only here)."""
        t = self._clock()
        sid, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row = SignInRow(id=sid, username=username, secret_hash=_hash(secret), created_at=t,
                        expires_at=min(t + self.ttl_s, t + self.max_s), ends_at=t + self.max_s,
                        address=(address or "")[:64] or None)
        async with self.db.session() as session, session.begin():
            session.add(row)
        return _signin(row), f"{PREFIX}{sid}_{secret}"

    async def verify(self, token: str) -> SignIn:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("an agent session token is required")
        sid, _, secret = token.removeprefix(PREFIX).partition("_")
        if not token.startswith(PREFIX) or not sid or not secret:
            raise TokenError("the agent session token is not valid")
        async with self.db.session() as session:
            row = await session.get(SignInRow, sid)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise TokenError("the agent session token is not valid")
        if row.revoked_at is not None:
            raise SessionRevoked("this session was ended; sign in again")
        if row.expires_at <= self._clock():
            raise ExpiredToken("the agent session has expired; sign in again")
        return _signin(row)

    async def refresh(self, sid: str) -> SignIn:
        """Moves the session's expiry to ttl_s from now (not past its absolute end)."""
        t = self._clock()
        async with self.db.session() as session, session.begin():
            row = await session.get(SignInRow, sid)
            if row is None or row.revoked_at is not None:
                raise SessionRevoked("this session was ended; sign in again")
            if row.expires_at <= t:
                raise ExpiredToken("the agent session has expired; sign in again")
            row.expires_at = min(t + self.ttl_s, row.ends_at)
        return _signin(row)

    async def revoke(self, sid: str, reason: str) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(update(SignInRow).where(SignInRow.id == sid, SignInRow.revoked_at.is_(None))
                                  .values(revoked_at=self._clock(), revoked_reason=reason[:32]))

    async def revoke_user(self, username: str, reason: str, *, keep: str | None = None) -> list[str]:
        """Ends every live session of the account (but `keep`); returns the ids ended."""
        t = self._clock()
        async with self.db.session() as session, session.begin():
            rows = (await session.scalars(select(SignInRow).where(
                SignInRow.username == username, SignInRow.revoked_at.is_(None), SignInRow.expires_at > t))).all()
            ended = [r.id for r in rows if r.id != keep]
            if ended:
                await session.execute(update(SignInRow).where(SignInRow.id.in_(ended))
                                      .values(revoked_at=t, revoked_reason=reason[:32]))
        return ended

    async def live(self, username: str) -> list[SignIn]:
        t = self._clock()
        async with self.db.session() as session:
            rows = (await session.scalars(select(SignInRow).where(
                SignInRow.username == username, SignInRow.revoked_at.is_(None), SignInRow.expires_at > t)
                .order_by(SignInRow.created_at))).all()
        return [_signin(r) for r in rows]

    async def still_live(self, sids: list[str]) -> set[str]:
        """Which of these sessions are neither revoked nor expired (for closing sockets of ended ones)."""
        if not sids:
            return set()
        t = self._clock()
        async with self.db.session() as session:
            rows = (await session.scalars(select(SignInRow.id).where(
                SignInRow.id.in_(sids), SignInRow.revoked_at.is_(None), SignInRow.expires_at > t))).all()
        return set(rows)

    async def get(self, sid: str) -> SignIn:
        async with self.db.session() as session:
            row = await session.get(SignInRow, sid)
        if row is None:
            raise NotFound(f"no session {sid}", code="unknown_session")
        return _signin(row)
