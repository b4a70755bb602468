"""Presence and wrap-up: agents signing in, their status, wrap-up after a call (and its timer), which agents
routing may offer calls to (console attached), and what the others in a call are told when a participant's socket
goes away and comes back."""

from __future__ import annotations

import structlog

from ..auth import AgentAccount
from ..calls import Call
from ..errors import InvalidState
from ..events import AgentStatusChanged, ParticipantConnection
from ..models import AgentStatus, CallState, now
from ..routing import AgentState
from ..sessions import Session
from .core import Core

log = structlog.get_logger("callin.presence")

SETTABLE_STATUS = {AgentStatus.AVAILABLE, AgentStatus.AWAY}
STAFFED_STATUS = {AgentStatus.AVAILABLE, AgentStatus.BUSY, AgentStatus.RINGING, AgentStatus.WRAP_UP}


class Presence:
    def __init__(self, core: Core) -> None:
        self.core = core
        core.timers.on("wrap", self.end_wrap_up)

    # -- signing in and status -----------------------------------------------------------------------------
    def open_agent(self, account: AgentAccount) -> Session:
        sessions, live = self.core.sessions, self.core.live
        session = sessions.create("agent", account)
        state = live.agent(account.username)
        if state is None:
            state = AgentState(username=account.username, display_name=account.display_name, idle_since=now())
            live.add_agent(state)
        previous = sessions.get(state.session_id) if state.session_id else None
        if previous is not None and previous is not session:
            # The same agent signed in again elsewhere: the newest console wins, the call stays.
            previous.deliver(AgentStatusChanged(status=state.status.value, reason="signed_in_elsewhere"))
            session.call_id = previous.call_id
            sessions.remove(previous, close_socket=True, why="replaced")
        state.session_id = session.id
        state.skills = frozenset(account.skills)
        state.capacity = account.capacity
        if state.status is AgentStatus.OFFLINE:
            state.status = AgentStatus.AWAY
        return session

    def agent_state(self, session: Session) -> AgentState:
        state = self.core.live.agent(session.principal.username)
        if state is None or state.session_id != session.id:
            raise InvalidState("this agent session was replaced by a newer sign-in", code="session_replaced")
        return state

    def set_status(self, session: Session, status: AgentStatus) -> AgentState:
        state = self.agent_state(session)
        if status not in SETTABLE_STATUS:
            raise InvalidState(f"an agent can set itself to available or away, not {status.value}", code="bad_status")
        if state.status in (AgentStatus.BUSY, AgentStatus.RINGING):
            raise InvalidState(f"the agent is {state.status.value}; finish the call first", code="agent_busy")
        if state.status is AgentStatus.WRAP_UP:
            self.cancel_wrap_up(state)
        if status is AgentStatus.AVAILABLE and state.status is not AgentStatus.AVAILABLE:
            state.idle_since = now()
            state.missed_rings = 0
        state.status = status
        session.deliver(AgentStatusChanged(status=status.value))
        return state

    def signed_out(self, session: Session) -> AgentState | None:
        """The agent's session is gone for good: its state, now without a session (None if it was replaced)."""
        state = self.core.live.agent(session.principal.username)
        if state is None or state.session_id != session.id:
            return None
        state.session_id = None
        self.cancel_wrap_up(state)
        return state

    # -- who routing may offer calls to -------------------------------------------------------------------
    def attached(self, agent: AgentState) -> bool:
        session = self.core.sessions.get(agent.session_id or "")
        return session is not None and session.attached

    def routable_agents(self) -> list[AgentState]:
        return [a for a in self.core.live.all_agents() if self.attached(a)]

    def staffed(self, queue: str | None = None) -> int:
        """Agents signed in and not away (available, ringing, busy, wrapping up); for a queue: those with its skills."""
        skills = self.core.queues.get(queue).skills if queue is not None else frozenset()
        return sum(1 for a in self.core.live.all_agents() if a.status in STAFFED_STATUS and a.can_take(skills))

    # -- the end of an agent's part in a call ---------------------------------------------------------------
    def call_over(self, agent: AgentState, call: Call, session: Session | None) -> None:
        """The call the agent was in (or ringing with) ended: wrap-up, or available (offline without a session)."""
        if agent.call_id != call.id:
            return
        agent.call_id = None
        if agent.status is AgentStatus.BUSY and session is not None and self.core.settings.wrap_up_s > 0:
            self.start_wrap_up(agent, call, session)
        elif agent.status in (AgentStatus.BUSY, AgentStatus.RINGING):
            agent.status = AgentStatus.AVAILABLE if session is not None else AgentStatus.OFFLINE
            agent.idle_since = now()
            if session is not None:
                session.deliver(AgentStatusChanged(status=agent.status.value))

    def released(self, agent: AgentState, call: Call, session: Session | None) -> None:
        """The agent's part in a call that goes on is over (transferred on): free again, no wrap-up."""
        if agent.call_id == call.id:
            agent.call_id = None
            agent.status = AgentStatus.AVAILABLE if session is not None else AgentStatus.OFFLINE
            agent.idle_since = now()

    # -- wrap-up ---------------------------------------------------------------------------------------------
    def start_wrap_up(self, agent: AgentState, call: Call, session: Session) -> None:
        wrap_up_s = self.core.settings.wrap_up_s
        agent.status = AgentStatus.WRAP_UP
        agent.wrap_up_call = call.id
        agent.wrap_up_started = self.core.clock.time()
        self.core.timers.set(f"agent:{agent.username}:wrap", wrap_up_s, agent.username, "wrap_up_timeout")
        session.deliver(AgentStatusChanged(status=agent.status.value, call_id=call.id, wrap_up_s=wrap_up_s))

    def end_wrap_up(self, username: str, reason: str) -> None:
        self.core.timers.cancel(f"agent:{username}:wrap")
        agent = self.core.live.agent(username)
        if agent is None or agent.status is not AgentStatus.WRAP_UP:
            return
        agent.status = AgentStatus.AVAILABLE
        agent.wrap_up_call = None
        agent.idle_since = now()
        self.core.to_session(agent.session_id, AgentStatusChanged(status=agent.status.value, reason=reason))

    def finish_wrap_up(self, username: str, call_id: str) -> bool:
        """The agent submitted the wrap-up of call_id (REST or agent message): available now, if still wrapping up."""
        agent = self.core.live.agent(username)
        if agent is None or agent.status is not AgentStatus.WRAP_UP or agent.wrap_up_call != call_id:
            return False
        self.end_wrap_up(username, "wrap_up_done")
        return True

    def extend_wrap_up(self, session: Session, call_id: str) -> float:
        """The agent is still writing the wrap-up of call_id (its console has an unsaved note): no call is offered
        for another wrap_up_s, up to wrap_up_max_s after the call ended. Returns the seconds granted."""
        agent = self.agent_state(session)
        if agent.status is not AgentStatus.WRAP_UP or agent.wrap_up_call != call_id:
            raise InvalidState("the agent is not wrapping up this call", code="not_wrapping_up")
        settings = self.core.settings
        left = settings.wrap_up_max_s - (self.core.clock.time() - agent.wrap_up_started)
        granted = round(min(settings.wrap_up_s, left), 3)
        if granted <= 0:
            raise InvalidState(f"wrap-up lasts at most {round(settings.wrap_up_max_s)} s; save the note now",
                               code="wrap_up_limit")
        self.core.timers.set(f"agent:{agent.username}:wrap", granted, agent.username, "wrap_up_timeout")
        return granted

    def adopt_wrap_up(self, agent: AgentState, call_id: str, started: float, until: float) -> None:
        """Several nodes: the agent's node takes over the wrap-up of a call whose home died (that home ran its timer):
        the agent keeps wrapping up until `until` (UNIX seconds, as the home last granted it), then is available,
        as if the home had stayed. Its wrap-up note is written to the call's record from here (wrap_up.submit)."""
        agent.status = AgentStatus.WRAP_UP
        agent.wrap_up_call = call_id
        agent.call_id = None
        agent.wrap_up_started = started
        left = max(0.0, until - self.core.clock.time())
        self.core.timers.set(f"agent:{agent.username}:wrap", left, agent.username, "wrap_up_timeout")

    def cancel_wrap_up(self, agent: AgentState) -> None:
        self.core.timers.cancel(f"agent:{agent.username}:wrap")
        agent.wrap_up_call = None

    # -- a participant's socket went away / came back: the others in the call are told -------------------
    def announce(self, session: Session, connected: bool) -> None:
        """participant.reconnecting / participant.reconnected to the others in the session's connected call."""
        found = self._call_of(session)
        if found is None:
            return
        call, role, name = found
        event = ParticipantConnection(call_id=call.id, role=role, name=name, connected=connected)
        for other in self._others_in_call(call, session):
            other.deliver(event)
        call.log("participant_" + ("reconnected" if connected else "reconnecting"), role=role)
        log.info("call.participant_" + ("reconnected" if connected else "reconnecting"), call_id=call.id, role=role)

    def announce_media(self, call: Call, role: str, connected: bool) -> None:
        """participant.reconnecting / reconnected with cause "media": the caller or the call's agent sent a new offer
        to set its media up again (a network change, a reloaded console), and its new leg is connected."""
        if call.state is not CallState.CONNECTED:
            return
        live = self.core.live
        if role == "caller":
            session_id: str | None = call.caller_session
            name = call.identity.name
        else:
            agent = live.agent(call.agent)
            session_id = agent.session_id if agent is not None else None
            name = agent.display_name if agent is not None else None
        session = self.core.sessions.get(session_id or "")
        event = ParticipantConnection(call_id=call.id, role=role, name=name, connected=connected, cause="media")
        for other in self._others_in_call(call, session):
            other.deliver(event)
        what = "media_reconnected" if connected else "media_reconnecting"
        call.log(what, role=role)
        log.info("call." + what, call_id=call.id, role=role)

    def _call_of(self, session: Session) -> tuple[Call, str, str | None] | None:
        live = self.core.live
        if session.role == "caller":
            call = live.call(session.call_id)
            if call is None or call.caller_session != session.id or call.state is not CallState.CONNECTED:
                return None
            return call, "caller", call.identity.name
        state = live.agent(session.principal.username)
        if state is None or state.session_id != session.id:
            return None
        call = live.call(state.call_id)
        if call is None or call.state is not CallState.CONNECTED or call.agent != state.username:
            return None
        return call, "agent", state.display_name

    def _others_in_call(self, call: Call, session: Session | None) -> list[Session]:
        ids = [call.caller_session]
        usernames = [call.agent, *call.supervisors]
        if call.consult and call.consult_joined:
            usernames.append(call.consult)
        for username in usernames:
            agent = self.core.live.agent(username)
            if agent is not None and agent.session_id:
                ids.append(agent.session_id)
        others = []
        for session_id in dict.fromkeys(ids):
            other = self.core.sessions.get(session_id)
            if other is not None and other is not session:
                others.append(other)
        return others
