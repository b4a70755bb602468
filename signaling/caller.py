"""The caller WebSocket (/ws/caller): hello with the integrator-signed token, call.start, SDP, hang-up."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from gateway.calls import Call
from gateway.errors import GatewayError, InvalidState, Unavailable
from gateway.models import CallerIdentity, CallState, EndReason
from gateway.sessions import Session, token_hash
from gateway.store.records import RecordsUnavailable

from . import protocol as p
from .clientaddr import client_address, networks
from .cluster_calls import CALL_RELAY
from .cors import origin_allowed, refuse_upgrade
from .keys import CALLER_TOKENS, RECORDER
from .drain import DRAIN, check_accepting
from .ws import Connection

log = structlog.get_logger("callin.caller")


class ResumePending(Unavailable):
    """The session's call is being taken over from a node that stopped or crashed; retry in `retry_after_s`."""

    code = "resume_pending"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"your place in line is being restored after a restart; reconnect in {retry_after_s:.0f} s "
                         "with the same resume token")
        self.retry_after_s = round(retry_after_s, 1)

    @property
    def detail(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}


class CallerConnection(Connection):
    role = "caller"
    adapter = p.caller_adapter

    def __init__(self, request: web.Request) -> None:
        super().__init__(request)
        self._queuing: set[asyncio.Task[None]] = set()  # call.start replies waiting for the call's record

    async def run(self) -> web.StreamResponse:
        try:
            return await super().run()
        finally:
            # A call.queued still waiting for its record: the wait ends by itself (committed, or the call ended at
            # durable_timeout_s); the caller gets it on resume if the socket went away meanwhile.
            if self._queuing:
                await asyncio.gather(*self._queuing, return_exceptions=True)

    def authenticate(self, token: str) -> CallerIdentity:
        return self.request.app[CALLER_TOKENS].verify(token)

    authenticate_header = authenticate

    def open_session(self, principal: CallerIdentity) -> Session:
        check_accepting(self.request.app)  # a draining node takes no new caller (signaling/drain.py)
        trusted = networks(self.settings.trusted_proxies)
        return self.board.open_caller(principal, address=client_address(self.request, trusted))

    def same_principal(self, principal: CallerIdentity, other: Any) -> bool:
        return isinstance(other, CallerIdentity) and other.subject == principal.subject and other.issuer == principal.issuer

    async def resume_unknown(self, token: str) -> None:
        """The call of this token may be waiting on a node that stopped or crashed and has not been taken over yet
        (this node restarted a moment ago): the caller is asked to retry when it will have been. A draining node
        handed its waiting callers to the others: retry at once (the load balancer sends the socket elsewhere). Each
        look-up is a records query: one address gets a bounded number (rate_limited past it)."""
        drain = self.request.app.get(DRAIN)
        if drain is not None and drain.draining:
            raise ResumePending(1.0)
        self.board.guard.unknown_resume(client_address(self.request, networks(self.settings.trusted_proxies)))
        try:
            due = await self.request.app[RECORDER].awaiting_restore(token_hash(token))
        except Exception:  # the records cannot tell: the token stays unknown
            log.warning("caller.awaiting_restore_failed", exc_info=True)
            return
        if due is not None:
            raise ResumePending(due)

    def ice_transport_policy(self) -> str:
        return "relay" if self.settings.turn_relay_only_callers else "all"

    def kept_after_shutdown(self) -> bool:
        """A caller waiting in line keeps its place across the stop (its record stays open and is restored)."""
        call = self.board.call(self.session.call_id) if self.session is not None else None
        return call is not None and call.state is not CallState.ENDED and call.caller_resume is not None

    def welcome_extra(self, session: Session, resumed: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {"caller": session.principal.model_dump()}
        call = self.board.call(session.call_id)
        if resumed and call is not None and call.state is not CallState.ENDED:
            extra["call"] = {"call_id": call.id, "state": call.state.value, "call_type": call.call_type.value}
        return extra

    async def durable(self, call: Call) -> None:
        """The caller is told "queued" only once the call's record is committed; if it cannot be, the call ends."""
        try:
            await self.request.app[RECORDER].durable(call.id)
        except RecordsUnavailable:
            await self.board.end_call(call, EndReason.RECORDS_UNAVAILABLE, "system")
            raise

    async def _queued(self, request_id: str, call: Call) -> None:
        try:
            await self.durable(call)
            relay = self.request.app.get(CALL_RELAY)
            if relay is not None:  # several nodes: its place among every node's callers
                await relay.placed(call)
        except GatewayError as exc:
            self.error(exc, request_id)
            return
        except Exception:  # a bug must still answer, not leave the caller waiting
            log.exception("caller.queued_failed", call_id=call.id)
            self.error(GatewayError("internal error"), request_id)
            return
        _, position, length, estimate = self.board.position_of(call.id) or (call, 0, 0, None)
        self.send(p.CallQueued(id=request_id, call_id=call.id, position=position, queue_length=length,
                               estimated_wait_s=estimate, queue=call.queue))

    async def handle(self, message: Any) -> None:
        assert self.session is not None
        session = self.session
        match message:
            case p.StartCall():
                await self.turnstile.turn()
                call = self.board.start_call(session, message.call_type, message.location, message.context)
                self.metrics.calls_started.labels(call_type=call.call_type.value).inc()
                # call.queued is a promise, sent once the call's record is committed. The messages behind call.start
                # (its sdp.offer follows at once) are handled meanwhile: the media is set up while the record is
                # written, not after.
                task = asyncio.ensure_future(self._queued(message.id, call))
                self._queuing.add(task)
                task.add_done_callback(self._queuing.discard)
            case p.CallbackRequest():
                call = await self.board.request_callback(session, message.call_id, message.phone)
                await self.request.app[RECORDER].durable(call.id)  # a promise: confirmed once it is on disk
                place = self.board.position_of(call.id)
                position = place[1] if place is not None else None
                self.send(p.CallbackAcceptedOut(id=message.id, call_id=call.id, position=position))
            case p.LeaveMessage():
                await self.board.leave_message(session, message.call_id, message.text)
                self.send(p.Ack(id=message.id))
            case p.Rejoin():
                call = self.board.rejoin(session, message.call_id)
                agent = self.board.agent(call.agent)
                self.send(p.CallRejoinedOut(id=message.id, call_id=call.id, state=call.state.value,
                                            agent_name=agent.display_name if agent else None))
            case p.SdpOffer():
                answer = await self.board.caller_offer(session, message.call_id, message.sdp)
                self.send(p.SdpAnswer(id=message.id, call_id=session.call_id or message.call_id or "", sdp=answer))
            case p.IceCandidate():
                call = self.board.caller_call(session, message.call_id)
                if call.state is CallState.ENDED:
                    raise InvalidState("the call has ended", code="call_ended")
                await self.board.add_candidate(call, "caller", message.candidate, message.sdp_mid, message.sdp_mline_index)
                if message.id:
                    self.send(p.Ack(id=message.id))
            case p.Hangup():
                await self.board.caller_hangup(session, message.call_id)
                self.send(p.Ack(id=message.id))
            case p.ChatSend():
                call = self.board.caller_call(session, message.call_id)
                attachment = await self.attachment(call.id, message.attachment_id)
                self.board.chat(session, call.id, message.text, attachment)
                self.send(p.Ack(id=message.id))
            case p.MediaSource():
                self.board.media_source(session, message.call_id, message.source, message.reason)
                self.send(p.Ack(id=message.id))
            case p.CallLocationIn():
                self.board.caller_location(session, message.call_id, message.location)
                self.send(p.Ack(id=message.id))
            case p.RecordingConsent():
                self.board.recording_consent(session, message.call_id, message.accept)
                self.send(p.Ack(id=message.id))
            case p.ContentStatusIn():
                self.board.content_status(session, message.call_id, message.content_id, message.status)
                self.send(p.Ack(id=message.id))
            case _:
                raise p.ProtocolError(f"{message.type} is not a caller message", code="unknown_type")


async def caller_ws(request: web.Request) -> web.StreamResponse:
    # A browser always sends Origin: only the gateway's own pages and the integrators' sites (embed_origins) may
    # open a caller socket. Clients without Origin (native apps, servers) are not affected.
    if not origin_allowed(request):
        raise refuse_upgrade(request)
    return await CallerConnection(request).run()
