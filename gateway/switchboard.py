"""The Switchboard: the call engine's façade. Calls, the queue, agents, sessions and each call's media relay.

It knows nothing of HTTP or of the wire protocol: participants are Sessions that receive domain events.
Observers (metrics, records, webhooks) subscribe to its pyee events: call.queued, call.offered (call, username),
call.withdrawn (call, username, reason: declined / ring_timeout / agent_disconnected), call.answered, call.ended,
call.updated (a change worth recording: closed notice, callback request, rejoin), call.callback_ready.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import structlog
from pyee.asyncio import AsyncIOEventEmitter

from .auth import AgentAccount
from .callerguard import CallerGuard, subject_key
from .calls import Call
from .clock import Clock, SystemClock
from .config import Settings
from .errors import BadRequest, Forbidden, InvalidState, NotFound, Unavailable
from .events import (
    AgentStatusChanged,
    CallAnswered,
    CallbackOffer,
    CallbackReady,
    CallEnded,
    CallOffered,
    Event,
    MediaState,
    MediaVideo,
    OfferWithdrawn,
    QueueClosed,
    QueueUpdate,
)
from .incall import InCallControls
from .reconnects import Reconnects
from .media import MediaConfig, Relay
from .media.local import LocalPlane
from .media.plane import Answer, LegEvent, MediaPlane
from .positions import PositionNotices
from .models import AgentStatus, CallContext, CallerIdentity, CallState, CallType, EndReason, Location, now
from .queues import ClosedReason, Queue, QueueDirectory
from .routing import AgentState, CallQueue, WaitEstimator, pick_agent
from .sessions import Session, SessionRegistry

log = structlog.get_logger("callin.switchboard")

SETTABLE_STATUS = {AgentStatus.AVAILABLE, AgentStatus.AWAY}
STAFFED_STATUS = {AgentStatus.AVAILABLE, AgentStatus.BUSY, AgentStatus.RINGING, AgentStatus.WRAP_UP}
HOURS_RECHECK_MAX_S = 300.0


class Switchboard(InCallControls, Reconnects, AsyncIOEventEmitter):
    def __init__(self, settings: Settings, media: MediaConfig | None = None, clock: Clock | None = None,
                 plane: MediaPlane | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.queues = QueueDirectory(settings.queues)
        self.media = media or MediaConfig.from_settings(settings)
        self.sessions = SessionRegistry(settings.resume_grace_s, self._session_expired,
                                        replay_events=settings.resume_replay_events,
                                        on_detached=self._session_detached, on_resumed=self._session_resumed)
        self.guard = CallerGuard(settings, self.clock)
        self.calls: dict[str, Call] = {}
        self._calls_by_subject: dict[tuple[str | None, str], dict[str, Call]] = {}  # live calls per caller identity
        # Media: asked of the plane (in this process, or worker processes), never touched directly.
        self.plane: MediaPlane = plane if plane is not None else LocalPlane(self.media)
        self.plane.subscribe(self._on_leg_event)
        self._legs: dict[str, tuple[str, str, str]] = {}  # leg id -> (call id, participant, label told to others)
        self.agents: dict[str, AgentState] = {}
        self.queue = CallQueue()
        self.estimator = WaitEstimator()  # the default queue's
        self.estimators: dict[str, WaitEstimator] = {"default": self.estimator}
        self._ring_timers: dict[str, asyncio.TimerHandle] = {}
        self._wait_timers: dict[str, asyncio.TimerHandle] = {}  # max wait per call
        self._rejoin_timers: dict[str, asyncio.TimerHandle] = {}  # accepted callbacks waiting for the caller
        self._wrap_timers: dict[str, asyncio.TimerHandle] = {}  # by agent username
        self._hours_timer: asyncio.TimerHandle | None = None
        self._forget_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.positions = PositionNotices(settings.position_update_interval_s, self.position_of, self._tell_position)
        self._estimate_inputs: dict[str, tuple[int, int, float]] = {}  # per queue: (staffed, ready, handle time)
        self.closing = False

    # ------------------------------------------------------------------ callers
    def open_caller(self, identity: CallerIdentity, address: str | None = None) -> Session:
        def holds_call(session: Session) -> bool:
            call = self.calls.get(session.call_id or "")
            return call is not None and call.state is not CallState.ENDED

        by_subject, by_address = ("caller", subject_key(identity)), ("caller-address", address)
        same_address = self.sessions.members(by_address) if address is not None else None
        for stale in self.guard.session_to_evict(self.sessions.members(by_subject), same_address, holds_call):
            self.release_session(stale)  # its socket is gone and the same caller (or address) is back
        session = self.sessions.create("caller", identity)
        session.address = address
        self.sessions.file_under(session, by_subject, *((by_address,) if address is not None else ()))
        return session

    def start_call(
        self,
        session: Session,
        call_type: CallType,
        location: Location | None,
        context: CallContext,
    ) -> Call:
        """Validate, then queue. One live call per caller session."""
        if self.closing:
            raise Unavailable("the gateway is shutting down", code="shutting_down")
        if session.call_id is not None and self.calls.get(session.call_id) and self.calls[session.call_id].state is not CallState.ENDED:
            raise InvalidState("this session already has a call", code="call_in_progress")
        replaced = self.guard.check_start(session, self._live_calls_of(session.principal))
        if len(self.queue) - (replaced is not None and replaced.id in self.queue) >= self.settings.max_queue_length:
            raise Unavailable("the queue is full, try again later", code="queue_full")
        if context.encoded_size() > self.settings.max_context_bytes:
            raise InvalidState(f"context larger than {self.settings.max_context_bytes} bytes", code="context_too_large")
        identity: CallerIdentity = session.principal
        queue = self.queues.for_caller(identity)
        call = Call(
            id=secrets.token_hex(8),
            identity=identity,
            call_type=call_type,
            location=location,
            context=context,
            caller_session=session.id,
            priority=queue.priority_for(identity),
            queue=queue.name,
            created_at=self.clock.time(),
            history_limit=self.settings.card_history_events,
        )
        self._add_call(call)
        session.call_id = call.id
        self.guard.started(session)
        if replaced is not None and replaced.queue == call.queue:
            self.queue.take_place(call, replaced.id)  # the caller came back: its place in line is kept
        else:
            self.queue.add(call)
        if replaced is not None:
            self._replace(replaced, call)
        log.info("call.queued", call_id=call.id, call_type=call_type.value, subject=identity.subject, queue=queue.name)
        if queue.config.max_wait_s is not None:
            self._wait_timers[call.id] = asyncio.get_running_loop().call_later(
                queue.config.max_wait_s, self._max_wait, call.id)
        self.emit("call.queued", call)
        self._dispatch()
        if call.state is CallState.QUEUED:
            if not queue.is_open(self.clock.time()):
                self._tell_closed(call, queue, ClosedReason.AFTER_HOURS)
            elif self.staffed(queue.name) == 0:
                self._tell_closed(call, queue, ClosedReason.NO_AGENTS)
        self._publish_positions()
        return call

    def _add_call(self, call: Call) -> None:
        self.calls[call.id] = call
        self.plane.open_call(call.id)
        self._calls_by_subject.setdefault(subject_key(call.identity), {})[call.id] = call

    def _live_calls_of(self, identity: CallerIdentity) -> list[Call]:
        """The calls of one caller identity that have not ended (kept per identity: no walk over every call)."""
        return [c for c in self._calls_by_subject.get(subject_key(identity), {}).values()
                if c.state is not CallState.ENDED]

    def _replace(self, old: Call, new: Call) -> None:
        """The same caller started `new`: `old` leaves the line now and ends (reason replaced)."""
        self.queue.remove(old.id)
        old.log("replaced", by_call=new.id)
        new.log("replaces", call=old.id)
        log.info("call.replaced", call_id=old.id, by_call=new.id)
        self._spawn(self.end_call(old, EndReason.REPLACED, "caller"))

    def caller_call(self, session: Session, call_id: str | None) -> Call:
        call_id = call_id or session.call_id
        call = self.calls.get(call_id or "")
        if call is None or call.caller_session != session.id:
            raise NotFound("no such call for this caller", code="unknown_call")
        return call

    async def caller_offer(self, session: Session, call_id: str | None, sdp: str) -> str:
        call = self.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        answer = await self.plane.answer(call.id, "caller", sdp)
        self._track_leg(call, answer, "caller", "caller")
        call.log("caller_media_offered")
        return answer.sdp

    async def add_candidate(self, call: Call, participant: str, candidate: str | None,
                            sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        if not self.plane.has_call(call.id):
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        await self.plane.add_candidate(call.id, participant, candidate, sdp_mid, sdp_mline_index)

    async def caller_hangup(self, session: Session, call_id: str | None) -> Call:
        call = self.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has already ended", code="call_ended")
        await self.end_call(call, EndReason.CALLER_HANGUP, "caller")
        return call

    # ------------------------------------------------------------------ agents
    def open_agent(self, account: AgentAccount) -> Session:
        session = self.sessions.create("agent", account)
        state = self.agents.get(account.username)
        if state is None:
            state = AgentState(username=account.username, display_name=account.display_name, idle_since=now())
            self.agents[account.username] = state
        previous = self.sessions.get(state.session_id) if state.session_id else None
        if previous is not None and previous is not session:
            # The same agent signed in again elsewhere: the newest console wins, the call stays.
            previous.deliver(AgentStatusChanged(status=state.status.value, reason="signed_in_elsewhere"))
            session.call_id = previous.call_id
            self.sessions.remove(previous, close_socket=True, why="replaced")
        state.session_id = session.id
        state.skills = frozenset(account.skills)
        state.capacity = account.capacity
        if state.status is AgentStatus.OFFLINE:
            state.status = AgentStatus.AWAY
        return session

    def agent_state(self, session: Session) -> AgentState:
        state = self.agents.get(session.principal.username)
        if state is None or state.session_id != session.id:
            raise InvalidState("this agent session was replaced by a newer sign-in", code="session_replaced")
        return state

    def set_agent_status(self, session: Session, status: AgentStatus) -> AgentState:
        state = self.agent_state(session)
        if status not in SETTABLE_STATUS:
            raise InvalidState(f"an agent can set itself to available or away, not {status.value}", code="bad_status")
        if state.status in (AgentStatus.BUSY, AgentStatus.RINGING):
            raise InvalidState(f"the agent is {state.status.value}; finish the call first", code="agent_busy")
        if state.status is AgentStatus.WRAP_UP:
            self._cancel_wrap_up(state)
        if status is AgentStatus.AVAILABLE and state.status is not AgentStatus.AVAILABLE:
            state.idle_since = now()
            state.missed_rings = 0
        state.status = status
        session.deliver(AgentStatusChanged(status=status.value))
        self._dispatch()
        self._publish_positions()
        return state

    def _agent_call(self, session: Session, call_id: str) -> tuple[AgentState, Call]:
        state = self.agent_state(session)
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="unknown_call")
        return state, call

    def accept(self, session: Session, call_id: str) -> Call:
        state, call = self._agent_call(session, call_id)
        if call.consult == state.username and not call.consult_joined:
            return self.accept_consult(session, call)
        if call.state is not CallState.OFFERED or call.offered_to != state.username:
            raise InvalidState("this call is not ringing at this agent", code="not_offered")
        self._cancel_ring(call.id)
        self.queue.remove(call.id)
        self.positions.forget(call.id)
        call.answered_at = now()
        call.agent = state.username
        self.plane.set_scene(call.id, agent=state.username)
        call.transition(CallState.CONNECTED, agent=state.username)
        state.status = AgentStatus.BUSY
        state.call_id = call.id
        state.missed_rings = 0
        session.call_id = call.id
        caller = self.sessions.get(call.caller_session)
        if call.callback:
            self._callback_ready(call, state)
        elif caller is not None:
            caller.deliver(CallAnswered(call_id=call.id, agent_name=state.display_name))
        session.deliver(AgentStatusChanged(status=state.status.value, call_id=call.id))
        log.info("call.answered", call_id=call.id, agent=state.username, wait_s=round(call.wait_s, 3))
        self.emit("call.answered", call)
        if call.callback:
            self.emit("call.callback_ready", call)
        self._publish_positions()
        return call

    def decline(self, session: Session, call_id: str) -> Call:
        state, call = self._agent_call(session, call_id)
        if call.consult == state.username and not call.consult_joined:
            return self.decline_consult(session, call)
        if call.state is not CallState.OFFERED or call.offered_to != state.username:
            raise InvalidState("this call is not ringing at this agent", code="not_offered")
        self._withdraw(call, state, "declined")
        state.status = AgentStatus.AVAILABLE
        state.idle_since = now()
        session.deliver(AgentStatusChanged(status=state.status.value))
        self._dispatch()
        return call

    async def agent_offer(self, session: Session, call_id: str, sdp: str) -> str:
        state, call = self._agent_call(session, call_id)
        if call.state is not CallState.CONNECTED or not self.is_participant(call, state.username):
            raise InvalidState("accept the call before sending media", code="not_accepted")
        answer = await self.plane.answer(call.id, state.username, sdp)
        self._track_leg(call, answer, state.username, "agent" if call.agent == state.username else state.username)
        call.log("agent_media_offered", agent=state.username)
        return answer.sdp

    def agent_call(self, session: Session, call_id: str) -> Call:
        state, call = self._agent_call(session, call_id)
        if not self.is_participant(call, state.username):
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        return call

    async def agent_hangup(self, session: Session, call_id: str) -> Call:
        call = self.agent_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has already ended", code="call_ended")
        username = session.principal.username
        if username in call.supervisors:  # a supervisor leaves; the call goes on
            return await self.stop_supervising(session, call_id)
        if username == call.consult:  # the consulted colleague leaves; back to the agent and the caller
            await self._end_consult(call, "cancelled")
            return call
        await self.end_call(call, EndReason.AGENT_HANGUP, "agent")
        return call

    # ------------------------------------------------------------------ routing
    def _dispatch(self) -> None:
        """Offer waiting calls, in order, to the longest-idle available agents whose console is attached."""
        if self.closing:
            return
        at = self.clock.time()
        closed: set[str] = set()
        is_open: dict[str, bool] = {}
        available = [a for a in self.routable_agents() if a.status is AgentStatus.AVAILABLE]
        # Only the lines of queues that some free agent could serve are walked, in answer order across them.
        lines = [name for name in self.queue.names()
                 if any(a.can_take(self._line_skills(name)) for a in available)] if available else []
        for call in self.queue.ordered_in(lines) if lines else ():
            if call.state is not CallState.QUEUED:
                continue
            queue = self._queue_of(call)
            if queue.name not in is_open:
                is_open[queue.name] = queue.is_open(at)
            if not is_open[queue.name]:
                closed.add(queue.name)
                continue
            agent = pick_agent(available, call.declined_by, queue.skills)
            if agent is None:
                continue
            self._offer(call, agent)
            available = [a for a in available if a.status is AgentStatus.AVAILABLE]
            if not available:  # nobody left to offer to: the rest of the line waits (O(1), not O(waiting))
                break
        self._recheck_hours_later(closed, at)

    def _offer(self, call: Call, agent: AgentState, **detail: Any) -> None:
        """Ring `agent` with the normal ring timeout and re-offer (`detail` goes to the call's log)."""
        call.transition(CallState.OFFERED, agent=agent.username, **detail)
        call.offered_to = agent.username
        agent.status = AgentStatus.RINGING
        agent.call_id = call.id
        session = self.sessions.get(agent.session_id or "")
        timeout = self.settings.ring_timeout_s
        if session is not None:
            session.deliver(CallOffered(call_id=call.id, card=call.card(), ring_timeout_s=timeout))
        loop = asyncio.get_running_loop()
        self._ring_timers[call.id] = loop.call_later(timeout, self._ring_timeout, call.id, agent.username)
        log.info("call.offered", call_id=call.id, agent=agent.username)
        self.emit("call.offered", call, agent.username)

    def _ring_timeout(self, call_id: str, username: str) -> None:
        self._ring_timers.pop(call_id, None)
        call = self.calls.get(call_id)
        agent = self.agents.get(username)
        if call is None or agent is None or call.state is not CallState.OFFERED or call.offered_to != username:
            return
        self._withdraw(call, agent, "ring_timeout")
        agent.missed_rings += 1
        session = self.sessions.get(agent.session_id or "")
        if agent.missed_rings >= self.settings.ring_outs_before_away:
            # Told why: the console shows "set away after N missed calls".
            agent.status = AgentStatus.AWAY
            if session is not None:
                session.deliver(AgentStatusChanged(status=AgentStatus.AWAY.value, reason="missed_call"))
        else:
            agent.status = AgentStatus.AVAILABLE
            agent.idle_since = now()  # to the back of the line of idle agents
            if session is not None:
                session.deliver(AgentStatusChanged(status=AgentStatus.AVAILABLE.value, reason="ring_timeout"))
        self._dispatch()

    def _withdraw(self, call: Call, agent: AgentState, reason: str) -> None:
        self._cancel_ring(call.id)
        call.declined_by.add(agent.username)
        call.offered_to = None
        call.transition(CallState.QUEUED, reason=reason, agent=agent.username)
        agent.call_id = None
        session = self.sessions.get(agent.session_id or "")
        if session is not None:
            session.deliver(OfferWithdrawn(call_id=call.id, reason=reason))
        skills = self._queue_of(call).skills
        if pick_agent(self.routable_agents(), call.declined_by, skills) is None:
            # Nobody else can take it now: a new round after a pause (the agents who passed may take it then, and
            # an agent who becomes available meanwhile is offered it at once), rather than strand the caller or
            # ring the same agent again at once.
            key = f"round:{call.id}"
            if key not in self._ring_timers:
                self._ring_timers[key] = asyncio.get_running_loop().call_later(
                    self.settings.reoffer_after_decline_s, self._new_round, call.id)
        self.emit("call.withdrawn", call, agent.username, reason)

    def _new_round(self, call_id: str) -> None:
        self._ring_timers.pop(f"round:{call_id}", None)
        call = self.calls.get(call_id)
        if call is not None and call.state is CallState.QUEUED:
            call.declined_by.clear()
            self._dispatch()

    def _cancel_ring(self, call_id: str) -> None:
        timer = self._ring_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def staffed(self, queue: str | None = None) -> int:
        """Agents signed in and not away (available, ringing, busy, wrapping up); for a queue: those with its skills."""
        skills = self.queues.get(queue).skills if queue is not None else frozenset()
        return sum(1 for a in self.agents.values() if a.status in STAFFED_STATUS and a.can_take(skills))

    def ready(self, queue: str) -> int:
        """Callers of this queue who are being connected now: its calls ringing at an agent, plus the agents with
        its skills who are free."""
        skills = self.queues.get(queue).skills
        ringing = 0
        for agent in self.agents.values():  # a waiting call rings at most one agent: count from the agents' side
            call = self.calls.get(agent.call_id or "") if agent.status is AgentStatus.RINGING else None
            if call is not None and call.state is CallState.OFFERED and call.offered_to == agent.username \
                    and call.queue == queue and call.id in self.queue:
                ringing += 1
        free = sum(1 for a in self.agents.values() if a.status is AgentStatus.AVAILABLE and a.can_take(skills))
        return ringing + free

    def _line_skills(self, name: str) -> frozenset[str]:
        return self.queues.get(name if name in self.queues else "default").skills

    def _queue_of(self, call: Call) -> Queue:
        if call.queue in self.queues:
            return self.queues.get(call.queue)
        return self.queues.get("default")  # its queue was removed by an admin while the call was live

    def _estimator(self, queue: str) -> WaitEstimator:
        return self.estimators.setdefault(queue, WaitEstimator())

    def _inputs(self, name: str) -> tuple[int, int, float]:
        """What a queue's estimates depend on besides the position: (staffed, ready, average handle time)."""
        known = name in self.queues
        return (self.staffed(name) if known else 0, self.ready(name) if known else 0,
                self._estimator(name).average_handle_s)

    def queue_positions(self) -> dict[str, tuple[int, int, int | None]]:
        """call id -> (position in its queue, that queue's length, estimated wait in seconds or None)."""
        result: dict[str, tuple[int, int, int | None]] = {}
        for name in self.queue.names():
            staffed, ready, _ = self._inputs(name)
            estimator = self._estimator(name)
            length = self.queue.length(name)
            for position, call in self.queue.line(name):
                result[call.id] = (position, length, estimator.estimate(position, staffed, ready))
        return result

    def position_of(self, call_id: str) -> tuple[Call, int, int, int | None] | None:
        """(call, position in its queue, that queue's length, estimated wait) of one waiting call: O(log n)."""
        rank = self.queue.rank(call_id)
        if rank is None:
            return None
        call = self.calls[call_id]
        position, length = rank
        name = call.queue
        staffed, ready, _ = self._estimate_inputs.get(name) or self._inputs(name)
        return call, position, length, self._estimator(name).estimate(position, staffed, ready)

    def _publish_positions(self) -> None:
        """Recompute the places that may have changed: in each queue, from the first rank that moved (a join at
        the back moves nobody else), or every place when the queue's estimate inputs changed. What each caller
        is told, and when, is up to the position notices (only changes, at most once per interval). Nothing while
        closing: every call is being ended."""
        if self.closing:
            return
        moved = self.queue.take_moved()
        inputs: dict[str, tuple[int, int, float]] = {}
        for name in self.queue.names():
            inputs[name] = current = self._inputs(name)
            start = 1 if self._estimate_inputs.get(name) != current else moved.get(name)
            if start is None:
                continue
            staffed, ready, _ = current
            estimator = self._estimator(name)
            length = self.queue.length(name)
            for position, call in self.queue.line(name, start):
                estimate = estimator.estimate(position, staffed, ready)
                if self.positions.update(call, position, length, estimate):
                    self._maybe_offer_callback(call, estimate, self.sessions.get(call.caller_session))
        self._estimate_inputs = inputs

    def _tell_position(self, call: Call, position: int, length: int, estimate: int | None) -> None:
        session = self.sessions.get(call.caller_session)
        if session is not None:
            session.deliver(QueueUpdate(call_id=call.id, position=position, queue_length=length,
                                        estimated_wait_s=estimate, queue=call.queue))

    # ------------------------------------------------------------------ queues: closed, callbacks, messages
    def _tell_closed(self, call: Call, queue: Queue, reason: ClosedReason) -> None:
        """Tell a waiting caller why nobody will answer soon and what it may do instead (no silent queue)."""
        if call.callback:
            return
        config = queue.config
        message = {ClosedReason.AFTER_HOURS: config.after_hours_message, ClosedReason.NO_AGENTS: config.closed_message,
                   ClosedReason.MAX_WAIT: config.max_wait_message}[reason]
        call.closed_reason = reason.value
        call.log("queue_closed", reason=reason.value)
        session = self.sessions.get(call.caller_session)
        if session is not None:
            opens_at = queue.schedule.next_opening(self.clock.time()) if reason is ClosedReason.AFTER_HOURS else None
            session.deliver(QueueClosed(call_id=call.id, queue=queue.name, reason=reason.value, message=message,
                                        callback_available=config.callbacks, message_allowed=config.messages,
                                        opens_at=opens_at))
        log.info("call.queue_closed", call_id=call.id, queue=queue.name, reason=reason.value)
        self.emit("call.updated", call)

    def _max_wait(self, call_id: str) -> None:
        self._wait_timers.pop(call_id, None)
        call = self.calls.get(call_id)
        if call is not None and call.state is CallState.QUEUED:
            self._tell_closed(call, self._queue_of(call), ClosedReason.MAX_WAIT)

    def _recheck_hours_later(self, closed: set[str], at: float) -> None:
        """While calls (callbacks, mostly) wait in a closed queue, look again when the first of those queues opens."""
        if self._hours_timer is not None:
            self._hours_timer.cancel()
            self._hours_timer = None
        if not closed or self.closing:
            return
        openings = [t for t in (self.queues.get(n).schedule.next_opening(at) for n in closed if n in self.queues)
                    if t is not None]
        delay = min([HOURS_RECHECK_MAX_S] + [t - at for t in openings])
        self._hours_timer = asyncio.get_running_loop().call_later(max(1.0, delay), self.recheck)

    def recheck(self) -> None:
        """Dispatch and publish positions again (hours may have changed: a queue opened, its config was edited)."""
        self._hours_timer = None
        self._dispatch()
        self._publish_positions()

    def _maybe_offer_callback(self, call: Call, estimate: int | None, session: Session | None) -> None:
        config = self._queue_of(call).config
        threshold = config.callback_threshold_s
        if (session is None or call.callback or call.callback_offered or not config.callbacks or threshold is None
                or estimate is None or estimate <= threshold or call.state is not CallState.QUEUED):
            return
        call.callback_offered = True
        call.log("callback_offered", estimated_wait_s=estimate)
        session.deliver(CallbackOffer(call_id=call.id, queue=call.queue, estimated_wait_s=estimate))

    def _waiting_call(self, session: Session, call_id: str | None) -> Call:
        call = self.caller_call(session, call_id)
        if not call.waiting:
            raise InvalidState("the call is not waiting in a queue", code="not_queued")
        return call

    async def request_callback(self, session: Session, call_id: str | None, phone: str | None) -> Call:
        """The caller keeps its place and may leave; when an agent accepts, it is told (callback.ready, webhook)."""
        call = self._waiting_call(session, call_id)
        if call.callback:
            raise InvalidState("a callback is already requested", code="callback_requested")
        if not self._queue_of(call).config.callbacks:
            raise Forbidden("this queue does not offer callbacks", code="callbacks_disabled")
        call.callback = True
        call.callback_phone = phone
        call.log("callback_requested", phone_given=phone is not None)
        # The caller may leave: its media goes (a fresh relay waits for the rejoin) and its session going away no
        # longer ends the call; while the session lives it is still told positions and callback.ready.
        self._untrack_legs(call.id)
        session.call_id = None
        self._cancel_timer(self._wait_timers, call.id)
        log.info("call.callback_requested", call_id=call.id, queue=call.queue)
        self.emit("call.updated", call)
        await self.plane.reset_call(call.id)
        return call

    def restore_callback(self, call: Call) -> None:
        """A callback request read back from the records (its node stopped or crashed): waiting here again, so the
        promise is kept; the caller is not connected (when an agent takes it, callback.ready fires as usual)."""
        if call.id in self.calls or call.state is not CallState.QUEUED:
            return
        self._add_call(call)
        self.queue.add(call)
        log.info("call.callback_restored", call_id=call.id, queue=call.queue)
        self.emit("call.updated", call)
        self._dispatch()
        self._publish_positions()

    async def leave_message(self, session: Session, call_id: str | None, text: str) -> Call:
        """Instead of waiting in a closed or unstaffed queue (or past its max wait): a message kept with the record."""
        call = self._waiting_call(session, call_id)
        if call.closed_reason is None:
            raise InvalidState("messages are for closed or unstaffed queues; wait or ask for a callback",
                               code="queue_open")
        if not self._queue_of(call).config.messages:
            raise Forbidden("this queue does not take messages", code="messages_disabled")
        text = text.strip()
        if not text:
            raise BadRequest("the message is empty", code="empty_message")
        if len(text) > self.settings.max_left_message_chars:
            raise BadRequest(f"a message has at most {self.settings.max_left_message_chars} characters",
                             code="message_too_long")
        call.message = text
        call.log("message_left", chars=len(text))
        await self.end_call(call, EndReason.MESSAGE_LEFT, "caller")
        return call

    def _callback_ready(self, call: Call, agent: AgentState) -> None:
        call.callback_ready_at = self.clock.time()
        call.log("callback_ready", agent=agent.username)
        caller = self.sessions.get(call.caller_session)
        event = CallbackReady(call_id=call.id, agent_name=agent.display_name,
                              rejoin_within_s=self.settings.callback_rejoin_s)
        if caller is not None:
            caller.deliver(event)
        self._rejoin_timers[call.id] = asyncio.get_running_loop().call_later(
            self.settings.callback_rejoin_s, self._rejoin_expired, call.id)
        log.info("call.callback_ready", call_id=call.id, agent=agent.username)

    def _rejoin_expired(self, call_id: str) -> None:
        self._rejoin_timers.pop(call_id, None)
        call = self.calls.get(call_id)
        if call is not None and call.state is not CallState.ENDED and call.rejoined_at is None:
            self._spawn(self.end_call(call, EndReason.CALLBACK_EXPIRED, "system"))

    def rejoin(self, session: Session, call_id: str) -> Call:
        """A caller who asked for a callback comes back (with its token) once an agent has taken it."""
        call = self.calls.get(call_id)
        identity: CallerIdentity = session.principal
        if call is None or call.identity.subject != identity.subject or call.identity.issuer != identity.issuer:
            raise NotFound("no such call for this caller", code="unknown_call")
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        if not call.callback or call.callback_ready_at is None:
            raise InvalidState("rejoin when told callback.ready", code="callback_not_ready")
        if call.rejoined_at is not None and call.caller_session and call.caller_session != session.id:
            raise InvalidState("the caller has rejoined already", code="already_rejoined")
        if session.call_id not in (None, call.id) and session.call_id in self.calls \
                and self.calls[session.call_id].state is not CallState.ENDED:
            raise InvalidState("this session already has a call", code="call_in_progress")
        call.caller_session = session.id
        session.call_id = call.id
        call.rejoined_at = self.clock.time()
        self._cancel_timer(self._rejoin_timers, call.id)
        call.log("rejoined")
        log.info("call.rejoined", call_id=call.id)
        self.emit("call.updated", call)
        return call

    # ------------------------------------------------------------------ wrap-up
    def _start_wrap_up(self, agent: AgentState, call: Call, session: Session) -> None:
        agent.status = AgentStatus.WRAP_UP
        agent.wrap_up_call = call.id
        self._cancel_timer(self._wrap_timers, agent.username)
        self._wrap_timers[agent.username] = asyncio.get_running_loop().call_later(
            self.settings.wrap_up_s, self._end_wrap_up, agent.username, "wrap_up_timeout")
        session.deliver(AgentStatusChanged(status=agent.status.value, call_id=call.id,
                                           wrap_up_s=self.settings.wrap_up_s))

    def _end_wrap_up(self, username: str, reason: str) -> None:
        self._wrap_timers.pop(username, None)
        agent = self.agents.get(username)
        if agent is None or agent.status is not AgentStatus.WRAP_UP:
            return
        agent.status = AgentStatus.AVAILABLE
        agent.wrap_up_call = None
        agent.idle_since = now()
        session = self.sessions.get(agent.session_id or "")
        if session is not None:
            session.deliver(AgentStatusChanged(status=agent.status.value, reason=reason))
        self._dispatch()
        self._publish_positions()

    def finish_wrap_up(self, username: str, call_id: str) -> bool:
        """The agent submitted the wrap-up of call_id (REST or agent message): available now, if still wrapping up."""
        agent = self.agents.get(username)
        if agent is None or agent.status is not AgentStatus.WRAP_UP or agent.wrap_up_call != call_id:
            return False
        self._end_wrap_up(username, "wrap_up_done")
        return True

    def _cancel_wrap_up(self, agent: AgentState) -> None:
        self._cancel_timer(self._wrap_timers, agent.username)
        agent.wrap_up_call = None

    @staticmethod
    def _cancel_timer(timers: dict[str, asyncio.TimerHandle], key: str) -> None:
        timer = timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _cancel_call_timers(self, call_id: str) -> None:
        self._cancel_timer(self._wait_timers, call_id)
        self._cancel_timer(self._rejoin_timers, call_id)

    # ------------------------------------------------------------------ endings
    async def end_call(self, call: Call, reason: EndReason, by: str) -> None:
        if call.state is CallState.ENDED:
            return
        self._cancel_ring(call.id)
        self._cancel_ring(f"round:{call.id}")
        self._cancel_call_timers(call.id)
        was_waiting = call.waiting
        self.queue.remove(call.id)
        mine = self._calls_by_subject.get(subject_key(call.identity))
        if mine is not None:
            mine.pop(call.id, None)
            if not mine:
                del self._calls_by_subject[subject_key(call.identity)]
        self.positions.forget(call.id)
        call.ended_at = now()
        call.end_reason = reason
        call.ended_by = by
        call.transition(CallState.ENDED, reason=reason.value, by=by)
        duration = call.ended_at - call.answered_at if call.answered_at else None
        if duration is not None:
            self._estimator(call.queue).record_handle_time(duration)
        event = CallEnded(call_id=call.id, reason=reason.value, by=by, duration_s=duration)
        caller = self.sessions.get(call.caller_session)
        if caller is not None:
            caller.deliver(event)
            caller.call_id = None
        for username in {call.agent, call.offered_to} - {None}:
            agent = self.agents[username]  # type: ignore[index]
            session = self.sessions.get(agent.session_id or "")
            if call.offered_to == username and call.agent is None:
                if session is not None:
                    session.deliver(OfferWithdrawn(call_id=call.id, reason=reason.value))
            elif session is not None:
                session.deliver(event)
                session.call_id = None
            if agent.call_id == call.id:
                agent.call_id = None
                if agent.status is AgentStatus.BUSY and session is not None and self.settings.wrap_up_s > 0:
                    self._start_wrap_up(agent, call, session)
                elif agent.status in (AgentStatus.BUSY, AgentStatus.RINGING):
                    agent.status = AgentStatus.AVAILABLE if session is not None else AgentStatus.OFFLINE
                    agent.idle_since = now()
                    if session is not None:
                        session.deliver(AgentStatusChanged(status=agent.status.value))
        call.offered_to = None
        # Observers (the record first) see the end before anything is awaited: a wrap-up sent by the agent as soon
        # as it gets call.ended must find the record already ended.
        log.info("call.ended", call_id=call.id, reason=reason.value, by=by, abandoned=was_waiting)
        self.emit("call.ended", call)
        await self.release_participants(call, event)
        await self.plane.close_call(call.id)
        self._untrack_legs(call.id)

        self._dispatch()
        self._publish_positions()
        self._forget_later(call)

    def _forget_later(self, call: Call) -> None:
        # Live state keeps ended calls briefly (for late requests to get a clear "call_ended"); records keep them.
        def forget() -> None:
            self._forget_timers.pop(call.id, None)
            self.calls.pop(call.id, None)

        self._forget_timers[call.id] = asyncio.get_running_loop().call_later(300, forget)

    @property
    def relays(self) -> dict[str, Relay]:
        """The in-process relays (a LocalPlane's), for tests and benchmarks that look inside a leg; empty when
        media runs in worker processes."""
        return getattr(self.plane, "relays", {})

    def _track_leg(self, call: Call, answer: Answer, participant: str, label: str) -> None:
        """label: "caller", "agent" (the call's agent) or the username of a colleague or supervisor."""
        for leg_id in [k for k, v in self._legs.items() if v[0] == call.id and v[1] == participant]:
            del self._legs[leg_id]  # a participant has one current leg
        self._legs[answer.leg_id] = (call.id, participant, label)

    def _untrack_legs(self, call_id: str, participant: str | None = None) -> None:
        for leg_id in [k for k, v in self._legs.items() if v[0] == call_id and participant in (None, v[1])]:
            del self._legs[leg_id]

    def _on_leg_event(self, event: LegEvent) -> None:
        """The media plane's one stream of leg events. Events of a leg that was replaced or removed are ignored."""
        tracked = self._legs.get(event.leg_id)
        call = self.calls.get(event.call_id)
        if tracked is None or call is None:
            return
        label = tracked[2]
        side = label not in ("caller", "agent")

        def tell(make: Callable[[str], Event]) -> None:
            if side:  # a supervisor's or colleague's leg is their own business: the caller must not see it
                self._to_agent(label, make("self"))
                return
            for session_id in self._participant_sessions(call):
                session = self.sessions.get(session_id)
                if session is not None:
                    session.deliver(make(label))

        if event.kind == "state":  # connection states, and the watchdog's disconnected/connected
            state = event.state or ""
            tell(lambda name: MediaState(call_id=call.id, leg=name, state=state))
        elif event.kind == "video":
            paused, reason = bool(event.paused), event.reason or ""
            call.log("video_paused" if paused else "video_resumed", leg=label, reason=reason)
            tell(lambda name: MediaVideo(call_id=call.id, leg=name, state="paused" if paused else "resumed",
                                         reason=reason))
        elif event.kind == "failed":
            if call.state is CallState.ENDED:
                return  # the call ended first (a peer closes its connection once told)
            call.log("media_failed", leg=label, cause=event.reason or "failed")
            if side and label in call.supervisors:
                self._spawn(self._drop_supervisor(call, label))
            elif side and label == call.consult:
                self._spawn(self._end_consult(call, "media_failed"))
            else:
                self._spawn(self.end_call(call, EndReason.MEDIA_FAILED, "system"))

    def _participant_sessions(self, call: Call) -> list[str]:
        ids = [call.caller_session]
        if call.agent and self.agents[call.agent].session_id:
            ids.append(self.agents[call.agent].session_id)  # type: ignore[arg-type]
        return ids

    def _session_expired(self, session: Session) -> None:
        """A participant did not come back within the grace period."""
        if session.role == "caller":
            call = self.calls.get(session.call_id or "")
            if call is not None and call.state is not CallState.ENDED and call.caller_session == session.id:
                self._spawn(self.end_call(call, EndReason.CALLER_GONE, "caller"))
            return
        state = self.agents.get(session.principal.username)
        if state is None or state.session_id != session.id:
            return
        state.session_id = None
        self._cancel_wrap_up(state)
        if state.call_id:
            call = self.calls.get(state.call_id)
            if call is not None and call.state is CallState.OFFERED:
                self._withdraw(call, state, "agent_disconnected")
            elif call is not None and call.state is CallState.CONNECTED:
                self._spawn(self.end_call(call, EndReason.AGENT_GONE, "agent"))
        state.status = AgentStatus.OFFLINE
        self._dispatch()
        self._publish_positions()

    def release_session(self, session: Session) -> None:
        """The client said goodbye (or its socket closed without a resumable state)."""
        self.sessions.remove(session)
        self._session_expired(session)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ lifecycle
    def snapshot(self) -> dict[str, Any]:
        return {
            "queue": [
                {"call_id": c.id, "state": c.state.value, "wait_s": round(c.wait_s, 1), "call_type": c.call_type.value,
                 "queue": c.queue, "priority": c.priority, "callback": c.callback}
                for c in self.queue.ordered()
            ],
            "agents": [
                {"username": a.username, "display_name": a.display_name, "status": a.status.value, "call_id": a.call_id,
                 "skills": sorted(a.skills)}
                for a in self.agents.values()
            ],
            "calls_active": sum(1 for c in self.calls.values() if c.state is not CallState.ENDED),
        }

    async def start(self) -> None:
        """Start what runs beside the engine: the media plane (worker processes, if so configured)."""
        await self.plane.start()

    async def close(self) -> None:
        """End every call (media legs closed once) and stop every timer and task. A callback request the caller
        has not rejoined stays open: it is a promise, restored from the records by the next node that starts."""
        self.closing = True
        for call in list(self.calls.values()):
            if call.state is not CallState.ENDED and not (call.callback and call.rejoined_at is None):
                await self.end_call(call, EndReason.SHUTDOWN, "system")
        for timers in (self._ring_timers, self._forget_timers, self._wait_timers, self._rejoin_timers,
                       self._wrap_timers):
            for timer in timers.values():
                timer.cancel()
            timers.clear()
        if self._hours_timer is not None:
            self._hours_timer.cancel()
            self._hours_timer = None
        self.positions.close()
        await self.plane.close()
        self._legs.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sessions.close()
