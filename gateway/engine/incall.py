"""In-call controls of the call's agent: hold, blind transfer (to an agent or a queue) and warm transfer (consult
a colleague while the caller is on hold, then complete or cancel). The media side of each action is one change of
the call's Scene (gateway/media/topology.py): "who hears whom" is decided in one place."""

from __future__ import annotations

from typing import Protocol

from ..calls import Call
from ..errors import Forbidden, InvalidState, NotFound
from ..events import (
    AgentStatusChanged,
    CallAnswered,
    CallEnded,
    CallHeld,
    CallOffered,
    CallTransferred,
    CallTransferring,
    ConsultState,
    Event,
    OfferWithdrawn,
)
from ..models import AgentStatus, CallState
from ..routing import AgentState
from ..sessions import Session
from .core import Core
from .dispatch import Dispatch
from .presence import Presence
from .views import Views


class ColleagueClaims(Protocol):
    """Several nodes (signaling/cluster_calls.py): a named colleague is claimed in the shared store before it is
    rung for a transfer or a consult, exactly once with every node's offers, wherever its console is."""

    async def claim_colleague(self, call: Call, username: str) -> AgentState:
        """The colleague's state on this node (a stand-in if its console is on another node), claimed ringing for
        `call`; NotFound unknown_agent / InvalidState target_unavailable as on one node."""
        ...

    async def give_back(self, call: Call, username: str) -> None:
        """A claim the transfer did not use after all (the call changed while it was claimed)."""
        ...


