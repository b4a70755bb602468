"""The agent WebSocket (/ws/agent): hello with an agent session token (or the session cookie), status, accept/decline, SDP, hang-up."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.auth import AgentAccount
from gateway.errors import Forbidden, GatewayError, InvalidState
from gateway.engine.supervision import SUPERVISOR_ROLES
from gateway.media.topology import SuperviseMode
from gateway.models import AgentStatus, CallState, now
from gateway.sessions import Session
from gateway.store.signins import SessionRevoked

from . import protocol as p
from .access import origin_allowed, signin_for_token
from .cluster_calls import CALL_RELAY
from .drain import check_accepting
from .keys import LIVE_SIGNINS, METRICS, RECORDER, SETTINGS, SWITCHBOARD, WALLBOARD
from .ws import CLOSE_UNAUTHORIZED, Connection
from .outbox import Wire


class AgentConnection(Connection):
    role = "agent"
    adapter = p.agent_adapter

    _unregister: Callable[[], None] | None = None

    async def authenticate(self, token: str) -> AgentAccount:
        signin, account = await signin_for_token(self.request.app, token)
        self._bind_signin(signin.id)
        return account

    authenticate_header = authenticate

    async def fallback_principal(self) -> AgentAccount | None:
        """A console that signed in has the session cookie: its hello may omit the token."""
        cookie = self.request.cookies.get(self.request.app[SETTINGS].session_cookie_name)
        return await self.authenticate(cookie) if cookie else None

    def _bind_signin(self, sid: str) -> None:
        """This socket lives as long as the sign-in session: ending the session closes it."""
        if self._unregister is not None:
            self._unregister()
        self._unregister = self.request.app[LIVE_SIGNINS].register(sid, self._signin_ended)

    def _signin_ended(self, reason: str) -> None:
        self._unregister = None
        self._said_bye = True  # the agent leaves as with bye: no resume grace for an ended session
        self.error(SessionRevoked("this session was ended; sign in again"), None)
        self._outbox.put_close(CLOSE_UNAUTHORIZED, "session ended")

    def open_session(self, principal: AgentAccount) -> Session:
        check_accepting(self.request.app)  # a draining node takes no new session (signaling/drain.py)
        return self.board.open_agent(principal)

    def same_principal(self, principal: AgentAccount, other: Any) -> bool:
        return isinstance(other, AgentAccount) and other.username == principal.username

    def welcome_extra(self, session: Session, resumed: bool) -> dict[str, Any]:
        state = self.board.agent(session.principal.username)
        if state is None:
            raise InvalidState("this agent is not signed in", code="session_replaced")
        extra: dict[str, Any] = {
            "agent": {"username": state.username, "display_name": state.display_name, "status": state.status.value}
        }
        call = self.board.call(state.call_id)
        if call is not None and call.state is not CallState.ENDED:
            extra["call"] = {"call_id": call.id, "state": call.state.value, "card": call.card()}
            if call.state is CallState.CONNECTED and call.answered_at is not None:
                extra["call"]["connected_s"] = round(max(0.0, now() - call.answered_at), 1)
        return extra

    def send_wallboard(self, wire: Wire) -> None:
        self.send(wire)

    def closed(self) -> None:
        self.request.app[WALLBOARD].unsubscribe(self.send_wallboard)
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    async def handle(self, message: Any) -> None:
        assert self.session is not None
        session = self.session
        relay = self.request.app.get(CALL_RELAY)
        if relay is not None:  # several nodes: a call homed on another node is handled there, as this agent
            home = await relay.home_for(session, message)
            if home is not None:
                await relay.forward(home, session, self.raw, self.send)
                return
        await self.handle_here(message)

    async def handle_here(self, message: Any) -> None:
        assert self.session is not None
        session = self.session
        match message:
            case p.SetStatus():
                state = self.board.set_agent_status(session, AgentStatus(message.status))
                self.send(p.AgentStatusOut(id=message.id, status=state.status.value))
            case p.Accept():
                call = self.board.accept(session, message.call_id)
                self.metrics.calls_answered.inc()
                self.send(p.CallAcceptedOut(id=message.id, call_id=call.id, card=call.card()))
            case p.Decline():
                self.board.decline(session, message.call_id)
                self.send(p.Ack(id=message.id))
            case p.WrapUp():
                username = self.board.agent_state(session).username
                await self.request.app[RECORDER].wrap_up(message.call_id, username, message.disposition, message.notes)
                self.board.finish_wrap_up(username, message.call_id)
                self.send(p.Ack(id=message.id))
            case p.WrapUpExtend():
                granted = self.board.extend_wrap_up(session, message.call_id)
                self.send(p.AgentStatusOut(id=message.id, status=AgentStatus.WRAP_UP.value, call_id=message.call_id,
                                           wrap_up_s=granted, reason="wrap_up_extended"))
            case p.SdpOffer():
                answer = await self.board.agent_offer(session, message.call_id, message.sdp)
                self.send(p.SdpAnswer(id=message.id, call_id=message.call_id, sdp=answer))
            case p.IceCandidate():
                call = self.board.agent_media_call(session, message.call_id)
                if call.state is CallState.ENDED:
                    raise InvalidState("the call has ended", code="call_ended")
                state = self.board.agent_state(session)
                await self.board.add_candidate(call, state.username, message.candidate, message.sdp_mid,
                                               message.sdp_mline_index)
                if message.id:
                    self.send(p.Ack(id=message.id))
            case p.Hangup():
                await self.board.agent_hangup(session, message.call_id)
                self.send(p.Ack(id=message.id))
            case p.Hold():
                self.board.hold(session, message.call_id, held=message.type == "call.hold")
                self.send(p.Ack(id=message.id))
            case p.Transfer():
                await self.board.transfer(session, message.call_id, to_agent=message.to_agent,
                                          to_queue=message.to_queue, mode=message.mode)
                self.send(p.Ack(id=message.id))
            case p.TransferStep():
                if message.type == "transfer.complete":
                    await self.board.complete_transfer(session, message.call_id)
                else:
                    await self.board.cancel_transfer(session, message.call_id)
                self.send(p.Ack(id=message.id))
            case p.Supervise():
                call = self.board.supervise(session, message.call_id, SuperviseMode(message.mode))
                self.send(p.SuperviseStarted(id=message.id, call_id=call.id, mode=message.mode, card=call.card()))
            case p.PushContent():
                content = message.model_dump(include={"kind", "title", "url", "text"}, exclude_none=True)
                content["attachment"] = await self.attachment(message.call_id, message.attachment_id)
                item = self.board.push_content(session, message.call_id, content)
                self.send(p.ContentSent(id=message.id, call_id=message.call_id, content=item))
            case p.ChatSend():
                self.board.chat(session, message.call_id, message.text,
                                await self.attachment(message.call_id, message.attachment_id))
                self.send(p.Ack(id=message.id))
            case p.WallboardSubscribe():
                if message.type == "wallboard.unsubscribe":
                    self.request.app[WALLBOARD].unsubscribe(self.send_wallboard)
                    self.send(p.Ack(id=message.id))
                    return
                if session.principal.role not in SUPERVISOR_ROLES:
                    raise Forbidden("the wallboard is for supervisors", code="not_supervisor")
                data = self.request.app[WALLBOARD].subscribe(self.send_wallboard)
                self.send(p.WallboardOut(id=message.id, **data))
            case p.RecordingControl():
                self.board.recording(session, message.call_id, message.type.removeprefix("recording."))
                self.send(p.Ack(id=message.id))
            case p.SuperviseStop():
                await self.board.stop_supervising(session, message.call_id)
                self.send(p.Ack(id=message.id))
            case _:
                raise p.ProtocolError(f"{message.type} is not an agent message", code="unknown_type")


class RelayedAgent(AgentConnection):
    """An agent's message forwarded by its node to the home of the call (signaling/cluster_calls.py): handled here
    as any agent message, by the agent's stand-in session; what it sends is collected and sent back."""

    def __init__(self, app: web.Application, session: Session) -> None:  # no socket: nothing of Connection's
        self.request = _AppOnly(app)  # type: ignore[assignment]
        self.board = app[SWITCHBOARD]
        self.settings = self.board.settings
        self.metrics = app[METRICS]
        self.session = session
        self.sent: list[str] = []

    def send(self, message: Any) -> None:
        self.sent.append(message.text if isinstance(message, Wire) else Wire.of(message).text)


class _AppOnly:
    def __init__(self, app: web.Application) -> None:
        self.app = app


def relayed_executor(app: web.Application) -> Callable[[Session, str], Awaitable[list[str]]]:
    """Runs a forwarded agent message at this node (the call's home) as the agent's stand-in session."""
    async def execute(session: Session, raw: str) -> list[str]:
        connection = RelayedAgent(app, session)
        try:
            message = p.parse(p.agent_adapter, raw, connection.settings.max_message_bytes)
            await connection.handle_here(message)
        except GatewayError as exc:
            connection.error(exc, p.request_id(raw))
        return connection.sent

    return execute


async def agent_ws(request: web.Request) -> web.StreamResponse:
    # Cross-site WebSocket hijacking: a browser always sends Origin; refuse foreign ones before the upgrade.
    if not origin_allowed(request):
        raise web.HTTPForbidden(  # the same {code, reason} body as every REST error
            text=json.dumps({"code": "origin_not_allowed",
                             "reason": f"origin {request.headers.get('Origin')!r} is not allowed"}),
            content_type="application/json")
    return await AgentConnection(request).run()
