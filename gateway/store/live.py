"""Live state of the engine: calls by id, the waiting lines, agent presence, wait estimators, media legs, sessions
and timers.

The Protocols here are what the engine (gateway/engine/) is written against. The memory implementations keep it in
this process (one node): `MemoryLiveState` for calls, lines, presence, estimates and legs; `SessionRegistry`
(gateway/sessions.py) for sessions and resume tokens; `Timers` (gateway/engine/timers.py) for timers. They are the
only implementations, also with several nodes: each node keeps the calls homed on it, its agents and its timers in
process and mirrors into Redis only what routing needs (gateway/store/redis_routing.py, redis_line.py); a dead node's
callers and promises are restored by the node that takes them over. `Switchboard(live=..., sessions=...,
timers=...)` takes the stores it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator
from typing import Any, Protocol

from ..callerguard import subject_key
from ..calls import Call
from ..models import CallerIdentity, CallState
from ..routing import AgentState, CallQueue, WaitEstimator
from ..sessions import Numbered, Replay, Session, Tombstone

Leg = tuple[str, str, str]  # (call id, participant, label told to others: "caller", "agent" or a username)


class WaitingLines(Protocol):
    """The waiting calls of every named queue in answer order (gateway/routing.py CallQueue is the memory one)."""

    def add(self, call: Call, first: bool = False) -> None: ...
    def remove(self, call_id: str) -> None: ...
    def take_place(self, call: Call, old_id: str) -> None: ...
    def take_moved(self) -> dict[str, int]: ...
    def __contains__(self, call_id: object) -> bool: ...
    def __len__(self) -> int: ...
    def ordered(self) -> list[Call]: ...
    def ordered_in(self, names: list[str]) -> Iterator[Call]: ...
    def names(self) -> list[str]: ...
    def length(self, name: str) -> int: ...
    def line(self, name: str, start: int = 1) -> Iterator[tuple[int, Call]]: ...
    def rank(self, call_id: str) -> tuple[int, int] | None: ...


class CallStore(Protocol):
    """Calls by id (ended ones stay readable a while) and the live calls of each caller identity."""

    def call(self, call_id: str | None) -> Call | None: ...
    def add_call(self, call: Call) -> None: ...
    def all_calls(self) -> Iterator[Call]: ...
    def live_calls_of(self, identity: CallerIdentity) -> list[Call]: ...
    def call_ended(self, call: Call) -> None: ...
    def forget_call(self, call_id: str) -> None: ...


class AgentPresence(Protocol):
    """Each agent's live state (status, session, call, skills) by username."""

    def agent(self, username: str | None) -> AgentState | None: ...
    def add_agent(self, agent: AgentState) -> None: ...
    def all_agents(self) -> Iterator[AgentState]: ...


class Estimates(Protocol):
    """Recent handle times per queue (what wait estimates are made of)."""

    def estimator(self, queue: str) -> WaitEstimator: ...
    def known_estimator(self, queue: str) -> WaitEstimator | None: ...


class MediaLegs(Protocol):
    """Which participant (and label) each media leg of the plane belongs to."""

    def track_leg(self, leg_id: str, call_id: str, participant: str, label: str) -> None: ...
    def untrack_legs(self, call_id: str, participant: str | None = None) -> None: ...
    def leg(self, leg_id: str) -> Leg | None: ...
    def leg_of(self, call_id: str, participant: str) -> str | None: ...


class SessionStore(Protocol):
    """Participants' sessions: created on hello, found by id or resume token, filed under keys (a caller identity,
    an address), attached to a socket or detached within the resume grace, removed with a tombstone that says why
    (gateway/sessions.py SessionRegistry is the memory one)."""

    def create(self, role: str, principal: Any) -> Session: ...
    def restore(self, role: str, principal: Any, resume_hash: str, call_id: str, grace_s: float) -> Session: ...
    def get(self, session_id: str) -> Session | None: ...
    def of_role(self, role: str) -> list[Session]: ...
    def file_under(self, session: Session, *keys: Hashable) -> None: ...
    def members(self, key: Hashable) -> Collection[Session]: ...
    def resume(self, token: str, role: str, same_principal: Callable[[Any], bool],
               last_seq: int | None = None) -> Session: ...
    def gone(self, token: str) -> Tombstone | None: ...
    def attach(self, session: Session, sink: Callable[[Numbered], None],
               closer: Callable[[], None] | None = None, last_seq: int | None = None) -> Replay: ...
    def detach(self, session: Session, sink: Callable[[Numbered], None]) -> None: ...
    def remove(self, session: Session, close_socket: bool = False, why: str = "closed") -> None: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class TimerRegistry(Protocol):
    """Named timers as data: `<group>:<kind>`, a delay and string arguments; a handler per kind, registered once.
    Kept in the node's process (gateway/engine/timers.py Timers, the one implementation): no registry shared between
    nodes."""

    def on(self, kind: str, handler: Callable[..., None]) -> None: ...
    def set(self, name: str, delay: float, *args: str) -> None: ...
    def cancel(self, name: str) -> bool: ...
    def cancel_group(self, group: str) -> int: ...
    def cancel_prefix(self, prefix: str) -> int: ...
    def pending(self, name: str) -> tuple[float, tuple[str, ...]] | None: ...
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class LiveState(CallStore, AgentPresence, Estimates, MediaLegs, Protocol):
    """Calls, lines, presence, estimates and legs (sessions and timers: SessionStore and TimerRegistry)."""

    @property
    def line(self) -> WaitingLines: ...

    def clear(self) -> None: ...


