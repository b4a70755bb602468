"""Sessions outlive sockets: a client that reconnects with its resume token within the grace period gets its
session (and its call) back. While detached, events are kept in a bounded backlog."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Unauthorized
from .events import Event

BACKLOG = 64


@dataclass(eq=False)
class Session:
    id: str
    role: str  # "caller" or "agent"
    principal: Any  # CallerIdentity or AgentAccount
    resume_token: str
    call_id: str | None = None
    sink: Callable[[Event], None] | None = None
    closer: Callable[[], None] | None = None  # closes the attached socket when a newer one takes over
    backlog: deque[Event] = field(default_factory=lambda: deque(maxlen=BACKLOG))
    expiry: asyncio.TimerHandle | None = None
    ended: bool = False
    address: str | None = None  # the client's address when the session was opened (limits per address)

    def deliver(self, event: Event) -> None:
        if self.ended:
            return
        if self.sink is not None:
            self.sink(event)
        else:
            self.backlog.append(event)

    @property
    def attached(self) -> bool:
        return self.sink is not None


class SessionRegistry:
    def __init__(self, grace_s: float, on_expire: Callable[[Session], None]) -> None:
        self._grace = grace_s
        self._on_expire = on_expire
        self._by_id: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}

    def create(self, role: str, principal: Any) -> Session:
        session = Session(id=secrets.token_hex(8), role=role, principal=principal, resume_token=secrets.token_urlsafe(24))
        self._by_id[session.id] = session
        self._by_token[session.resume_token] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def of_role(self, role: str) -> list[Session]:
        """Live sessions of a role, oldest first."""
        return [s for s in self._by_id.values() if s.role == role]

    def resume(self, token: str, role: str, same_principal: Callable[[Any], bool]) -> Session:
        session = self._by_token.get(token)
        if session is None or session.role != role or session.ended:
            raise Unauthorized("unknown or expired resume token", code="resume_failed")
        if not same_principal(session.principal):
            raise Unauthorized("the resume token belongs to someone else", code="resume_failed")
        return session

    def attach(self, session: Session, sink: Callable[[Event], None],
               closer: Callable[[], None] | None = None) -> list[Event]:
        """Attach a socket; returns the events it missed. A previous socket is replaced (and closed)."""
        if session.sink is not None and session.sink != sink and session.closer is not None:
            session.closer()
        session.closer = closer
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        session.sink = sink
        missed = list(session.backlog)
        session.backlog.clear()
        return missed

    def detach(self, session: Session, sink: Callable[[Event], None]) -> None:
        if session.sink != sink:  # bound methods are new objects on each access: compare by equality
            return  # an older socket closing after a newer one attached
        session.sink = None
        if session.ended:
            self.remove(session)
            return
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self._grace, self._expire, session)

    def _expire(self, session: Session) -> None:
        session.expiry = None
        if session.sink is None:
            self.remove(session)
            self._on_expire(session)

    def remove(self, session: Session, close_socket: bool = False) -> None:
        if close_socket and session.closer is not None:
            session.closer()
        session.ended = True
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self._by_id.pop(session.id, None)
        self._by_token.pop(session.resume_token, None)

    def __len__(self) -> int:
        return len(self._by_id)

    def close(self) -> None:
        for session in list(self._by_id.values()):
            self.remove(session)
