"""What the caller and agent WebSockets share: hello/auth, validation, ordered sending, errors, resume."""

from __future__ import annotations

import asyncio
import json
import contextlib
import inspect
import time
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, TypeAdapter

from gateway.errors import GatewayError, Unauthorized
from gateway.sessions import Numbered, ResumeFailed, Session
from gateway.turn import ice_servers_for
from gateway.switchboard import Switchboard

from . import protocol as p
from .keys import ATTACHMENTS, LIVE_SOCKETS, METRICS, SWITCHBOARD, TURNSTILE
from .outbox import Outbox, Wire
from .wire_events import event_message as event_message  # kept importable from here
from .wire_events import event_wire

log = structlog.get_logger("callin.ws")

CLOSE_UNAUTHORIZED = 4401
CLOSE_PROTOCOL = 4400
CLOSE_TIMEOUT = 4408
CLOSE_REPLACED = 4409
CLOSE_GOING_AWAY = 1001  # the gateway is shutting down
CLOSE_WAIT_S = 2.0  # how long a close waits for the peer's close frame (a dead peer never sends one)
OUTBOX_LIMIT = 256


async def _resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Connection:
    """One WebSocket. Subclasses authenticate the hello and handle the role's messages."""

    role = "?"
    adapter: TypeAdapter[Any]

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.board: Switchboard = request.app[SWITCHBOARD]
        self.settings = self.board.settings
        self.metrics = request.app[METRICS]
        self.turnstile = request.app[TURNSTILE]  # costly set-up steps: a few per turn of the event loop
        self.ws = web.WebSocketResponse(heartbeat=self.settings.ws_heartbeat_s, timeout=CLOSE_WAIT_S,
                                        max_msg_size=4 * self.settings.max_message_bytes)
        self.session: Session | None = None
        self._outbox = Outbox(OUTBOX_LIMIT)
        self._overflowed = False
        self._writer_task: asyncio.Task[None] | None = None
        self._said_bye = False
        self._header_principal: Any = None
        self.raw: str = ""  # the text of the message being handled (what a cluster forwards to another node)

    # -- sending
    def send(self, message: BaseModel | Wire) -> None:
        """Queue a message (a Wire is already serialised: a broadcast serialises once for every socket)."""
        if self._overflowed:
            return
        wire = message if isinstance(message, Wire) else Wire.of(message)
        if not self._outbox.put(wire.text, wire.slot):
            log.warning("ws.outbox_full", role=self.role)
            self._overflowed = True
            self._outbox.put_close(CLOSE_PROTOCOL, "client too slow")

    def deliver(self, item: Numbered) -> None:
        """An event numbered in its session: serialised without its number, then the number spliced in."""
        wire = event_wire(item.event)
        self.send(Wire(wire.with_seq(item.seq), wire.slot))

    def error(self, exc: GatewayError, request_id: str | None) -> None:
        self.metrics.protocol_errors.labels(role=self.role, code=exc.code).inc()
        self.send(p.ErrorOut(id=request_id, code=exc.code, reason=exc.reason, retryable=exc.retryable,
                             detail=getattr(exc, "detail", None)))

    def shutdown(self, reason: str, retry_after_s: float, resume: bool | None = None) -> asyncio.Task[None] | None:
        """The gateway is stopping: say so, then close with 1001; returns the writer, done once closed."""
        writer = self._writer_task
        if writer is None or writer.done():
            return None
        resume = self.kept_after_shutdown() if resume is None else resume  # drain: handed to another node
        self.send(p.ShutdownOut(reason=reason, retry_after_s=retry_after_s, resume=resume))
        self._outbox.put_close(CLOSE_GOING_AWAY, "shutdown")
        return writer

    async def _writer(self) -> None:
        """Sends queued messages in order; a (code, reason) item closes the socket after what came before it."""
        while True:
            item = await self._outbox.get()
            if isinstance(item, tuple):
                if not self.ws.closed:
                    await self.ws.close(code=item[0], message=item[1].encode()[:120])
                return
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    # -- hooks for subclasses
    def authenticate_header(self, token: str) -> Any:
        raise NotImplementedError

    def authenticate(self, token: str) -> Any:
        raise NotImplementedError

    async def fallback_principal(self) -> Any:
        """Who the client is when the hello carries no token and no Authorization header was sent (None: nobody)."""
        return None

    def open_session(self, principal: Any) -> Session:
        raise NotImplementedError

    def same_principal(self, principal: Any, other: Any) -> bool:
        raise NotImplementedError

    def ice_transport_policy(self) -> str:
        return "all"

    async def resume_unknown(self, token: str) -> None:
        """A resume token this node does not know: raise a retryable error if it may know it soon."""

    def kept_after_shutdown(self) -> bool:
        """Whether this socket's session outlives the stop (its client should resume, not start over)."""
        return False

    def welcome_extra(self, session: Session, resumed: bool) -> dict[str, Any]:
        return {}

    def closed(self) -> None:
        """The socket is gone (subclasses drop their subscriptions)."""

    def replaced(self) -> None:
        """A newer socket took this session over (a resume elsewhere, or the agent signed in again)."""
        self.session = None  # this socket no longer speaks for the session
        self.error(GatewayError("this session continues on a newer connection", code="session_replaced"), None)
        self._outbox.put_close(CLOSE_REPLACED, "replaced")

    async def attachment(self, call_id: str | None, attachment_id: str | None) -> dict[str, Any] | None:
        """The public description of a file uploaded to this call (its id alone proves nothing). No call named: the
        engine refuses the message for that."""
        if attachment_id is None or call_id is None:
            return None
        attachment = await self.request.app[ATTACHMENTS].get(call_id, attachment_id)
        return attachment.public()

    async def handle(self, message: Any) -> None:
        raise NotImplementedError

    # -- main loop
    async def run(self) -> web.StreamResponse:
        header = self.request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            try:
                if scheme.lower() != "bearer" or not token:
                    raise Unauthorized("use 'Authorization: Bearer <token>'", code="invalid_token")
                self._header_principal = await _resolved(self.authenticate_header(token))
            except GatewayError as exc:
                raise web.HTTPUnauthorized(  # the same {code, reason} body as every REST error
                    text=json.dumps({"code": exc.code, "reason": exc.reason}), content_type="application/json"
                ) from None
        await self.turnstile.turn()
        await self.ws.prepare(self.request)
        self._writer_task = writer = asyncio.ensure_future(self._writer())
        gauge = self.metrics.ws_connections.labels(role=self.role)
        gauge.inc()
        live = self.request.app[LIVE_SOCKETS]
        live.add(self)
        try:
            if await self._hello():
                await self._loop()
        finally:
            live.discard(self)
            gauge.dec()
            self.closed()
            self._finish_session()
            if not writer.done():
                self._outbox.put_close(1000, "")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=2)
            writer.cancel()
            if not self.ws.closed:
                await self.ws.close()
        return self.ws

    async def _receive_text(self, timeout: float | None) -> str | None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == WSMsgType.TEXT:
            return msg.data
        if msg.type == WSMsgType.BINARY:
            self.error(p.ProtocolError("binary frames are not part of the protocol", code="bad_json"), None)
            return ""
        if msg.type == WSMsgType.ERROR:
            # e.g. a frame over max_msg_size: aiohttp closes the socket with 1009
            log.info("ws.error", role=self.role, error=str(self.ws.exception()))
        return None

    async def _hello(self) -> bool:
        try:
            raw = await self._receive_text(self.settings.hello_timeout_s)
        except asyncio.TimeoutError:
            self.error(GatewayError("no hello within the time limit", code="hello_timeout"), None)
            await self._close(CLOSE_TIMEOUT, "hello timeout")
            return False
        if raw is None:
            return False
        await self.turnstile.turn()
        try:
            message = p.parse(self.adapter, raw, self.settings.max_message_bytes)
            if not isinstance(message, p.Hello):
                raise Unauthorized("the first message must be hello", code="not_authenticated")
            if message.protocol != p.PROTOCOL_VERSION:
                raise p.ProtocolError(f"this gateway speaks protocol {p.PROTOCOL_VERSION}, not {message.protocol}",
                                      code="unsupported_protocol")
            if message.token:
                principal = await _resolved(self.authenticate(message.token))
            elif self._header_principal is not None:
                principal = self._header_principal
            else:
                principal = await self.fallback_principal()
                if principal is None:
                    raise Unauthorized("hello needs a token", code="invalid_token")
            resumed = False
            if message.resume_token:
                try:
                    session = self.board.resume_session(
                        message.resume_token, self.role, lambda other: self.same_principal(principal, other),
                        message.last_seq)
                except ResumeFailed as exc:
                    if exc.why == "unknown":
                        await self.resume_unknown(message.resume_token)  # raises if it is only not here *yet*
                    raise
                resumed = True
            else:
                if message.last_seq is not None:
                    raise p.ProtocolError("last_seq goes with resume_token", code="invalid_message")
                session = self.open_session(principal)
        except GatewayError as exc:
            self.error(exc, p.request_id(raw))
            await self._close(CLOSE_UNAUTHORIZED if exc.status in (401, 403) else CLOSE_PROTOCOL, exc.code)
            return False
        except Exception:  # a bug must still answer with an error, not a bare close
            log.exception("ws.internal_error", role=self.role, during="hello")
            self.error(GatewayError("internal error"), p.request_id(raw))
            await self._close(CLOSE_PROTOCOL, "internal_error")
            return False
        self.session = session
        replay = self.board.attach(session, self.deliver, closer=self.replaced, last_seq=message.last_seq)
        self._outbox.limit = OUTBOX_LIMIT + len(replay.events)  # a full replay is not a slow client
        self.send(
            p.Welcome(
                id=message.id,
                session_id=session.id,
                resume_token=session.resume_token,
                resumed=resumed,
                resume_grace_s=self.settings.resume_grace_s,
                ice_servers=[p.IceServerOut(**s.model_dump()) for s in ice_servers_for(self.settings, session.id,
                                                                                          time.time())],
                ice_transport_policy=self.ice_transport_policy(),
                max_message_bytes=self.settings.max_message_bytes,
                limits=p.limits_of(self.settings, OUTBOX_LIMIT),
                replayed=len(replay.events),
                replay_complete=replay.complete,
                **self.welcome_extra(session, resumed),
            )
        )
        for item in replay.events:
            self.deliver(item)
        log.info("ws.hello", role=self.role, session=session.id, resumed=resumed, replayed=len(replay.events),
                 replay_complete=replay.complete)
        return True

    async def _loop(self) -> None:
        while not self.ws.closed and self.session is not None:
            raw = await self._receive_text(None)
            if raw is None:
                return
            if raw == "":
                continue
            if self.session is None:  # replaced while this message was on its way
                return
            try:
                message = p.parse(self.adapter, raw, self.settings.max_message_bytes)
                if isinstance(message, p.Hello):
                    raise GatewayError("already said hello", code="invalid_state")
                if isinstance(message, p.Ping):
                    self.send(p.Pong(id=message.id))
                elif isinstance(message, p.Bye):
                    self._said_bye = True
                    self.send(p.Ack(id=message.id))
                    await self._close(1000, "bye")
                    return
                else:
                    self.raw = raw
                    await self.handle(message)
            except GatewayError as exc:
                self.error(exc, p.request_id(raw))
            except Exception:
                log.exception("ws.internal_error", role=self.role)
                self.error(GatewayError("internal error"), p.request_id(raw))

    async def _close(self, code: int, reason: str) -> None:
        """Close after everything queued so far has been sent."""
        self._outbox.put_close(code, reason)
        if self._writer_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer_task), timeout=2)

    def _finish_session(self) -> None:
        session = self.session
        if session is None:
            return
        if self._said_bye:
            self.board.release_session(session)
        else:
            self.board.detach(session, self.deliver)