class MemoryLiveState:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}
        self._by_subject: dict[tuple[str | None, str], dict[str, Call]] = {}  # live calls per caller identity
        self.agents: dict[str, AgentState] = {}
        self._line = CallQueue()
        self.estimators: dict[str, WaitEstimator] = {"default": WaitEstimator()}
        self._legs: dict[str, Leg] = {}  # leg id -> (call id, participant, label)
        self._legs_of: dict[str, dict[str, str]] = {}  # call id -> participant -> leg id (no walk over every leg)

    # -- calls ---------------------------------------------------------------------------------------------
    def call(self, call_id: str | None) -> Call | None:
        return self.calls.get(call_id or "")

    def add_call(self, call: Call) -> None:
        self.calls[call.id] = call
        self._by_subject.setdefault(subject_key(call.identity), {})[call.id] = call

    def all_calls(self) -> Iterator[Call]:
        return iter(list(self.calls.values()))

    def live_calls_of(self, identity: CallerIdentity) -> list[Call]:
        """The calls of one caller identity that have not ended (kept per identity: no walk over every call)."""
        return [c for c in self._by_subject.get(subject_key(identity), {}).values()
                if c.state is not CallState.ENDED]

    def call_ended(self, call: Call) -> None:
        """The call ended: it no longer counts as one of its caller's live calls (it stays readable by id)."""
        key = subject_key(call.identity)
        mine = self._by_subject.get(key)
        if mine is not None:
            mine.pop(call.id, None)
            if not mine:
                del self._by_subject[key]

    def forget_call(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    # -- agents --------------------------------------------------------------------------------------------
    def agent(self, username: str | None) -> AgentState | None:
        return self.agents.get(username or "")

    def add_agent(self, agent: AgentState) -> None:
        self.agents[agent.username] = agent

    def all_agents(self) -> Iterator[AgentState]:
        return iter(list(self.agents.values()))

    # -- waiting lines and estimates -----------------------------------------------------------------------
    @property
    def line(self) -> CallQueue:
        return self._line

    def estimator(self, queue: str) -> WaitEstimator:
        return self.estimators.setdefault(queue, WaitEstimator())

    def known_estimator(self, queue: str) -> WaitEstimator | None:
        return self.estimators.get(queue)

    # -- media legs ----------------------------------------------------------------------------------------
    def track_leg(self, leg_id: str, call_id: str, participant: str, label: str) -> None:
        """A participant has one current leg: an earlier one of the same participant is forgotten."""
        self.untrack_legs(call_id, participant)
        self._legs[leg_id] = (call_id, participant, label)
        self._legs_of.setdefault(call_id, {})[participant] = leg_id

    def untrack_legs(self, call_id: str, participant: str | None = None) -> None:
        of_call = self._legs_of.get(call_id)
        if of_call is None:
            return
        for who in list(of_call) if participant is None else [participant]:
            leg_id = of_call.pop(who, None)
            if leg_id is not None:
                self._legs.pop(leg_id, None)
        if not of_call:
            del self._legs_of[call_id]

    def leg(self, leg_id: str) -> Leg | None:
        return self._legs.get(leg_id)

    def leg_of(self, call_id: str, participant: str) -> str | None:
        """The participant's current leg in the call, if it has one."""
        return self._legs_of.get(call_id, {}).get(participant)

    def clear(self) -> None:
        """Forget the media legs (the engine closed); calls stay readable for late requests."""
        self._legs.clear()
        self._legs_of.clear()
