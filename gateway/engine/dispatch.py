"""Dispatch and ringing: offering waiting calls, in answer order, to the longest-idle available agents whose
console is attached; ring timeouts (an agent who misses too many is set away), withdrawn offers, new rounds after
everyone passed, and answering or declining an offer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from ..calls import Call
from ..errors import InvalidState
from ..events import AgentStatusChanged, CallAnswered, CallOffered, CallRinging, OfferWithdrawn
from ..models import AgentStatus, CallState, now
from ..routing import AgentState, pick_agent
from ..queues import Queue
from ..sessions import Session
from .core import Core
from .presence import Presence
from .views import Views
from .waiting import WaitingLine

log = structlog.get_logger("callin.switchboard")


class Dispatch:
    def __init__(self, core: Core, presence: Presence, waiting: WaitingLine, views: Views) -> None:
        self.core = core
        self.presence = presence
        self.waiting = waiting
        self.views = views
        self.router: Callable[[], None] | None = None  # set by a cluster router: run() wakes it instead
        core.timers.on("ring", self._ring_timeout)
        core.timers.on("round", self._new_round)

    def run(self) -> None:
        """Offer waiting calls, in order, to the longest-idle available agents whose console is attached. With a
        cluster router (several nodes on Redis), the router offers them instead, against the agents of every node:
        it is woken here and works in its own task."""
        if self.router is not None:
            self.router()
            return
        at = self.core.clock.time()
        closed: set[str] = set()
        is_open: dict[str, bool] = {}
        line = self.core.live.line
        available = [a for a in self.presence.routable_agents() if a.status is AgentStatus.AVAILABLE]
        # Only the lines of queues that some free agent could serve are walked, in answer order across them.
        lines = [name for name in line.names()
                 if any(a.can_take(self.waiting.line_skills(name)) for a in available)] if available else []
        for call in line.ordered_in(lines) if lines else ():
            queue = self._offerable_in(call, at, is_open, closed)
            if queue is None:
                continue
            agent = pick_agent(available, call.declined_by, queue.skills)
            if agent is None:
                continue
            self.offer(call, agent)
            available = [a for a in available if a.status is AgentStatus.AVAILABLE]
            if not available:  # nobody left to offer to: the rest of the line waits (O(1), not O(waiting))
                break
        self.waiting.recheck_hours_later(closed, at)

    def offerable(self) -> list[tuple[Call, frozenset[str]]]:
        """For a cluster router: this node's calls that may be offered now, in answer order, with the skills each
        needs (queued, caller present, queue open; a closed queue is checked again when it opens)."""
        at = self.core.clock.time()
        closed: set[str] = set()
        is_open: dict[str, bool] = {}
        found: list[tuple[Call, frozenset[str]]] = []
        for call in self.core.live.line.ordered():
            queue = self._offerable_in(call, at, is_open, closed)
            if queue is None:
                continue
            found.append((call, queue.skills))
        self.waiting.recheck_hours_later(closed, at)
        return found

    def line_state(self) -> list[tuple[Call, bool]]:
        """Every waiting call in answer order, and whether it may be offered now (see _offerable_in)."""
        at = self.core.clock.time()
        closed: set[str] = set()
        is_open: dict[str, bool] = {}
        return [(call, self._offerable_in(call, at, is_open, closed) is not None) for call in self.core.live.line]

    def _offerable_in(self, call: Call, at: float, is_open: dict[str, bool], closed: set[str]) -> Queue | None:
        """The queue `call` may be offered in now (queued, caller present, queue open), else None. `is_open` keeps
        each queue's hours checked once per pass; a closed queue is added to `closed`."""
        if call.state is not CallState.QUEUED or call.awaiting_caller:
            return None
        queue = self.views.queue_of(call)
        if queue.name not in is_open:
            is_open[queue.name] = queue.is_open(at)
        if not is_open[queue.name]:
            closed.add(queue.name)
            return None
        return queue

    def offer(self, call: Call, agent: AgentState, **detail: Any) -> None:
        """Ring `agent` with the normal ring timeout and re-offer (`detail` goes to the call's log)."""
        call.transition(CallState.OFFERED, agent=agent.username, **detail)
        call.offered_to = agent.username
        agent.status = AgentStatus.RINGING
        agent.call_id = call.id
        timeout = self.core.settings.ring_timeout_s
        self.core.to_session(agent.session_id, CallOffered(call_id=call.id, card=call.card(), ring_timeout_s=timeout))
        self.core.timers.set(f"call:{call.id}:ring", timeout, call.id, agent.username)
        if not call.callback:  # the caller sees "Connecting you to <agent>…" (a callback's caller has left the line)
            self.core.to_caller(call, CallRinging(call_id=call.id, ringing=True, agent_name=agent.display_name))
        log.info("call.offered", call_id=call.id, agent=agent.username)
        self.core.emit("call.offered", call, agent.username)

    def take_callback(self, username: str, call_id: str) -> Call:
        """The agent picks a waiting callback request from its list: offered to it now, whatever its place (an
        agent may take only callbacks of queues whose skills it has, and only while available)."""
        call = self.takeable_callback(call_id, None)
        agent = self.core.live.agent(username)
        if agent is None or not self.presence.attached(agent):
            raise InvalidState("sign in to the console to take a callback", code="not_signed_in")
        return self.give_callback(call, agent)

    def takeable_callback(self, call_id: str, skills: frozenset[str] | None) -> Call:
        """The waiting callback request `call_id` of this engine, if it may be taken now by an agent with `skills`
        (None: only whether it still waits; give_callback checks the rest)."""
        call = self.core.live.call(call_id)
        if call is None or not call.callback or call.state not in (CallState.QUEUED, CallState.OFFERED):
            raise InvalidState("this callback request is no longer waiting", code="callback_gone")
        if skills is None:
            return call
        if not self.views.queue_of(call).skills <= skills:
            raise InvalidState("this callback is for a queue you do not serve", code="not_your_queue")
        if call.state is CallState.OFFERED:
            raise InvalidState("this callback is ringing at an agent already", code="callback_ringing")
        return call

    def give_callback(self, call: Call, agent: AgentState) -> Call:
        """Ring `agent` (attached to this engine, or a cluster stand-in) with the callback request `call` now."""
        if not agent.can_take(self.views.queue_of(call).skills):
            raise InvalidState("this callback is for a queue you do not serve", code="not_your_queue")
        if call.state is CallState.OFFERED:
            raise InvalidState("this callback is ringing at an agent already", code="callback_ringing")
        if agent.status is not AgentStatus.AVAILABLE:
            raise InvalidState(f"you are {agent.status.value.replace('_', ' ')}; be available to take a callback",
                               code="agent_busy")
        self.core.timers.cancel(f"call:{call.id}:round")
        self.offer(call, agent, picked=True)
        return call

    def _ring_timeout(self, call_id: str, username: str) -> None:
        call = self.core.live.call(call_id)
        agent = self.core.live.agent(username)
        if call is None or agent is None or call.state is not CallState.OFFERED or call.offered_to != username:
            return
        self.withdraw(call, agent, "ring_timeout")
        agent.missed_rings += 1
        session = self.core.sessions.get(agent.session_id or "")
        if agent.missed_rings >= self.core.settings.ring_outs_before_away:
            # Told why: the console shows "set away after N missed calls".
            agent.status = AgentStatus.AWAY
            if session is not None:
                session.deliver(AgentStatusChanged(status=AgentStatus.AWAY.value, reason="missed_call"))
        else:
            agent.status = AgentStatus.AVAILABLE
            agent.idle_since = now()  # to the back of the line of idle agents
            if session is not None:
                session.deliver(AgentStatusChanged(status=AgentStatus.AVAILABLE.value, reason="ring_timeout"))

    def withdraw(self, call: Call, agent: AgentState, reason: str) -> None:
        self.cancel_ring(call.id)
        call.declined_by.add(agent.username)
        call.offered_to = None
        call.transition(CallState.QUEUED, reason=reason, agent=agent.username)
        agent.call_id = None
        self.drop_ringing_media(call, agent.username)
        self.core.to_session(agent.session_id, OfferWithdrawn(call_id=call.id, reason=reason))
        if not call.callback:
            self.core.to_caller(call, CallRinging(call_id=call.id, ringing=False))  # waiting again
        skills = self.views.queue_of(call).skills
        if pick_agent(self.presence.routable_agents(), call.declined_by, skills) is None:
            # Nobody else can take it now: a new round after a pause (the agents who passed may take it then, and
            # an agent who becomes available meanwhile is offered it at once), rather than strand the caller or
            # ring the same agent again at once.
            name = f"call:{call.id}:round"
            if name not in self.core.timers:
                self.core.timers.set(name, self.core.settings.reoffer_after_decline_s, call.id)
        self.core.emit("call.withdrawn", call, agent.username, reason)

    def drop_ringing_media(self, call: Call, username: str) -> None:
        """A ring that ends unanswered closes the media leg its console set up while it rang (if any)."""
        # (An offer still being answered is refused, and its leg closed, once answered: CallLifecycle._offer.)
        if self.core.live.leg_of(call.id, username) is None:
            return
        self.core.live.untrack_legs(call.id, username)
        call.log("agent_media_dropped", agent=username)
        self.core.spawn(self.core.plane.remove(call.id, username))

    def _new_round(self, call_id: str) -> None:
        call = self.core.live.call(call_id)
        if call is not None and call.state is CallState.QUEUED:
            call.declined_by.clear()  # the settle step after this timer offers it again

    def cancel_ring(self, call_id: str) -> None:
        self.core.timers.cancel(f"call:{call_id}:ring")

    # -- the agent's answer -----------------------------------------------------------------------------------
    def accept(self, session: Session, state: AgentState, call: Call) -> Call:
        if call.state is not CallState.OFFERED or call.offered_to != state.username:
            raise InvalidState("this call is not ringing at this agent", code="not_offered")
        self.cancel_ring(call.id)
        self.waiting.leave(call)
        call.answered_at = now()
        call.agent = state.username
        leg_id = self.core.live.leg_of(call.id, state.username)
        if leg_id is not None:  # set up while it rang: from now on the call's agent leg (its events told to both)
            self.core.live.track_leg(leg_id, call.id, state.username, "agent")
        # The gate opens: the caller's streams reach the agent's leg (with the latest keyframe at once) and back.
        self.core.plane.set_scene(call.id, agent=state.username)
        call.transition(CallState.CONNECTED, agent=state.username)
        state.status = AgentStatus.BUSY
        state.call_id = call.id
        state.missed_rings = 0
        session.call_id = call.id
        if call.callback:
            self.waiting.callback_ready(call, state)
        else:
            self.core.to_caller(call, CallAnswered(call_id=call.id, agent_name=state.display_name))
        session.deliver(AgentStatusChanged(status=state.status.value, call_id=call.id))
        log.info("call.answered", call_id=call.id, agent=state.username, wait_s=round(call.wait_s, 3))
        self.core.emit("call.answered", call)
        if call.callback:
            self.core.emit("call.callback_ready", call)
        return call

    def decline(self, session: Session, state: AgentState, call: Call) -> Call:
        if call.state is not CallState.OFFERED or call.offered_to != state.username:
            raise InvalidState("this call is not ringing at this agent", code="not_offered")
        self.withdraw(call, state, "declined")
        state.status = AgentStatus.AVAILABLE
        state.idle_since = now()
        session.deliver(AgentStatusChanged(status=state.status.value))
        return call

    def agent_detached(self, session: Session) -> None:
        """A console that lost its socket cannot answer: a call ringing there goes to someone else at once."""
        live = self.core.live
        state = live.agent(session.principal.username)
        if state is None or state.session_id != session.id or not state.call_id:
            return
        call = live.call(state.call_id)
        if call is None or call.state is not CallState.OFFERED or call.offered_to != state.username:
            return
        self.withdraw(call, state, "agent_disconnected")
        call.declined_by.discard(state.username)  # it did not decline: once back, it may be offered the call again
        state.status = AgentStatus.AVAILABLE  # still signed in: offered calls again once its console is back
        state.idle_since = now()
