"""Read-only views of the engine for signaling, REST, metrics and the wallboard: a call, an agent, the waiting
calls, places in line and wait estimates, the snapshot and the wallboard; and the look-ups that check a session
may touch a call. Nothing here changes live state."""

from __future__ import annotations

from typing import Any

from ..calls import Call
from ..errors import Forbidden, NotFound
from ..models import AgentStatus, CallState, now
from ..queues import Queue
from ..routing import AgentState
from ..sessions import Session
from .core import Core
from .presence import Presence

Place = tuple[Call, int, int, int | None]  # (call, position in its queue, that queue's length, estimated wait)


class Views:
    def __init__(self, core: Core, presence: Presence) -> None:
        self.core = core
        self.presence = presence
        self.estimate_inputs: dict[str, tuple[int, int, float]] = {}  # per queue, as last published
        # Several nodes (signaling/cluster_calls.py): places and staffing over the whole cluster, as last read from
        # the shared line; None: this node's own line and agents are the whole picture.
        self.shared_places: dict[str, tuple[int, int]] | None = None  # call id -> (position, queue length)
        self.shared_staff: dict[str, tuple[int, int]] | None = None  # queue -> (staffed, ready), every node
        self.shared_lengths: dict[str, int] | None = None  # queue -> calls waiting, every node

    # -- one thing -----------------------------------------------------------------------------------------
    def call(self, call_id: str | None) -> Call | None:
        return self.core.live.call(call_id)

    def agent(self, username: str | None) -> AgentState | None:
        return self.core.live.agent(username)

    def queue_of(self, call: Call) -> Queue:
        queues = self.core.queues
        if call.queue in queues:
            return queues.get(call.queue)
        return queues.get("default")  # its queue was removed by an admin while the call was live

    # -- many ----------------------------------------------------------------------------------------------
    def waiting_calls(self, queue: str | None = None) -> list[Call]:
        """The waiting calls in answer order (of one named queue, or all)."""
        calls = self.core.live.line.ordered()
        return calls if queue is None else [c for c in calls if c.queue == queue]

    def waiting_count(self) -> int:
        return len(self.core.live.line)

    def waiting_lines(self) -> dict[str, tuple[int, float]]:
        """Per named queue with waiting calls: (how many wait, when the longest-waiting caller began to wait), as
        the line keeps them (no walk over the calls)."""
        return self.core.live.line.waits()

    def active_calls(self) -> int:
        return sum(1 for c in self.core.live.all_calls() if c.state is not CallState.ENDED)

    def agents_with_status(self, status: AgentStatus) -> int:
        return sum(1 for a in self.core.live.all_agents() if a.status is status)

    def average_handle_s(self, queue: str) -> float | None:
        """The queue's average handle time of recent calls, None if no call of it was ever estimated."""
        estimator = self.core.live.known_estimator(queue)
        return estimator.average_handle_s if estimator is not None else None

    def queue_names(self) -> set[str]:
        return {queue.name for queue in self.core.queues.all()}

    # -- sessions and calls ------------------------------------------------------------------------------
    def caller_call(self, session: Session, call_id: str | None) -> Call:
        call = self.core.live.call(call_id or session.call_id)
        if call is None or call.caller_session != session.id:
            raise NotFound("no such call for this caller", code="unknown_call")
        return call

    def agent_and_call(self, session: Session, call_id: str) -> tuple[AgentState, Call]:
        state = self.presence.agent_state(session)
        call = self.core.live.call(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="unknown_call")
        return state, call

    def agent_call(self, session: Session, call_id: str) -> Call:
        state, call = self.agent_and_call(session, call_id)
        if not self.is_participant(call, state.username):
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        return call

    def agent_media_call(self, session: Session, call_id: str) -> Call:
        """A call this agent may send media for (its offer, its ICE candidates): as a participant, or while it
        rings there (see rings_at)."""
        state, call = self.agent_and_call(session, call_id)
        if not self.is_participant(call, state.username) and not self.rings_at(call, state.username):
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        return call

    @staticmethod
    def is_participant(call: Call, username: str) -> bool:
        """The agent, a consulted colleague who joined, or a supervisor: may send media for the call."""
        return username == call.agent or (username == call.consult and call.consult_joined) \
            or username in call.supervisors

    @staticmethod
    def rings_at(call: Call, username: str) -> bool:
        """The call rings at this agent, not yet accepted: its console may set up its media leg now, which the
        relay keeps out of the call's scene (nothing flows either way) until the agent accepts."""
        return call.state is CallState.OFFERED and call.offered_to == username and call.agent is None

    def participant_sessions(self, call: Call) -> list[str]:
        """The caller's and the call's agent's sessions."""
        ids = [call.caller_session]
        agent = self.core.live.agent(call.agent)
        if agent is not None and agent.session_id:
            ids.append(agent.session_id)
        return ids

    # -- places in line and estimates -------------------------------------------------------------------
    def ready(self, queue: str) -> int:
        """Callers of this queue who are being connected now: its calls ringing at an agent, plus the agents with
        its skills who are free."""
        live = self.core.live
        skills = self.core.queues.get(queue).skills
        ringing = 0
        for agent in live.all_agents():  # a waiting call rings at most one agent: count from the agents' side
            call = live.call(agent.call_id) if agent.status is AgentStatus.RINGING else None
            if call is not None and call.state is CallState.OFFERED and call.offered_to == agent.username \
                    and call.queue == queue and call.id in live.line:
                ringing += 1
        free = sum(1 for a in live.all_agents() if a.status is AgentStatus.AVAILABLE and a.can_take(skills))
        return ringing + free

    def staffed(self, queue: str) -> int:
        """Agents who may answer this queue's callers (signed in, not away): of every node, with several."""
        if self.shared_staff is not None:
            return self.shared_staff.get(queue, (0, 0))[0]
        return self.presence.staffed(queue)

    def inputs(self, name: str) -> tuple[int, int, float]:
        """What a queue's estimates depend on besides the position: (staffed, ready, average handle time)."""
        known = name in self.core.queues
        if known and self.shared_staff is not None:
            staffed, ready = self.shared_staff.get(name, (0, 0))
            return staffed, ready, self.core.live.estimator(name).average_handle_s
        return (self.presence.staffed(name) if known else 0, self.ready(name) if known else 0,
                self.core.live.estimator(name).average_handle_s)

    def queue_positions(self) -> dict[str, tuple[int, int, int | None]]:
        """call id -> (position in its queue, that queue's length, estimated wait in seconds or None)."""
        line = self.core.live.line
        result: dict[str, tuple[int, int, int | None]] = {}
        for name in line.names():
            staffed, ready, _ = self.inputs(name)
            estimator = self.core.live.estimator(name)
            length = line.length(name)
            for position, call in line.line(name):
                position, length = self.shared_place(call.id) or (position, length)
                result[call.id] = (position, length, estimator.estimate(position, staffed, ready))
        return result

    def shared_place(self, call_id: str) -> tuple[int, int] | None:
        """(position, queue length) of a call of this node over the whole cluster, as last read; None without
        several nodes, or before the call reached the shared line."""
        return self.shared_places.get(call_id) if self.shared_places is not None else None

    def position_of(self, call_id: str) -> Place | None:
        """(call, position in its queue, that queue's length, estimated wait) of one waiting call: O(log n)."""
        live = self.core.live
        rank = live.line.rank(call_id)
        call = live.call(call_id)
        if rank is None or call is None:
            return None
        position, length = self.shared_place(call_id) or rank
        name = call.queue
        staffed, ready, _ = self.estimate_inputs.get(name) or self.inputs(name)
        return call, position, length, live.estimator(name).estimate(position, staffed, ready)

    # -- whole pictures ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "queue": [
                {"call_id": c.id, "state": c.state.value, "wait_s": round(c.wait_s, 1), "call_type": c.call_type.value,
                 "queue": c.queue, "priority": c.priority, "callback": c.callback}
                for c in self.core.live.line.ordered()
            ],
            "agents": [
                {"username": a.username, "display_name": a.display_name, "status": a.status.value, "call_id": a.call_id,
                 "skills": sorted(a.skills)}
                for a in self.core.live.all_agents()
            ],
            "calls_active": self.active_calls(),
        }

    def wallboard(self) -> dict[str, Any]:
        """What a supervisor's wallboard shows. Times are absolute (UNIX seconds) so clients count up locally."""
        waiting = [
            {"call_id": c.id, "queue": c.queue, "priority": c.priority, "call_type": c.call_type.value,
             "caller": c.identity.name or c.identity.subject, "since": c.created_at, "state": c.state.value,
             "ringing_at": c.offered_to, "callback": bool(getattr(c, "callback", False))}
            for c in self.core.live.line.ordered()
        ]
        in_progress = [
            {"call_id": c.id, "queue": c.queue, "call_type": c.call_type.value,
             "caller": c.identity.name or c.identity.subject, "agent": c.agent, "since": c.answered_at,
             "held": c.held, "consult": c.consult, "supervisors": dict(c.supervisors)}
            for c in self.core.live.all_calls() if c.state is CallState.CONNECTED
        ]
        agents = [
            {"username": a.username, "display_name": a.display_name, "status": a.status.value, "call_id": a.call_id,
             "since": a.idle_since}
            for a in self.core.live.all_agents()
        ]
        queues: dict[str, dict[str, Any]] = {}
        for item in waiting:
            q = queues.setdefault(item["queue"], {"name": item["queue"], "waiting": 0, "oldest_since": None})
            q["waiting"] += 1
            if q["oldest_since"] is None or item["since"] < q["oldest_since"]:
                q["oldest_since"] = item["since"]
        if self.shared_lengths is not None:
            # Several nodes: `waiting` counts every node's callers; the calls listed (and the oldest) are this node's.
            for q in queues.values():
                q["waiting_here"] = q["waiting"]
            for name, count in self.shared_lengths.items():
                q = queues.setdefault(name, {"name": name, "waiting": 0, "oldest_since": None, "waiting_here": 0})
                q["waiting"] = max(count, q["waiting_here"])
            queues = {name: q for name, q in queues.items() if q["waiting"]}
        return {"queues": list(queues.values()), "waiting": waiting, "calls": in_progress, "agents": agents,
                "at": now()}
