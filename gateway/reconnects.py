"""Participants whose socket went away and came back: what the others in the call are told, what routing does
with an agent whose console is not attached, and why a late resume fails. Mixed into the Switchboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from .calls import Call
from .events import ParticipantConnection
from .models import AgentStatus, CallState, now
from .routing import AgentState
from .sessions import ResumeFailed, Session

if TYPE_CHECKING:
    from .switchboard import Switchboard

log = structlog.get_logger("callin.reconnects")


class Reconnects:
    """`self` is the Switchboard."""

    # -- routing only offers calls to agents whose console is attached ---------------------------------------
    def attached(self: "Switchboard", agent: AgentState) -> bool:
        session = self.sessions.get(agent.session_id or "")
        return session is not None and session.attached

    def routable_agents(self: "Switchboard") -> list[AgentState]:
        return [a for a in self.agents.values() if self.attached(a)]

    # -- a socket went away without bye / came back with its resume token ---------------------------------
    def _session_detached(self: "Switchboard", session: Session) -> None:
        if self.closing:
            return
        if session.role == "agent":
            self._agent_detached(session)
        self._announce(session, connected=False)

    def _session_resumed(self: "Switchboard", session: Session) -> None:
        if self.closing:
            return
        self._announce(session, connected=True)
        if session.role == "agent":  # its console is back: calls waiting meanwhile may ring there now
            self._dispatch()
            self._publish_positions()

    def _agent_detached(self: "Switchboard", session: Session) -> None:
        """A console that lost its socket cannot answer: a call ringing there goes to someone else at once."""
        state = self.agents.get(session.principal.username)
        if state is None or state.session_id != session.id or not state.call_id:
            return
        call = self.calls.get(state.call_id)
        if call is None or call.state is not CallState.OFFERED or call.offered_to != state.username:
            return
        self._withdraw(call, state, "agent_disconnected")
        call.declined_by.discard(state.username)  # it did not decline: once back, it may be offered the call again
        state.status = AgentStatus.AVAILABLE  # still signed in: offered calls again once its console is back
        state.idle_since = now()
        self._dispatch()
        self._publish_positions()

    def _announce(self: "Switchboard", session: Session, connected: bool) -> None:
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

    def _call_of(self: "Switchboard", session: Session) -> tuple[Call, str, str | None] | None:
        if session.role == "caller":
            call = self.calls.get(session.call_id or "")
            if call is None or call.caller_session != session.id or call.state is not CallState.CONNECTED:
                return None
            return call, "caller", call.identity.name
        state = self.agents.get(session.principal.username)
        if state is None or state.session_id != session.id:
            return None
        call = self.calls.get(state.call_id or "")
        if call is None or call.state is not CallState.CONNECTED or call.agent != state.username:
            return None
        return call, "agent", state.display_name

    def _others_in_call(self: "Switchboard", call: Call, session: Session) -> list[Session]:
        ids = [call.caller_session]
        usernames = [call.agent, *call.supervisors]
        if call.consult and call.consult_joined:
            usernames.append(call.consult)
        for username in usernames:
            agent = self.agents.get(username or "")
            if agent is not None and agent.session_id:
                ids.append(agent.session_id)
        others = []
        for session_id in dict.fromkeys(ids):
            other = self.sessions.get(session_id)
            if other is not None and other is not session:
                others.append(other)
        return others

    # -- a resume that fails says why ------------------------------------------------------------------------
    def resume_session(self: "Switchboard", token: str, role: str, same_principal: Any,
                       last_seq: int | None) -> Session:
        try:
            return self.sessions.resume(token, role, same_principal, last_seq)
        except ResumeFailed as exc:
            gone = self.sessions.gone(token)
            if gone is not None and exc.why != "other_user":
                call = self._last_call(gone.session_id, gone.role, gone.principal)
                if call is not None and call.state is CallState.ENDED and call.end_reason is not None:
                    exc.call = {"call_id": call.id, "reason": call.end_reason.value, "by": call.ended_by}
                    exc.reason = f"{exc.reason}; its call ended ({call.end_reason.value})"
            raise

    def _last_call(self: "Switchboard", session_id: str, role: str, principal: Any) -> Call | None:
        """The latest call (still in live state) of an ended session."""
        if role == "caller":
            mine = [c for c in self.calls.values() if c.caller_session == session_id]
        else:
            mine = [c for c in self.calls.values() if c.agent == principal.username]
        return max(mine, key=lambda c: c.created_at, default=None)