class InCall:
    def __init__(self, core: Core, presence: Presence, dispatch: Dispatch, views: Views) -> None:
        self.core = core
        self.presence = presence
        self.dispatch = dispatch
        self.views = views
        self.claims: ColleagueClaims | None = None  # several nodes: colleagues are claimed cluster-wide
        core.timers.on("consult", self._consult_timeout)

    def own_connected_call(self, session: Session, call_id: str) -> Call:
        state, call = self.views.agent_and_call(session, call_id)
        if call.agent != state.username:
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        return call

    def _changed(self, call: Call) -> None:
        self.core.emit("call.updated", call)

    # -- hold ------------------------------------------------------------------------------------------------
    def hold(self, session: Session, call_id: str, held: bool) -> Call:
        call = self.own_connected_call(session, call_id)
        if call.consult is not None:
            raise InvalidState("the caller is on hold for a consult; complete or cancel it", code="consult_in_progress")
        if call.held == held:
            raise InvalidState("the call is already " + ("on hold" if held else "off hold"), code="hold_unchanged")
        call.held = held
        self.core.plane.set_scene(call.id, held=held)
        call.log("hold" if held else "resume", by=call.agent)
        self.core.to_caller(call, CallHeld(call_id=call.id, held=held))
        self.core.to_agent(call.agent, CallHeld(call_id=call.id, held=held))
        self._changed(call)
        return call

    # -- transfer --------------------------------------------------------------------------------------------
    def _available_colleague(self, call: Call, username: str) -> AgentState:
        target = self.core.live.agent(username)
        if target is None or target.session_id is None:
            raise NotFound(f"no signed-in agent {username!r}", code="unknown_agent")
        if target.username == call.agent:
            raise InvalidState("an agent cannot transfer a call to themselves", code="transfer_to_self")
        if target.status is not AgentStatus.AVAILABLE:
            raise InvalidState(f"{username} is {target.status.value}", code="target_unavailable", retryable=True)
        return target

    async def _claim_colleague(self, session: Session, call: Call, username: str) -> tuple[Call, AgentState]:
        """The named colleague, ready to be rung: on one node, an available agent of this engine; on several, an
        agent of any node claimed in the shared store first (so a concurrent offer of another node cannot ring it
        too). The call is checked again after the claim (it may have changed meanwhile)."""
        if self.claims is None:
            return call, self._available_colleague(call, username)
        if username == call.agent:
            raise InvalidState("an agent cannot transfer a call to themselves", code="transfer_to_self")
        target = await self.claims.claim_colleague(call, username)
        try:
            call = self.own_connected_call(session, call.id)
            if call.consult is not None:
                raise InvalidState("a consult is already in progress", code="consult_in_progress")
        except Exception:
            await self.claims.give_back(call, username)
            raise
        return call, target

    async def transfer(self, session: Session, call_id: str, *, to_agent: str | None, to_queue: str | None,
                       mode: str) -> Call:
        """Blind: the call leaves this agent now and rings at the target (an agent, or a queue's next agent, found
        when the engine settles). Warm: the target is consulted first while the caller is on hold
        (complete_transfer hands over)."""
        call = self.own_connected_call(session, call_id)
        if (to_agent is None) == (to_queue is None):
            raise InvalidState("name exactly one of to_agent and to_queue", code="bad_transfer")
        if call.consult is not None:
            raise InvalidState("a consult is already in progress", code="consult_in_progress")
        if mode == "warm":
            if to_agent is None:
                raise InvalidState("a warm transfer consults one agent: name to_agent", code="bad_transfer")
            call, colleague = await self._claim_colleague(session, call, to_agent)
            return self._start_consult(call, colleague)
        target = None
        if to_agent is not None:
            call, target = await self._claim_colleague(session, call, to_agent)
        elif to_queue not in self.views.queue_names():
            raise NotFound(f"no queue {to_queue!r}", code="unknown_queue")
        previous = call.agent
        await self.release_agent(call, previous, CallTransferred(call_id=call.id, to=to_agent or to_queue or ""))
        call.transferred_from = previous
        call.held = False
        call.agent = None
        call.answered_at = None
        self.core.plane.set_scene(call.id, agent=None, held=False)
        self.core.to_caller(call, CallTransferring(call_id=call.id, mode="blind"))
        line = self.core.live.line
        if target is not None:
            line.add(call)
            self.dispatch.offer(call, target, transfer="blind", by=previous)
        else:
            call.transition(CallState.QUEUED, transfer="blind", by=previous, to=to_queue)
            call.queue = to_queue or call.queue
            call.declined_by.clear()
            line.add(call)
        self._changed(call)
        return call

    async def release_agent(self, call: Call, username: str | None, event: Event) -> None:
        """The agent's part is over (transferred on): close their leg, tell them, make them available."""
        if username is None:
            return
        await self.core.plane.remove(call.id, username)
        self.core.live.untrack_legs(call.id, username)
        agent = self.core.live.agent(username)
        if agent is None:
            return
        session = self.core.sessions.get(agent.session_id or "")
        self.presence.released(agent, call, session)
        if session is not None:
            session.call_id = None
            session.deliver(event)
            session.deliver(AgentStatusChanged(status=agent.status.value))

    # -- warm transfer: the consult ------------------------------------------------------------------------
    def _start_consult(self, call: Call, target: AgentState) -> Call:
        settings = self.core.settings
        call.consult = target.username
        call.consult_joined = False
        target.status = AgentStatus.RINGING
        target.call_id = call.id
        agent = self.core.live.agent(call.agent)
        card = call.card() | {"consult": {"from": call.agent, "from_name": agent.display_name if agent else None}}
        self.core.to_agent(target.username, CallOffered(call_id=call.id, card=card,
                                                        ring_timeout_s=settings.ring_timeout_s))
        self.core.timers.set(f"call:{call.id}:consult", settings.ring_timeout_s, call.id, target.username)
        call.log("consult_offered", by=call.agent, to=target.username)
        self._changed(call)
        return call

    def _consult_timeout(self, call_id: str, username: str) -> None:
        call = self.core.live.call(call_id)
        if call is not None and call.consult == username and not call.consult_joined:
            self.core.spawn(self.end_consult(call, "ring_timeout"))

    def colleague_left(self, username: str, call: Call, *, for_good: bool) -> bool:
        """`username`'s console went away: if it is the consulted colleague of `call` (not its agent), a consult still
        ringing there is withdrawn at once (a console without its socket cannot answer, as for offers), and a joined
        one ends once the colleague's session is gone for good (beyond the resume grace, or signed out); the call
        goes on with its agent, who is told (consult.state agent_disconnected). True if it was the colleague."""
        if call.consult != username or call.agent == username:
            return False
        if for_good or not call.consult_joined:
            self.core.spawn(self.end_consult(call, "agent_disconnected"))
        return True

    def accept_consult(self, session: Session, state: AgentState, call: Call) -> Call:
        self.core.timers.cancel(f"call:{call.id}:consult")
        call.consult_joined = True
        state.status = AgentStatus.BUSY
        session.call_id = call.id
        call.held = True
        self.core.plane.set_scene(call.id, consult=state.username, held=True)
        call.log("consult_joined", agent=state.username, by=call.agent)
        self.core.to_caller(call, CallHeld(call_id=call.id, held=True))
        self.core.to_agent(call.agent, ConsultState(call_id=call.id, state="joined", colleague=state.username))
        session.deliver(AgentStatusChanged(status=state.status.value, call_id=call.id))
        self._changed(call)
        return call

    def decline_consult(self, call: Call) -> Call:
        self.core.spawn(self.end_consult(call, "declined"))
        return call

    async def end_consult(self, call: Call, reason: str) -> None:
        colleague = call.consult
        if colleague is None:
            return
        self.core.timers.cancel(f"call:{call.id}:consult")
        joined = call.consult_joined
        call.consult = None
        call.consult_joined = False
        call.held = False
        self.core.plane.set_scene(call.id, consult=None, held=False)
        if joined:
            self.core.to_caller(call, CallHeld(call_id=call.id, held=False))
            await self.release_agent(call, colleague, ConsultState(call_id=call.id, state=reason,
                                                                   colleague=call.agent or ""))
        else:
            await self.release_agent(call, colleague, OfferWithdrawn(call_id=call.id, reason=reason))
        self.core.to_agent(call.agent, ConsultState(call_id=call.id, state=reason, colleague=colleague))
        call.log("consult_ended", reason=reason, colleague=colleague)
        self._changed(call)

    async def cancel_transfer(self, session: Session, call_id: str) -> Call:
        call = self.own_connected_call(session, call_id)
        if call.consult is None:
            raise InvalidState("no consult in progress", code="no_consult")
        await self.end_consult(call, "cancelled")
        return call

    async def complete_transfer(self, session: Session, call_id: str) -> Call:
        """Hand the caller to the consulted colleague; the transferring agent leaves."""
        call = self.own_connected_call(session, call_id)
        if call.consult is None or not call.consult_joined:
            raise InvalidState("the colleague has not joined yet", code="consult_not_joined")
        previous, colleague = call.agent, call.consult
        call.agent = colleague
        call.consult = None
        call.consult_joined = False
        call.held = False
        call.transferred_from = previous
        self.core.plane.set_scene(call.id, agent=colleague, consult=None, held=False)
        await self.release_agent(call, previous, CallTransferred(call_id=call.id, to=colleague or ""))
        call.log("transferred", transfer="warm", by=previous, to=colleague)
        new_agent = self.core.live.agent(colleague)
        self.core.to_caller(call, CallHeld(call_id=call.id, held=False))
        self.core.to_caller(call, CallAnswered(call_id=call.id, agent_name=new_agent.display_name if new_agent
                                               else colleague or ""))
        self.core.to_agent(colleague, ConsultState(call_id=call.id, state="completed", colleague=previous or ""))
        self._changed(call)
        return call

    async def release_consult(self, call: Call, event: CallEnded) -> None:
        """The call ended: a consulted colleague is told (the offer withdrawn, if not joined yet) and freed."""
        if call.consult is None:
            return
        colleague, joined = call.consult, call.consult_joined
        call.consult = None
        await self.release_agent(call, colleague,
                                 event if joined else OfferWithdrawn(call_id=call.id, reason=event.reason))
