"""In-call handling: hold, blind and warm transfer, supervisor monitor/whisper/barge, snapshots.

A mixin of the Switchboard (gateway/switchboard.py), kept apart so the call's routing and its in-call controls
each stay readable. The media side of each action is one change of the call's Scene (gateway/media/topology.py):
the relay then forwards exactly what the scene says, so "who hears whom" is decided in one place.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

import structlog

from .calls import Call
from .chatguard import ChatGuard
from .errors import Forbidden, InvalidState, NotFound
from .events import (
    AgentStatusChanged,
    CallAnswered,
    ChatMessage,
    ContentPushed,
    ContentStatus,
    CallHeld,
    CallOffered,
    CallTransferred,
    CallTransferring,
    ConsultState,
    OfferWithdrawn,
)
from .media.topology import SuperviseMode
from .models import AgentStatus, CallState, now
from .sessions import Session

if TYPE_CHECKING:
    from .switchboard import Switchboard

log = structlog.get_logger("callin.incall")

SUPERVISOR_ROLES = {"supervisor", "admin"}


class InCallControls:
    """Mixed into Switchboard; `self` is the Switchboard."""

    # -- helpers -------------------------------------------------------------------------------------------
    def _own_connected_call(self: "Switchboard", session: Session, call_id: str) -> Call:
        state, call = self._agent_call(session, call_id)
        if call.agent != state.username:
            raise Forbidden("this call belongs to another agent", code="not_your_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        return call

    def _changed(self: "Switchboard", call: Call) -> None:
        self.emit("call.updated", call)

    def _to_agent(self: "Switchboard", username: str | None, event: Any) -> None:
        agent = self.agents.get(username or "")
        session = self.sessions.get(agent.session_id or "") if agent else None
        if session is not None:
            session.deliver(event)

    def _to_caller(self: "Switchboard", call: Call, event: Any) -> None:
        session = self.sessions.get(call.caller_session)
        if session is not None:
            session.deliver(event)

    def is_participant(self: "Switchboard", call: Call, username: str) -> bool:
        """The agent, a consulted colleague who joined, or a supervisor: may send media for the call."""
        return username == call.agent or (username == call.consult and call.consult_joined) \
            or username in call.supervisors

    # -- hold ----------------------------------------------------------------------------------------------
    def hold(self: "Switchboard", session: Session, call_id: str, held: bool) -> Call:
        call = self._own_connected_call(session, call_id)
        if call.consult is not None:
            raise InvalidState("the caller is on hold for a consult; complete or cancel it", code="consult_in_progress")
        if call.held == held:
            raise InvalidState("the call is already " + ("on hold" if held else "off hold"), code="hold_unchanged")
        call.held = held
        self.plane.set_scene(call.id, held=held)
        call.log("hold" if held else "resume", by=call.agent)
        self._to_caller(call, CallHeld(call_id=call.id, held=held))
        self._to_agent(call.agent, CallHeld(call_id=call.id, held=held))
        self._changed(call)
        return call

    # -- transfer ------------------------------------------------------------------------------------------
    def _available_colleague(self: "Switchboard", call: Call, username: str) -> Any:
        target = self.agents.get(username)
        if target is None or target.session_id is None:
            raise NotFound(f"no signed-in agent {username!r}", code="unknown_agent")
        if target.username == call.agent:
            raise InvalidState("an agent cannot transfer a call to themselves", code="transfer_to_self")
        if target.status is not AgentStatus.AVAILABLE:
            raise InvalidState(f"{username} is {target.status.value}", code="target_unavailable", retryable=True)
        return target

    async def transfer(self: "Switchboard", session: Session, call_id: str, *, to_agent: str | None,
                       to_queue: str | None, mode: str) -> Call:
        """Blind: the call leaves this agent now and rings at the target (an agent, or a queue's next agent).
        Warm: the target is consulted first while the caller is on hold (complete_transfer hands over)."""
        call = self._own_connected_call(session, call_id)
        if (to_agent is None) == (to_queue is None):
            raise InvalidState("name exactly one of to_agent and to_queue", code="bad_transfer")
        if call.consult is not None:
            raise InvalidState("a consult is already in progress", code="consult_in_progress")
        if mode == "warm":
            if to_agent is None:
                raise InvalidState("a warm transfer consults one agent: name to_agent", code="bad_transfer")
            target = self._available_colleague(call, to_agent)
            return self._start_consult(call, target)
        if to_agent is not None:
            target = self._available_colleague(call, to_agent)
        else:
            target = None
            if to_queue not in self.queue_names():
                raise NotFound(f"no queue {to_queue!r}", code="unknown_queue")
        previous = call.agent
        await self._release_agent_from_call(call, previous, CallTransferred(call_id=call.id, to=to_agent or to_queue or ""))
        call.transferred_from = previous
        call.held = False
        call.agent = None
        call.answered_at = None
        self.plane.set_scene(call.id, agent=None, held=False)
        self._to_caller(call, CallTransferring(call_id=call.id, mode="blind"))
        if target is not None:
            self.queue.add(call)
            self._offer(call, target, transfer="blind", by=previous)
        else:
            call.transition(CallState.QUEUED, transfer="blind", by=previous, to=to_queue)
            call.queue = to_queue or call.queue
            call.declined_by.clear()
            self.queue.add(call)
            self._dispatch()
            self._publish_positions()
        self._changed(call)
        return call

    def queue_names(self: "Switchboard") -> set[str]:
        return {queue.name for queue in self.queues.all()}

    async def _release_agent_from_call(self: "Switchboard", call: Call, username: str | None, event: Any) -> None:
        """The agent's part is over (transferred on): close their leg, tell them, make them available."""
        if username is None:
            return
        await self.plane.remove(call.id, username)
        self._untrack_legs(call.id, username)
        agent = self.agents.get(username)
        if agent is None:
            return
        session = self.sessions.get(agent.session_id or "")
        if agent.call_id == call.id:
            agent.call_id = None
            agent.status = AgentStatus.AVAILABLE if session is not None else AgentStatus.OFFLINE
            agent.idle_since = now()
        if session is not None:
            session.call_id = None
            session.deliver(event)
            session.deliver(AgentStatusChanged(status=agent.status.value))

    def _start_consult(self: "Switchboard", call: Call, target: Any) -> Call:
        call.consult = target.username
        call.consult_joined = False
        target.status = AgentStatus.RINGING
        target.call_id = call.id
        card = call.card() | {"consult": {"from": call.agent, "from_name": self.agents[call.agent].display_name}}
        self._to_agent(target.username, CallOffered(call_id=call.id, card=card, ring_timeout_s=self.settings.ring_timeout_s))
        loop = asyncio.get_running_loop()
        self._ring_timers[f"consult:{call.id}"] = loop.call_later(
            self.settings.ring_timeout_s, self._consult_timeout, call.id, target.username)
        call.log("consult_offered", by=call.agent, to=target.username)
        self._changed(call)
        return call

    def _consult_timeout(self: "Switchboard", call_id: str, username: str) -> None:
        self._ring_timers.pop(f"consult:{call_id}", None)
        call = self.calls.get(call_id)
        if call is not None and call.consult == username and not call.consult_joined:
            self._spawn(self._end_consult(call, "ring_timeout"))

    def accept_consult(self: "Switchboard", session: Session, call: Call) -> Call:
        state = self.agent_state(session)
        timer = self._ring_timers.pop(f"consult:{call.id}", None)
        if timer is not None:
            timer.cancel()
        call.consult_joined = True
        state.status = AgentStatus.BUSY
        session.call_id = call.id
        call.held = True
        self.plane.set_scene(call.id, consult=state.username, held=True)
        call.log("consult_joined", agent=state.username, by=call.agent)
        self._to_caller(call, CallHeld(call_id=call.id, held=True))
        self._to_agent(call.agent, ConsultState(call_id=call.id, state="joined", colleague=state.username))
        session.deliver(AgentStatusChanged(status=state.status.value, call_id=call.id))
        self._changed(call)
        return call

    def decline_consult(self: "Switchboard", session: Session, call: Call) -> Call:
        self._spawn(self._end_consult(call, "declined"))
        return call

    async def _end_consult(self: "Switchboard", call: Call, reason: str) -> None:
        colleague = call.consult
        if colleague is None:
            return
        timer = self._ring_timers.pop(f"consult:{call.id}", None)
        if timer is not None:
            timer.cancel()
        joined = call.consult_joined
        call.consult = None
        call.consult_joined = False
        call.held = False
        self.plane.set_scene(call.id, consult=None, held=False)
        if joined:
            self._to_caller(call, CallHeld(call_id=call.id, held=False))
            await self._release_agent_from_call(call, colleague, ConsultState(call_id=call.id, state=reason,
                                                                              colleague=call.agent or ""))
        else:
            await self._release_agent_from_call(call, colleague, OfferWithdrawn(call_id=call.id, reason=reason))
        self._to_agent(call.agent, ConsultState(call_id=call.id, state=reason, colleague=colleague))
        call.log("consult_ended", reason=reason, colleague=colleague)
        self._changed(call)

    async def cancel_transfer(self: "Switchboard", session: Session, call_id: str) -> Call:
        call = self._own_connected_call(session, call_id)
        if call.consult is None:
            raise InvalidState("no consult in progress", code="no_consult")
        await self._end_consult(call, "cancelled")
        return call

    async def complete_transfer(self: "Switchboard", session: Session, call_id: str) -> Call:
        """Hand the caller to the consulted colleague; the transferring agent leaves."""
        call = self._own_connected_call(session, call_id)
        if call.consult is None or not call.consult_joined:
            raise InvalidState("the colleague has not joined yet", code="consult_not_joined")
        previous, colleague = call.agent, call.consult
        call.agent = colleague
        call.consult = None
        call.consult_joined = False
        call.held = False
        call.transferred_from = previous
        self.plane.set_scene(call.id, agent=colleague, consult=None, held=False)
        await self._release_agent_from_call(call, previous, CallTransferred(call_id=call.id, to=colleague or ""))
        call.log("transferred", transfer="warm", by=previous, to=colleague)
        new_agent = self.agents[colleague]  # type: ignore[index]
        self._to_caller(call, CallHeld(call_id=call.id, held=False))
        self._to_caller(call, CallAnswered(call_id=call.id, agent_name=new_agent.display_name))
        self._to_agent(colleague, ConsultState(call_id=call.id, state="completed", colleague=previous or ""))
        self._changed(call)
        return call

    # -- supervisor ----------------------------------------------------------------------------------------
    def supervise(self: "Switchboard", session: Session, call_id: str, mode: SuperviseMode) -> Call:
        account = session.principal
        if getattr(account, "role", "agent") not in SUPERVISOR_ROLES:
            raise Forbidden("only supervisors can monitor, whisper or barge", code="not_supervisor")
        call = self.calls.get(call_id)
        if call is None:
            raise NotFound(f"no call {call_id}", code="unknown_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        if account.username in (call.agent, call.consult):
            raise InvalidState("you are in this call", code="already_in_call")
        previous = call.supervisors.get(account.username)
        call.supervisors[account.username] = mode.value
        self.plane.set_scene(call.id, supervisors={k: SuperviseMode(v) for k, v in call.supervisors.items()})
        session.call_id = call.id
        call.log("supervise", supervisor=account.username, mode=mode.value, previous=previous)
        log.info("call.supervise", call_id=call.id, supervisor=account.username, mode=mode.value)
        self._changed(call)
        return call

    async def stop_supervising(self: "Switchboard", session: Session, call_id: str) -> Call:
        call = self.calls.get(call_id)
        username = session.principal.username
        if call is None or username not in call.supervisors:
            raise InvalidState("you are not supervising this call", code="not_supervising")
        await self._drop_supervisor(call, username)
        session.call_id = None
        return call

    async def _drop_supervisor(self: "Switchboard", call: Call, username: str) -> None:
        call.supervisors.pop(username, None)
        self.plane.set_scene(call.id, supervisors={k: SuperviseMode(v) for k, v in call.supervisors.items()})
        await self.plane.remove(call.id, username)
        self._untrack_legs(call.id, username)
        call.log("supervise_stopped", supervisor=username)
        self._changed(call)

    async def release_participants(self: "Switchboard", call: Call, event: Any) -> None:
        """The call ended: tell a consulted colleague and the supervisors, free the colleague."""
        if call.consult is not None:
            colleague, joined = call.consult, call.consult_joined
            call.consult = None
            await self._release_agent_from_call(
                call, colleague, event if joined else OfferWithdrawn(call_id=call.id, reason=event.reason))
        for username in list(call.supervisors):
            self._to_agent(username, event)
        call.supervisors.clear()

    # -- content and chat ----------------------------------------------------------------------------------
    def _staff_in_call(self: "Switchboard", session: Session, call_id: str) -> Call:
        state, call = self._agent_call(session, call_id)
        if not self.is_participant(call, state.username):
            raise Forbidden("you are not in this call", code="not_your_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        return call

    def check_attachment(self: "Switchboard", call: Call, attachment: dict[str, Any] | None) -> None:
        if attachment is not None and attachment["id"] not in call.attachments:
            raise NotFound("no such attachment in this call; upload it first", code="unknown_attachment")

    def push_content(self: "Switchboard", session: Session, call_id: str, content: dict[str, Any]) -> dict[str, Any]:
        """Show a link, an image or a text card on the caller's screen; the caller reports seen/opened."""
        call = self._staff_in_call(session, call_id)
        self.check_attachment(call, content.get("attachment"))
        item = {**content, "content_id": secrets.token_hex(6), "by": session.principal.username, "at": now(),
                "status": "sent"}
        call.pushed[item["content_id"]] = item
        call.log("content_pushed", by=item["by"], content_kind=item["kind"], content_id=item["content_id"],
                 title=item.get("title"), url=item.get("url"))
        self._to_caller(call, ContentPushed(call_id=call.id, content=item))
        self._changed(call)
        return item

    def content_status(self: "Switchboard", session: Session, call_id: str | None, content_id: str,
                       status: str) -> None:
        call = self.caller_call(session, call_id)
        item = call.pushed.get(content_id)
        if item is None:
            raise NotFound("no such pushed content", code="unknown_content")
        order = ["sent", "seen", "opened", "dismissed"]
        if order.index(status) <= order.index(item["status"]) and status != "dismissed":
            return  # already reported (seen after opened says nothing new)
        item["status"] = status
        call.log("content_" + status, content_id=content_id)
        self._to_agent(item["by"], ContentStatus(call_id=call.id, content_id=content_id, status=status))
        self._changed(call)

    def chat(self: "Switchboard", session: Session, call_id: str | None, text: str | None,
             attachment: dict[str, Any] | None) -> dict[str, Any]:
        """A chat line (and/or a file) from the caller or from someone in the call, to everyone in it."""
        if session.role == "caller":
            call = self.caller_call(session, call_id)
            if call.state is CallState.ENDED:
                raise InvalidState("the call has ended", code="call_ended")
            sender = {"role": "caller", "name": call.identity.name or "Caller"}
        else:
            call = self._staff_in_call(session, call_id or "")
            account = session.principal
            sender = {"role": "supervisor" if account.username in call.supervisors else "agent",
                      "name": account.display_name, "username": account.username}
        if text is not None and len(text) > self.settings.max_chat_chars:
            raise InvalidState(f"a chat line has at most {self.settings.max_chat_chars} characters",
                               code="chat_too_long")
        self.check_attachment(call, attachment)
        if call.chat_guard is None:
            call.chat_guard = ChatGuard(self.settings, self.clock)
        sender_key = sender.get("username", "caller")
        call.chat_guard.check(sender_key)
        call.chat_guard.sent(sender_key)
        message = {"message_id": secrets.token_hex(6), "from": sender, "text": text, "attachment": attachment,
                   "at": now()}
        call.log("chat", **{"from": sender["role"], "text": text,
                            "attachment": attachment["id"] if attachment else None})
        event = ChatMessage(call_id=call.id, message=message)
        self._to_caller(call, event)
        for username in {call.agent, call.consult, *call.supervisors} - {None}:
            self._to_agent(username, event)
        self._changed(call)
        return message

    # -- wallboard -----------------------------------------------------------------------------------------
    def wallboard(self: "Switchboard") -> dict[str, Any]:
        """What a supervisor's wallboard shows. Times are absolute (UNIX seconds) so clients count up locally."""
        waiting = [
            {"call_id": c.id, "queue": c.queue, "priority": c.priority, "call_type": c.call_type.value,
             "caller": c.identity.name or c.identity.subject, "since": c.created_at, "state": c.state.value,
             "ringing_at": c.offered_to, "callback": bool(getattr(c, "callback", False))}
            for c in self.queue.ordered()
        ]
        in_progress = [
            {"call_id": c.id, "queue": c.queue, "call_type": c.call_type.value,
             "caller": c.identity.name or c.identity.subject, "agent": c.agent, "since": c.answered_at,
             "held": c.held, "consult": c.consult, "supervisors": dict(c.supervisors)}
            for c in self.calls.values() if c.state is CallState.CONNECTED
        ]
        agents = [
            {"username": a.username, "display_name": a.display_name, "status": a.status.value, "call_id": a.call_id,
             "since": a.idle_since}
            for a in self.agents.values()
        ]
        queues: dict[str, dict[str, Any]] = {}
        for item in waiting:
            q = queues.setdefault(item["queue"], {"name": item["queue"], "waiting": 0, "oldest_since": None})
            q["waiting"] += 1
            if q["oldest_since"] is None or item["since"] < q["oldest_since"]:
                q["oldest_since"] = item["since"]
        return {"queues": list(queues.values()), "waiting": waiting, "calls": in_progress, "agents": agents,
                "at": now()}
