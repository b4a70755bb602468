"""Agent, supervisor and admin accounts, with argon2id password hashes (argon2-cffi)."""

from __future__ import annotations

import asyncio
import re
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from ..auth import AgentAccount
from ..config import check_skills
from ..errors import BadRequest, InvalidState, NotFound, Unauthorized, Unavailable
from ..models import now
from .db import Database
from .models import UserRow

USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,128}$")
MIN_PASSWORD = 10


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


def _account(row: UserRow) -> AgentAccount:
    return AgentAccount(username=row.username, display_name=row.display_name, role=row.role,
                        skills=tuple(row.skills or ()), capacity=row.capacity or 1)


def _skills(skills: list[str] | tuple[str, ...] | None) -> list[str]:
    try:
        return check_skills(list(skills or []))
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_skills") from None


class AccountStore:
    """Accounts in the database. Hashing and verifying run in a thread: argon2 is slow on purpose."""

    def __init__(self, db: Database, *, time_cost: int = 3, memory_kib: int = 64 * 1024, concurrency: int = 2,
                 queue: int = 64) -> None:
        self.db = db
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy_hash = self._hasher.hash("no-such-user-0123456789")
        # argon2 takes memory_kib per hash: a bound on hashes at once bounds the memory sign-in floods can take
        self._hash_slots = asyncio.Semaphore(concurrency)
        self._max_waiting = queue
        self._waiting = 0

    async def _hash_work(self, fn: Any, *args: str) -> Any:
        if self._hash_slots.locked() and self._waiting >= self._max_waiting:
            raise Unavailable("too many sign-ins at once; try again in a moment", code="sign_in_busy")
        self._waiting += 1
        try:
            await self._hash_slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._hash_slots.release()

    async def add(self, username: str, password: str, *, role: Role | str = Role.AGENT,
                  display_name: str | None = None, min_password: int = MIN_PASSWORD,
                  skills: list[str] | tuple[str, ...] | None = None, capacity: int = 1) -> AgentAccount:
        skill_list = _skills(skills)
        if not 1 <= capacity <= 10:
            raise BadRequest("capacity is 1-10 simultaneous calls", code="invalid_capacity")
        if not USERNAME.match(username):
            raise BadRequest("usernames are 1-128 letters, digits or . _ @ -", code="invalid_username")
        try:
            role = Role(role)
        except ValueError:
            raise BadRequest(f"role must be one of {', '.join(r.value for r in Role)}", code="invalid_role") from None
        if len(password) < min_password:
            raise BadRequest(f"passwords have at least {min_password} characters", code="weak_password")
        password_hash = await self._hash_work(self._hasher.hash, password)
        async with self.db.session() as session, session.begin():
            if await session.get(UserRow, username) is not None:
                raise InvalidState(f"the user {username} exists already", code="user_exists")
            row = UserRow(username=username, display_name=display_name or username, role=role.value,
                          password_hash=password_hash, created_at=now(), disabled=False, skills=skill_list,
                          capacity=capacity)
            session.add(row)
        return _account(row)

    async def check_password(self, username: str, password: str) -> AgentAccount:
        async with self.db.session() as session:
            row = await session.get(UserRow, username)
        # Verify even when the user is unknown, so timing does not tell which usernames exist.
        stored = row.password_hash if row is not None and not row.disabled else self._dummy_hash
        try:
            await self._hash_work(self._hasher.verify, stored, password)
            ok = row is not None and not row.disabled
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise Unauthorized("wrong username or password", code="bad_credentials")
        assert row is not None
        return _account(row)

    async def set_password(self, username: str, password: str, *, min_password: int = MIN_PASSWORD) -> None:
        if len(password) < min_password:
            raise BadRequest(f"passwords have at least {min_password} characters", code="weak_password")
        password_hash = await self._hash_work(self._hasher.hash, password)
        async with self.db.session() as session, session.begin():
            row = await session.get(UserRow, username)
            if row is None:
                raise NotFound(f"no user {username}", code="unknown_user")
            row.password_hash = password_hash

    async def get(self, username: str) -> AgentAccount | None:
        async with self.db.session() as session:
            row = await session.get(UserRow, username)
        return _account(row) if row is not None and not row.disabled else None

    async def list(self) -> list[dict[str, object]]:
        async with self.db.session() as session:
            rows = (await session.scalars(select(UserRow).order_by(UserRow.username))).all()
        return [{"username": r.username, "display_name": r.display_name, "role": r.role,
                 "created_at": r.created_at, "disabled": r.disabled, "skills": list(r.skills or []),
                 "capacity": r.capacity or 1} for r in rows]

    async def set_routing(self, username: str, *, skills: list[str] | None = None,
                          capacity: int | None = None) -> AgentAccount:
        """Change an account's skills and/or capacity (taken into account at the agent's next sign-in)."""
        skill_list = _skills(skills) if skills is not None else None
        if capacity is not None and not 1 <= capacity <= 10:
            raise BadRequest("capacity is 1-10 simultaneous calls", code="invalid_capacity")
        async with self.db.session() as session, session.begin():
            row = await session.get(UserRow, username)
            if row is None:
                raise NotFound(f"no user {username}", code="unknown_user")
            if skill_list is not None:
                row.skills = skill_list
            if capacity is not None:
                row.capacity = capacity
        return _account(row)

    async def exists(self, username: str) -> bool:
        async with self.db.session() as session:
            return await session.get(UserRow, username) is not None
