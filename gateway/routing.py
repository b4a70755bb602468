"""Queue order, agent selection and wait estimates."""

from __future__ import annotations

import heapq
import itertools
import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .calls import Call
from .models import AgentStatus


FIRST_OFFSET = 10**15  # arrival keys of calls queued first sort before every other call's


class CallQueue:
    """Waiting calls in answer order: higher priority first, then first come first served.

    Kept sorted as calls come and go (bisect over (-priority, arrival) keys), overall and per named queue, so a
    join or a leave costs O(log n) comparisons and a caller's rank is found without sorting anything. Each
    change records, per named queue, the first rank whose position moved (`take_moved`), so that positions are
    recomputed only from there on. Per named queue it also keeps its calls by when their callers began to wait
    (`waits`: how many wait and since when, without walking the calls)."""

    def __init__(self) -> None:
        # call id -> (key, queue name, call, when its caller began to wait as it joined)
        self._entries: dict[str, tuple[tuple[int, int], str, Call, float]] = {}
        self._keys: list[tuple[int, int]] = []  # every waiting call, sorted
        self._calls: dict[tuple[int, int], Call] = {}
        self._lines: dict[str, list[tuple[int, int]]] = {}  # queue name -> its keys, sorted
        self._since: dict[str, list[tuple[float, tuple[int, int]]]] = {}  # queue name -> (waited since, key), sorted
        self._moved: dict[str, int] = {}  # queue name -> first rank (1-based) whose position changed
        self._seq = itertools.count()

    def add(self, call: Call, first: bool = False) -> None:
        """Queue `call` behind the calls of its priority, or (`first`) ahead of them (a caller whose call was cut
        off; several such keep their order among themselves)."""
        self.remove(call.id)
        self._insert(call, (-call.priority, next(self._seq) - (FIRST_OFFSET if first else 0)))

    def _insert(self, call: Call, key: tuple[int, int]) -> None:
        since = call.waited_since
        self._entries[call.id] = (key, call.queue, call, since)
        self._calls[key] = call
        insort(self._keys, key)
        line = self._lines.setdefault(call.queue, [])
        insort(line, key)
        insort(self._since.setdefault(call.queue, []), (since, key))
        self._mark(call.queue, bisect_left(line, key) + 1)

    def remove(self, call_id: str) -> None:
        entry = self._entries.pop(call_id, None)
        if entry is None:
            return
        key, name, _, since = entry
        del self._calls[key]
        del self._keys[bisect_left(self._keys, key)]
        line = self._lines[name]
        index = bisect_left(line, key)
        del line[index]
        waits = self._since[name]
        del waits[bisect_left(waits, (since, key))]
        if not line:
            del self._lines[name]
            del self._since[name]
        self._mark(name, index + 1)

    def _mark(self, name: str, rank: int) -> None:
        self._moved[name] = min(rank, self._moved.get(name, rank))

    def take_moved(self) -> dict[str, int]:
        """Per named queue, the first rank whose call changed since the last call (then forgotten)."""
        moved, self._moved = self._moved, {}
        return moved

    def take_place(self, call: Call, old_id: str) -> None:
        """Queue `call` where `old_id` stood (same arrival order, its own priority) and drop `old_id`."""
        old = self._entries.get(old_id)
        arrival = old[0][1] if old is not None else next(self._seq)
        self.remove(old_id)
        self.remove(call.id)
        self._insert(call, (-call.priority, arrival))

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Call]:
        """The waiting calls in answer order (do not add or remove while iterating)."""
        return (self._calls[key] for key in self._keys)

    def ordered(self) -> list[Call]:
        return list(self)

    def ordered_in(self, names: list[str]) -> Iterator[Call]:
        """The waiting calls of some named queues, in answer order, walked lazily (stop early to pay only for what
        was looked at; do not add or remove calls meanwhile)."""
        lines = [self._lines[name] for name in names if name in self._lines]
        keys = iter(lines[0]) if len(lines) == 1 else heapq.merge(*lines)
        return (self._calls[key] for key in keys)

    def names(self) -> list[str]:
        """The named queues that have waiting calls."""
        return list(self._lines)

    def length(self, name: str) -> int:
        return len(self._lines.get(name, ()))

    def waits(self) -> dict[str, tuple[int, float]]:
        """Per named queue with waiting calls: (how many, when the longest-waiting of their callers began to wait,
        Call.waited_since as the call joined the line)."""
        return {name: (len(keys), self._since[name][0][0]) for name, keys in self._lines.items()}

    def line(self, name: str, start: int = 1) -> Iterator[tuple[int, Call]]:
        """(position, call) of one named queue, from position `start` on."""
        keys = self._lines.get(name, [])
        calls = self._calls
        return ((index + 1, calls[keys[index]]) for index in range(max(0, start - 1), len(keys)))

    def rank(self, call_id: str) -> tuple[int, int] | None:
        """(position in its named queue, that queue's length), or None if the call is not waiting."""
        entry = self._entries.get(call_id)
        if entry is None:
            return None
        key, name, _, _ = entry
        line = self._lines[name]
        return bisect_left(line, key) + 1, len(line)

    def positions(self) -> dict[str, int]:
        """call id -> position among every waiting call (all queues together)."""
        return {call.id: i + 1 for i, call in enumerate(self)}


@dataclass
class AgentState:
    username: str
    display_name: str
    status: AgentStatus = AgentStatus.OFFLINE
    idle_since: float = 0.0
    call_id: str | None = None
    missed_rings: int = 0
    session_id: str | None = None
    skills: frozenset[str] = frozenset()
    capacity: int = 1
    wrap_up_call: str | None = None  # the call being wrapped up while status is WRAP_UP
    wrap_up_started: float = 0.0  # when that wrap-up began (wrap_up.extend stops at wrap_up_max_s after it)

    def can_take(self, skills: frozenset[str]) -> bool:
        return skills <= self.skills


def pick_agent(agents: list[AgentState], exclude: set[str], skills: frozenset[str] = frozenset()) -> AgentState | None:
    """The longest-idle available agent with every required skill, not excluded (declined or already rang out for
    this call)."""
    candidates = [a for a in agents
                  if a.status is AgentStatus.AVAILABLE and a.username not in exclude and a.can_take(skills)]
    if not candidates:
        return None
    return min(candidates, key=lambda a: a.idle_since)


@dataclass
class WaitEstimator:
    """Estimated wait = ceil(position / staffed agents) x average handle time of recent calls (one per queue)."""

    default_handle_s: float = 180.0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=50))

    def record_handle_time(self, seconds: float) -> None:
        self.recent.append(max(0.0, seconds))

    @property
    def average_handle_s(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else self.default_handle_s

    def estimate(self, position: int, staffed: int, ready: int = 0) -> int | None:
        """`ready`: agents free now or ringing (the first `ready` callers are being connected: no wait)."""
        if staffed <= 0:
            return None
        if position <= ready:
            return 0
        return int(math.ceil((position - ready) / staffed) * self.average_handle_s)
