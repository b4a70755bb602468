"""The Switchboard: the call engine's façade. Calls, the queue, agents, sessions and each call's media relay.

It knows nothing of HTTP or of the wire protocol: participants are Sessions that receive domain events.
Observers (metrics, records, webhooks) subscribe to its pyee events: call.queued, call.offered (call, username),
call.withdrawn (call, username, reason: declined / ring_timeout / agent_disconnected), call.answered, call.ended.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import structlog
from pyee.asyncio import AsyncIOEventEmitter

from .auth import AgentAccount
from .calls import Call
from .config import Settings
from .errors import Forbidden, InvalidState, NotFound, Unavailable
from .events import (
    AgentStatusChanged,
    CallAnswered,
    CallEnded,
    CallOffered,
    MediaState,
    OfferWithdrawn,
    QueueUpdate,
)
from .incall import InCallControls
from .media import Leg, MediaConfig, Relay
from .models import AgentStatus, CallContext, CallerIdentity, CallState, CallType, EndReason, Location, now
from .routing import AgentState, CallQueue, WaitEstimator, pick_agent
from .sessions import Session, SessionRegistry

log = structlog.get_logger("callin.switchboard")

SETTABLE_STATUS = {AgentStatus.AVAILABLE, AgentStatus.AWAY}


class Switchboard(InCallControls, AsyncIOEventEmitter):
    def __init__(self, settings: Settings, media: MediaConfig | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.media = media or MediaConfig.from_settings(settings)
        self.sessions = SessionRegistry(settings.resume_grace_s, self._session_expired)
        self.calls: dict[str, Call] = {}
        self.relays: dict[str, Relay] = {}
        self.agents: dict[str, AgentState] = {}
        self.queue = CallQueue()
        self.estimator = WaitEstimator()
        self._ring_timers: dict[str, asyncio.TimerHandle] = {}
        self._forget_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_positions: dict[str, tuple[int, int, int | None]] = {}
        self.closing = False

    # ------------------------------------------------------------------ callers
    def open_caller(self, identity: CallerIdentity) -> Session:
        return self.sessions.create("caller", identity)

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
        if len(self.queue) >= self.settings.max_queue_length:
            raise Unavailable("the queue is full, try again later", code="queue_full")
        if context.encoded_size() > self.settings.max_context_bytes:
            raise InvalidState(f"context larger than {self.settings.max_context_bytes} bytes", code="context_too_large")
        identity: CallerIdentity = session.principal
        priority = identity.claims.get("priority", 0)
        call = Call(
            id=secrets.token_hex(8),
            identity=identity,
            call_type=call_type,
            location=location,
            context=context,
            caller_session=session.id,
            priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
        )
        self.calls[call.id] = call
        self.relays[call.id] = Relay(call.id, self.media)
        session.call_id = call.id
        self.queue.add(call)
        log.info("call.queued", call_id=call.id, call_type=call_type.value, subject=identity.subject)
        self.emit("call.queued", call)
        self._dispatch()
        self._publish_positions()
        return call

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
        relay = self.relays[call.id]
        leg, answer = await relay.caller_offer(sdp)
        self._watch_leg(call, leg, "caller")
        call.log("caller_media_offered")
        return answer

    async def add_candidate(self, call: Call, participant: str, candidate: str | None,
                            sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        relay = self.relays.get(call.id)
        leg = relay.leg(participant) if relay else None
        if leg is None:
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        await leg.add_ice_candidate(candidate, sdp_mid, sdp_mline_index)

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
            self.sessions.remove(previous)
        state.session_id = session.id
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
        call.answered_at = now()
        call.agent = state.username
        self.relays[call.id].set_scene(agent=state.username)
        call.transition(CallState.CONNECTED, agent=state.username)
        state.status = AgentStatus.BUSY
        state.call_id = call.id
        state.missed_rings = 0
        session.call_id = call.id
        caller = self.sessions.get(call.caller_session)
        if caller is not None:
            caller.deliver(CallAnswered(call_id=call.id, agent_name=state.display_name))
        session.deliver(AgentStatusChanged(status=state.status.value, call_id=call.id))
        log.info("call.answered", call_id=call.id, agent=state.username, wait_s=round(call.wait_s, 3))
        self.emit("call.answered", call)
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
        relay = self.relays[call.id]
        leg, answer = await relay.agent_offer(state.username, sdp)
        self._watch_leg(call, leg, "agent" if call.agent == state.username else state.username)
        call.log("agent_media_offered", agent=state.username)
        return answer

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
        """Offer waiting calls, in order, to the longest-idle available agents."""
        if self.closing:
            return
        agents = list(self.agents.values())
        for call in self.queue.ordered():
            if call.state is not CallState.QUEUED:
                continue
            agent = pick_agent(agents, call.declined_by)
            if agent is None:
                continue
            self._offer(call, agent)

    def _offer(self, call: Call, agent: AgentState) -> None:
        call.transition(CallState.OFFERED, agent=agent.username)
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
        agent.status = AgentStatus.AWAY
        session = self.sessions.get(agent.session_id or "")
        if session is not None:
            session.deliver(AgentStatusChanged(status=AgentStatus.AWAY.value, reason="missed_call"))
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
        if len(call.declined_by) >= len(self.agents):
            call.declined_by.clear()  # everyone passed: start a new round rather than strand the caller
        self.emit("call.withdrawn", call, agent.username, reason)

    def _cancel_ring(self, call_id: str) -> None:
        timer = self._ring_timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def staffed(self) -> int:
        return sum(1 for a in self.agents.values() if a.status in (AgentStatus.AVAILABLE, AgentStatus.BUSY, AgentStatus.RINGING))

    def _publish_positions(self) -> None:
        ordered = self.queue.ordered()
        staffed = self.staffed()
        for position, call in enumerate(ordered, start=1):
            estimate = self.estimator.estimate(position, staffed)
            update = (position, len(ordered), estimate)
            if self._last_positions.get(call.id) == update:
                continue
            self._last_positions[call.id] = update
            session = self.sessions.get(call.caller_session)
            if session is not None:
                session.deliver(QueueUpdate(call_id=call.id, position=position, queue_length=len(ordered),
                                            estimated_wait_s=estimate))

    # ------------------------------------------------------------------ endings
    async def end_call(self, call: Call, reason: EndReason, by: str) -> None:
        if call.state is CallState.ENDED:
            return
        self._cancel_ring(call.id)
        was_waiting = call.waiting
        self.queue.remove(call.id)
        self._last_positions.pop(call.id, None)
        call.ended_at = now()
        call.end_reason = reason
        call.ended_by = by
        call.transition(CallState.ENDED, reason=reason.value, by=by)
        duration = call.ended_at - call.answered_at if call.answered_at else None
        if duration is not None:
            self.estimator.record_handle_time(duration)
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
                if agent.status in (AgentStatus.BUSY, AgentStatus.RINGING):
                    agent.status = AgentStatus.AVAILABLE if session is not None else AgentStatus.OFFLINE
                    agent.idle_since = now()
                    if session is not None:
                        session.deliver(AgentStatusChanged(status=agent.status.value))
        call.offered_to = None
        await self.release_participants(call, event)
        relay = self.relays.pop(call.id, None)
        if relay is not None:
            await relay.close()
        log.info("call.ended", call_id=call.id, reason=reason.value, by=by, abandoned=was_waiting)
        self.emit("call.ended", call)
        self._dispatch()
        self._publish_positions()
        self._forget_later(call)

    def _forget_later(self, call: Call) -> None:
        # Live state keeps ended calls briefly (for late requests to get a clear "call_ended"); records keep them.
        def forget() -> None:
            self._forget_timers.pop(call.id, None)
            self.calls.pop(call.id, None)

        self._forget_timers[call.id] = asyncio.get_running_loop().call_later(300, forget)

    def _watch_leg(self, call: Call, leg: Leg, participant: str) -> None:
        def on_state(state: str) -> None:
            for session_id in self._participant_sessions(call):
                session = self.sessions.get(session_id)
                if session is not None:
                    session.deliver(MediaState(call_id=call.id, leg=participant, state=state))

        def on_failed() -> None:
            call.log("media_failed", leg=participant)
            self._spawn(self.end_call(call, EndReason.MEDIA_FAILED, "system"))

        leg.on("state", on_state)
        leg.on("failed", on_failed)

    def _participant_sessions(self, call: Call) -> list[str]:
        ids = [call.caller_session]
        if call.agent and self.agents[call.agent].session_id:
            ids.append(self.agents[call.agent].session_id)  # type: ignore[arg-type]
        return ids

    def _session_expired(self, session: Session) -> None:
        """A participant did not come back within the grace period."""
        if session.role == "caller":
            call = self.calls.get(session.call_id or "")
            if call is not None and call.state is not CallState.ENDED:
                self._spawn(self.end_call(call, EndReason.CALLER_GONE, "caller"))
            return
        state = self.agents.get(session.principal.username)
        if state is None or state.session_id != session.id:
            return
        state.session_id = None
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
                {"call_id": c.id, "state": c.state.value, "wait_s": round(c.wait_s, 1), "call_type": c.call_type.value}
                for c in self.queue.ordered()
            ],
            "agents": [
                {"username": a.username, "display_name": a.display_name, "status": a.status.value, "call_id": a.call_id}
                for a in self.agents.values()
            ],
            "calls_active": sum(1 for c in self.calls.values() if c.state is not CallState.ENDED),
        }

    async def close(self) -> None:
        """End every call (media legs closed once) and stop every timer and task."""
        self.closing = True
        for call in list(self.calls.values()):
            if call.state is not CallState.ENDED:
                await self.end_call(call, EndReason.SHUTDOWN, "system")
        for timers in (self._ring_timers, self._forget_timers):
            for timer in timers.values():
                timer.cancel()
            timers.clear()
        for relay in list(self.relays.values()):
            await relay.close()
        self.relays.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sessions.close()
