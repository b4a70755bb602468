"""Queue order, agent selection and wait estimates."""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass, field

from .calls import Call
from .models import AgentStatus


class CallQueue:
    """Waiting calls in answer order: higher priority first, then first come first served."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, Call]] = {}
        self._seq = itertools.count()

    def add(self, call: Call) -> None:
        self._entries[call.id] = (-call.priority, next(self._seq), call)

    def remove(self, call_id: str) -> None:
        self._entries.pop(call_id, None)

    def take_place(self, call: Call, old_id: str) -> None:
        """Queue `call` where `old_id` stood (same arrival order, its own priority) and drop `old_id`."""
        old = self._entries.pop(old_id, None)
        self._entries[call.id] = (-call.priority, old[1] if old else next(self._seq), call)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def ordered(self) -> list[Call]:
        return [entry[2] for entry in sorted(self._entries.values(), key=lambda e: (e[0], e[1]))]

    def positions(self) -> dict[str, int]:
        return {call.id: i + 1 for i, call in enumerate(self.ordered())}


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
