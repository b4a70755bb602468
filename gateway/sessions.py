"""Sessions outlive sockets: a client that reconnects with its resume token within the grace period gets its
session (and its call) back.

Every event delivered to a session gets the next number of that session's sequence (1, 2, 3 ...) and is kept in a
bounded replay buffer, whether a socket is attached or not: a socket that died silently may have swallowed what was
written to it, so a client that resumes says the last number it saw and gets everything after it again. A queue
position replaces the earlier position of the same call in the buffer (only the latest one matters)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

from .errors import BadRequest, Unauthorized
from .events import Event, QueueUpdate

REPLAY_EVENTS = 256
TOMBSTONES = 10_000  # how many ended sessions are remembered, to say why a late resume fails
TOMBSTONE_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class Numbered:
    """An event with its number in the session's sequence."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class Replay:
    """What a socket gets right after its welcome: the events it missed, and whether that is all of them."""

    events: list[Numbered]
    complete: bool


class ResumeFailed(Unauthorized):
    """A resume that cannot be honoured; `why` (and the session's last call, if it ended) goes to the client."""

    code = "resume_failed"

    def __init__(self, reason: str, why: str, call: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.why = why
        self.call = call

    @property
    def detail(self) -> dict[str, Any]:
        return {"why": self.why, "call": self.call}


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Why a session is gone: expired (no socket within the grace period), closed (bye), replaced (an agent signed
    in again elsewhere) or shutdown."""

    why: str
    session_id: str
    role: str
    principal: Any
    at: float


def token_hash(token: str) -> str:
    """What is kept of a resume token (in memory and in a call's record): its sha256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _supersedes(event: Event) -> tuple[str, str] | None:
    if isinstance(event, QueueUpdate):
        return ("queue.position", event.call_id)
    return None


@dataclass(eq=False)
class Session:
    id: str
    role: str  # "caller" or "agent"
    principal: Any  # CallerIdentity or AgentAccount
    resume_token: str
    call_id: str | None = None
    sink: Callable[[Numbered], None] | None = None
    closer: Callable[[], None] | None = None  # closes the attached socket when a newer one takes over
    replay_limit: int = REPLAY_EVENTS
    seq: int = 0  # the number of the last event delivered
    sent_seq: int = 0  # the number of the last event handed to a socket
    evicted_seq: int = 0  # the highest number pushed out of the full buffer (not replayable any more)
    buffer: deque[Numbered] = field(default_factory=deque)
    expiry: asyncio.TimerHandle | None = None
    ended: bool = False
    address: str | None = None  # the client's address when the session was opened (limits per address)
    detached: bool = False  # its socket went away without bye; within the grace period
    resume_hash: str = ""  # token_hash(resume_token)
    restored: bool = False  # read back from a call record after its node restarted: no socket has resumed it yet

    def __post_init__(self) -> None:
        if self.resume_token and not self.resume_hash:
            self.resume_hash = token_hash(self.resume_token)

    def deliver(self, event: Event) -> None:
        if self.ended:
            return
        self.seq += 1
        item = Numbered(self.seq, event)
        key = _supersedes(event)
        if key is not None:
            for old in self.buffer:
                if _supersedes(old.event) == key:
                    self.buffer.remove(old)  # superseded: replaying it would say nothing the new one does not
                    break
        self.buffer.append(item)
        while len(self.buffer) > self.replay_limit:
            self.evicted_seq = self.buffer.popleft().seq
        if self.sink is not None:
            self.sent_seq = self.seq
            self.sink(item)

    def continue_after(self, last_seq: int) -> None:
        """A restored session resumed by a client that saw events up to `last_seq` from the node that stopped:
        number on from there. What was queued meanwhile is renumbered; what the client may have missed before the
        restart is unknown (the replay says it is not complete; the welcome carries the call's state)."""
        items = list(self.buffer)
        self.buffer = deque(Numbered(last_seq + i, item.event) for i, item in enumerate(items, start=1))
        self.seq = self.sent_seq = last_seq + len(items)
        self.evicted_seq = last_seq + 1
        self.restored = False

    def replay_after(self, last_seq: int) -> Replay:
        return Replay([item for item in self.buffer if item.seq > last_seq], complete=last_seq >= self.evicted_seq)

    @property
    def attached(self) -> bool:
        return self.sink is not None


class SessionRegistry:
    def __init__(self, grace_s: float, on_expire: Callable[[Session], None], replay_events: int = REPLAY_EVENTS,
                 on_detached: Callable[[Session], None] | None = None,
                 on_resumed: Callable[[Session], None] | None = None) -> None:
        self._grace = grace_s
        self._on_expire = on_expire
        self._on_detached = on_detached
        self._on_resumed = on_resumed
        self._replay_events = replay_events
        self._by_id: dict[str, Session] = {}
        self._by_token: dict[str, Session] = {}
        self._gone: OrderedDict[str, Tombstone] = OrderedDict()
        # Sessions filed under keys (a caller's identity, its address): the members of one key, oldest first,
        # found without walking every session (limits per caller and per address, checked on each hello).
        self._groups: dict[Hashable, dict[str, Session]] = {}
        self._keys_of: dict[str, tuple[Hashable, ...]] = {}

    def create(self, role: str, principal: Any) -> Session:
        session = Session(id=secrets.token_hex(8), role=role, principal=principal,
                          resume_token=secrets.token_urlsafe(24), replay_limit=self._replay_events)
        self._by_id[session.id] = session
        self._by_token[session.resume_hash] = session
        return session

    def restore(self, role: str, principal: Any, resume_hash: str, call_id: str, grace_s: float) -> Session:
        """A session read back from a call record (its node restarted): detached, resumable with the token whose
        hash the record kept, for `grace_s`; then it expires as any detached session does."""
        session = Session(id=secrets.token_hex(8), role=role, principal=principal, resume_token="",
                          replay_limit=self._replay_events, call_id=call_id, resume_hash=resume_hash, restored=True,
                          detached=True)
        self._by_id[session.id] = session
        self._by_token[resume_hash] = session
        session.expiry = asyncio.get_running_loop().call_later(grace_s, self._expire, session)
        return session

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def of_role(self, role: str) -> list[Session]:
        """Live sessions of a role, oldest first."""
        return [s for s in self._by_id.values() if s.role == role]

    def file_under(self, session: Session, *keys: Hashable) -> None:
        """File a live session under `keys` until it is removed (see `members`)."""
        self._keys_of[session.id] = keys
        for key in keys:
            self._groups.setdefault(key, {})[session.id] = session

    def members(self, key: Hashable) -> Collection[Session]:
        """The live sessions filed under `key`, oldest first (a view: its len() costs nothing; read it before
        removing any session)."""
        return self._groups.get(key, {}).values()

    def resume(self, token: str, role: str, same_principal: Callable[[Any], bool],
               last_seq: int | None = None) -> Session:
        """The session of a resume token, checked (validate only: nothing changes until attach)."""
        session = self._by_token.get(token_hash(token))
        if session is None or session.ended:
            gone = self._tombstone(token)
            if gone is None:
                raise ResumeFailed("unknown resume token (never issued here, or the gateway restarted)", "unknown")
            if gone.role != role or not same_principal(gone.principal):
                raise ResumeFailed("the resume token belongs to someone else", "other_user")
            raise ResumeFailed(_GONE_REASONS.get(gone.why, "the session has ended"), gone.why)
        if session.role != role or not same_principal(session.principal):
            raise ResumeFailed("the resume token belongs to someone else", "other_user")
        if session.restored:
            session.resume_token = token  # the token the record's hash was made of: the client keeps using it
        elif last_seq is not None and last_seq > session.seq:
            raise BadRequest(f"last_seq {last_seq} is ahead of this session's events (last: {session.seq})",
                             code="invalid_last_seq")
        return session

    def gone(self, token: str) -> Tombstone | None:
        return self._tombstone(token)

    def _tombstone(self, token: str) -> Tombstone | None:
        key = token_hash(token)
        gone = self._gone.get(key)
        if gone is not None and time.monotonic() - gone.at > TOMBSTONE_TTL_S:
            self._gone.pop(key, None)
            return None
        return gone

    def attach(self, session: Session, sink: Callable[[Numbered], None],
               closer: Callable[[], None] | None = None, last_seq: int | None = None) -> Replay:
        """Attach a socket; returns what it must be sent after its welcome: the events after `last_seq` (without
        one: those never handed to a socket). A previous socket is replaced (and closed)."""
        if session.sink is not None and session.sink != sink and session.closer is not None:
            session.closer()
        session.closer = closer
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        if session.restored:
            session.continue_after(last_seq or 0)
            last_seq = last_seq or 0
        replay = session.replay_after(session.sent_seq if last_seq is None else last_seq)
        session.sink = sink
        session.sent_seq = session.seq
        was_detached, session.detached = session.detached, False
        if was_detached and self._on_resumed is not None:
            # After the caller of attach has sent the welcome and the replay: nothing may come before them.
            asyncio.get_running_loop().call_soon(self._resumed, session)
        return replay

    def _resumed(self, session: Session) -> None:
        if session.attached and not session.ended and self._on_resumed is not None:
            self._on_resumed(session)

    def detach(self, session: Session, sink: Callable[[Numbered], None]) -> None:
        if session.sink != sink:  # bound methods are new objects on each access: compare by equality
            return  # an older socket closing after a newer one attached
        session.sink = None
        if session.ended:
            self.remove(session)
            return
        loop = asyncio.get_running_loop()
        session.expiry = loop.call_later(self._grace, self._expire, session)
        session.detached = True
        if self._on_detached is not None:
            self._on_detached(session)

    def _expire(self, session: Session) -> None:
        session.expiry = None
        if session.sink is None:
            self.remove(session, why="expired")
            self._on_expire(session)

    def remove(self, session: Session, close_socket: bool = False, why: str = "closed") -> None:
        if close_socket and session.closer is not None:
            session.closer()
        if session.id in self._by_id:
            self._gone[session.resume_hash] = Tombstone(why, session.id, session.role, session.principal,
                                                         time.monotonic())
            while len(self._gone) > TOMBSTONES:
                self._gone.popitem(last=False)
        session.ended = True
        session.detached = False
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        self._by_id.pop(session.id, None)
        self._by_token.pop(session.resume_hash, None)
        for key in self._keys_of.pop(session.id, ()):
            group = self._groups.get(key)
            if group is not None:
                group.pop(session.id, None)
                if not group:
                    del self._groups[key]

    def __len__(self) -> int:
        return len(self._by_id)

    def close(self) -> None:
        for session in list(self._by_id.values()):
            self.remove(session, why="shutdown")


_GONE_REASONS = {
    "expired": "the session ended: no connection came back within the resume grace period",
    "closed": "the session was closed (bye)",
    "replaced": "the account signed in again elsewhere; that session has it now",
    "shutdown": "the gateway shut down",
}
