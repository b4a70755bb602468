"""CallinCaller: a Callin call from Python (a kiosk, a video teller, an ATM), with resume and media recovery.

The wire protocol is docs/protocol.md; this module is its caller side, as the browser client
web/caller/callin-client.js is. Public API and events: docs/sdk-python.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from .errors import CallinError
from .media import Blackhole, MediaSink, MediaSource, camera, media_file
from .messages import (CallAnswered, CallBarge, CallEnded, CallHeld, CallInterrupted, CallQueued, CallTransferring, ChatMessage, ContentPushed,
                       ErrorMessage, MediaState, MediaVideo, Participant, QueueClosed, QueuePosition, SdpAnswer,
                       ServerMessage, Shutdown, CallRinging, Caption, TranscriptNotice, Welcome)
from .signaling import Signaling

log = logging.getLogger("callin_sdk")

PROTOCOL_VERSION = 1
CALL_TYPES = ("voice", "video", "screen")
CONTENT_STATUSES = ("seen", "opened", "dismissed")
MAX_CHAT_CHARS = 2000
# hello errors after which resuming is pointless (docs/protocol.md, "Reconnect and resume")
FINAL_HELLO_ERRORS = {"invalid_token", "resume_failed", "not_authenticated", "unsupported_protocol",
                      "invalid_last_seq", "session_revoked"}
CLOSE_UNAUTHORIZED, CLOSE_REPLACED, CLOSE_GOING_AWAY = 4401, 4409, 1001
ACTIVE = ("starting", "queued", "connected")
RESTART_RESUME_S = 90.0  # how long a caller kept across a gateway restart keeps trying to resume

TokenSource = str | Callable[[], "str | Awaitable[str]"]
Handler = Callable[["CallEvent"], "Awaitable[None] | None"]


@dataclass(frozen=True)
class CallEvent:
    """Something that happened: `name` (see docs/sdk-python.md for each name's `data` keys), `data`, and `index`
    (its place in this caller's history, for `wait_for(since=...)`)."""

    name: str
    data: dict[str, Any]
    index: int
    at: float = field(default_factory=time.time)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


@dataclass
class _CallPlan:
    """What start_call was asked for, kept to place the same call again after a media failure."""

    call_type: str
    source: MediaSource | None
    queue: str | None
    location: dict[str, Any] | None
    context: dict[str, Any]


class CallinCaller:
    """One caller session with a Callin gateway, and its calls one after the other.

    `token` is a caller JWT minted by your backend, or a function (plain or async) returning one: it is called
    again when the token has expired (a resume after a long outage needs a valid token).
    """

    def __init__(self, gateway_url: str, token: TokenSource, *, sink: MediaSink | None = None,
                 host_addresses: list[str] | Callable[[], list[str] | None] | None = None, resume: bool = True, redial_on_media_failure: bool = True,
                 max_redials: int = 3, ping_interval_s: float = 15.0, ping_timeout_s: float = 8.0,
                 request_timeout_s: float = 15.0, video_codec: str = "VP8", history: int = 1000,
                 media_silence_s: float = 1.5) -> None:
        if not gateway_url.startswith(("http://", "https://", "ws://", "wss://")):
            raise CallinError("invalid_argument", "gateway_url must start with http://, https://, ws:// or wss://")
        base = gateway_url.rstrip("/")
        self.gateway_url = base.replace("ws", "http", 1) if base.startswith("ws") else base
        self._socket_url = self.gateway_url.replace("http", "ws", 1) + "/ws/caller"
        self._token_source = token
        self._token: str | None = token if isinstance(token, str) else None
        self.sink: MediaSink = sink if sink is not None else Blackhole()
        self.host_addresses = host_addresses
        self.resume = resume
        self.redial_on_media_failure = redial_on_media_failure
        self.max_redials = max_redials
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.request_timeout_s = request_timeout_s
        self.video_codec = video_codec
        # Nothing received on the peer connection this long (RTP, RTCP, ICE checks: the gateway's RTCP alone comes
        # about every second): its network changed, set the media up again in the same call.
        self.media_silence_s = media_silence_s

        self.state = "idle"
        self.call_id: str | None = None
        self.call_type: str | None = None
        self.queue: dict[str, Any] | None = None
        self.agent_name: str | None = None
        self.identity: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.welcome: Welcome | None = None
        self.last_end: dict[str, Any] | None = None
        self.last_seq = 0  # the seq of the last event processed: hello.last_seq on resume
        self.reconnecting = False

        self._signal: Signaling | None = None
        self._relay = MediaRelay()
        self._pc: RTCPeerConnection | None = None
        self._pc_closing = False
        self._plan: _CallPlan | None = None
        self._owned_source: MediaSource | None = None  # opened by the SDK from a path: stopped by it
        self._redials = 0
        self._recovering = False
        self._recovering_call: str | None = None
        self._reoffering = False
        self._reoffer_again = False
        self._recoveries = 0  # media recoveries in the current call
        self._renewing: asyncio.Task[None] | None = None  # media set up again from scratch (restart, rejoin)
        self._early: list[ServerMessage] = []
        self._handlers: dict[str, list[Handler]] = {}
        self._history: deque[CallEvent] = deque(maxlen=history)
        self._count = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ping_task: asyncio.Task[None] | None = None
        self._closing = False
        self._shutdown: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------------ events
    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Call `handler(event)` for every event `name` ("*" for all). Usable as a decorator: `@caller.on("chat")`.
        A handler may be a coroutine function (run as a task); an exception in it is logged, never raised here."""
        def register(fn: Handler) -> Handler:
            self._handlers.setdefault(name, []).append(fn)
            return fn
        return register(handler) if handler is not None else register

    def off(self, name: str, handler: Handler) -> None:
        with contextlib.suppress(ValueError, KeyError):
            self._handlers[name].remove(handler)

    def mark(self) -> int:
        """The index the next event will have: pass it as `wait_for(since=...)` to miss nothing in between."""
        return self._count

    @property
    def events(self) -> list[CallEvent]:
        """The latest events (up to `history`), oldest first."""
        return list(self._history)

    async def wait_for(self, name: str, predicate: Callable[[CallEvent], bool] | None = None, *,
                       timeout: float = 30.0, since: int | None = None) -> CallEvent:
        """The first event `name` (matching `predicate`) from index `since` on (default: from now)."""
        start = self._count if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            for event in list(self._history):
                if event.index >= start and event.name == name and (predicate is None or predicate(event)):
                    return event
            start = max(start, self._count - len(self._history))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallinError("timeout", f"no {name!r} event within {timeout:g} s", retryable=True)
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _emit(self, name: str, **data: Any) -> None:
        event = CallEvent(name, data, self._count)
        self._count += 1
        self._history.append(event)
        self._changed.set()
        for handler in [*self._handlers.get(name, ()), *self._handlers.get("*", ())]:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    self._spawn(self._guard(result, name))
            except Exception:
                log.exception("a handler of %r failed", name)

    @staticmethod
    async def _guard(awaitable: Awaitable[Any], name: str) -> None:
        try:
            await awaitable
        except Exception:
            log.exception("a handler of %r failed", name)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, state: str) -> None:
        if state != self.state:
            previous, self.state = self.state, state
            self._emit("state", state=state, previous=previous)

    def _fail(self, error: CallinError, fatal: bool = False) -> None:
        self._emit("error", error=error, code=error.code, reason=error.reason, fatal=fatal)

    # ------------------------------------------------------------------------------------------------ session
    async def __aenter__(self) -> CallinCaller:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self._pc

    async def _fresh_token(self) -> str:
        source = self._token_source
        if isinstance(source, str):
            token: Any = source
        else:
            try:
                token = source()
                if inspect.isawaitable(token):
                    token = await token
            except Exception as exc:
                raise CallinError("token_unavailable", f"could not get a caller token: {exc}", retryable=True) from None
        if not isinstance(token, str) or not token:
            raise CallinError("token_unavailable", "the token source returned no token")
        self._token = token
        return token

    async def connect(self) -> Welcome:
        """Open the caller socket and say hello (done by start_call if needed). Returns the welcome."""
        if self._signal is not None and self._signal.open and self.welcome is not None:
            return self.welcome
        self._closing = False
        quiet = self.state == "starting"
        if not quiet:
            self._set_state("connecting")
        try:
            token = self._token or await self._fresh_token()
            try:
                welcome = await self._hello(token, resume_token=None)
            except CallinError as exc:
                if exc.code != "token_expired" or isinstance(self._token_source, str):
                    raise
                welcome = await self._hello(await self._fresh_token(), resume_token=None)
        except CallinError:
            if not quiet:
                self._set_state("idle")
            raise
        if not quiet:
            self._set_state("ready")
        return welcome

    async def _hello(self, token: str, resume_token: str | None) -> Welcome:
        signal = Signaling(self._socket_url, on_event=self._on_event,
                           on_close=lambda code: self._on_socket_close(signal, code),
                           on_bad_message=lambda error: self._fail(error))
        await signal.connect()
        hello: dict[str, Any] = {"type": "hello", "token": token, "protocol": PROTOCOL_VERSION}
        if resume_token:
            hello["resume_token"] = resume_token
            hello["last_seq"] = self.last_seq
        try:
            welcome = await signal.request(hello, timeout=10)
        except CallinError:
            await signal.close()
            raise
        if not isinstance(welcome, Welcome):
            await signal.close()
            raise CallinError("bad_server_message", f"the gateway answered hello with {welcome.type}")
        if not resume_token:
            self.last_seq = 0  # a new session numbers its events from 1
        self._shutdown = None
        old, self._signal = self._signal, signal
        if old is not None and old is not signal:
            self._spawn(old.close())
        if not signal.open:  # it closed right after the welcome, before it was ours: handle that once we return
            asyncio.get_running_loop().call_soon(self._on_socket_close, signal, signal.close_code)
        self.welcome = welcome
        self.session_id = welcome.session_id
        self.identity = welcome.caller
        if self._ping_task is not None:
            self._ping_task.cancel()
        self._ping_task = self._spawn(self._keepalive(signal))
        return welcome

    async def _keepalive(self, signal: Signaling) -> None:
        """An application ping every ping_interval_s: a socket that went silent (no FIN, no RST: a network that
        vanished) is noticed within ping_interval_s + ping_timeout_s and dropped, which starts the resume."""
        while signal is self._signal and signal.open:
            await asyncio.sleep(self.ping_interval_s)
            if signal is not self._signal or not signal.open:
                return
            try:
                await signal.request({"type": "ping"}, timeout=self.ping_timeout_s)
            except CallinError as exc:
                if exc.code == "timeout" and signal is self._signal:
                    log.info("no pong within %s s: dropping the socket", self.ping_timeout_s)
                    signal.abort()
                return

    def _on_socket_close(self, signal: Signaling, code: int | None) -> None:
        if signal is not self._signal or self._closing:
            return
        if (self._shutdown or {}).get("resume") and self.resume and self.welcome is not None \
                and self.state == "queued":
            # The gateway stopped but keeps this caller's place in line: resume once it (or another node) is back.
            after = float(self._shutdown["retry_after_s"])  # type: ignore[index]
            self._shutdown = None
            self._spawn(self._reconnect(after_s=after, within_s=RESTART_RESUME_S))
            return
        if self._shutdown is not None or code == CLOSE_GOING_AWAY:
            # The gateway stopped: this session does not survive it, nothing to resume.
            self.welcome = None
            self._end_locally("shutdown")
            self._set_state("idle")
            return
        if code in (CLOSE_UNAUTHORIZED, CLOSE_REPLACED):
            why = "the gateway refused this session" if code == CLOSE_UNAUTHORIZED else \
                "this session continues on a newer connection"
            self._fail(CallinError("session_replaced" if code == CLOSE_REPLACED else "invalid_token", why), True)
            self.welcome = None
            self._end_locally("session_replaced" if code == CLOSE_REPLACED else "unauthorized")
            self._set_state("idle")
            return
        if self.resume and self.welcome is not None and self.state in (*ACTIVE, "ready", "ended"):
            self._spawn(self._reconnect())
        else:
            self.welcome = None
            self._end_locally("connection_lost")
            self._set_state("idle")

    async def _reconnect(self, after_s: float = 0.0, within_s: float = 0.0) -> None:
        """Get the session (and its call) back within resume_grace_s (or `within_s`, after a restart that keeps the
        call): back-off 0.25 s doubling to 3 s; `hello` with the resume token and the last seq processed, so the
        gateway replays exactly the events missed. `resume_pending` (the gateway restarted and takes the call over
        in a moment) is waited out."""
        if self.reconnecting or self.welcome is None:
            return
        self.reconnecting = True
        welcome = self.welcome
        deadline = time.monotonic() + max(5.0, welcome.resume_grace_s, within_s)
        if after_s > 0:
            await asyncio.sleep(after_s)
        delay, attempt = 0.25, 0
        failure = CallinError("connection_lost", "the connection to the gateway was lost", retryable=True)
        try:
            while not self._closing and time.monotonic() < deadline:
                attempt += 1
                self._emit("reconnecting", attempt=attempt)
                try:
                    try:
                        resumed = await self._hello(self._token or await self._fresh_token(), welcome.resume_token)
                    except CallinError as exc:
                        if exc.code != "token_expired" or isinstance(self._token_source, str):
                            raise
                        resumed = await self._hello(await self._fresh_token(), welcome.resume_token)
                except CallinError as exc:
                    if exc.code in FINAL_HELLO_ERRORS or exc.code == "token_expired":
                        failure = exc
                        break
                    if exc.code == "resume_pending":
                        wait = float((exc.detail or {}).get("retry_after_s") or 3.0)
                        deadline = max(deadline, time.monotonic() + wait + 10.0)
                        await asyncio.sleep(min(wait, 5.0))
                        continue
                    await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 3.0)
                    continue
                self.reconnecting = False
                await self._after_resume(resumed)
                if (resumed.session_id != welcome.session_id and self._plan is not None and self.call_id is not None
                        and resumed.call is not None and self.state in ACTIVE):
                    # Restored after the gateway restarted (a new session id): the media of the process that stopped
                    # is gone; set it up again with the one that has the call now (same call, same place). A rejoin
                    # (call.interrupted, replayed just now) may have started that already: it is awaited, not doubled.
                    await asyncio.wait([self._renew_media()])
                return
        finally:
            self.reconnecting = False
        if self._closing:
            return
        self.welcome = None
        ended = (failure.detail or {}).get("call") if failure.code == "resume_failed" else None
        if ended and ended.get("call_id") == self.call_id:
            # The gateway says how the call ended while we were away (e.g. the agent hung up).
            self._finish_call(str(ended.get("reason")), str(ended.get("by")), None)
        else:
            self._fail(failure if failure.code != "resume_failed" else
                       CallinError("connection_lost", "the session was lost while offline", detail=failure.detail),
                       fatal=True)
            self._end_locally("connection_lost")
        self._set_state("idle")

    async def _after_resume(self, resumed: Welcome) -> None:
        # Events after last_seq are replayed right after the welcome; a ping's pong comes after all of them (one
        # socket, in order), so once it is here every missed event has been processed.
        with contextlib.suppress(CallinError):
            await self._signal.request({"type": "ping"}, timeout=self.ping_timeout_s)  # type: ignore[union-attr]
        self._emit("reconnected", resumed=resumed.resumed, replayed=resumed.replayed,
                   complete=resumed.replay_complete)
        if self.call_id and self.state in ACTIVE and (resumed.call is None or resumed.call.call_id != self.call_id):
            self._end_locally("caller_disconnected")  # gone without a call.ended we could still get

    # ------------------------------------------------------------------------------------------------ incoming
    def _on_event(self, message: ServerMessage) -> None:
        if message.seq is not None:
            if message.seq <= self.last_seq:
                return  # already processed (a replay may overlap what arrived)
            self.last_seq = message.seq
        call_id = getattr(message, "call_id", None)
        if call_id is not None and self.call_id is None and self.state == "starting":
            self._early.append(message)  # about the new call, before call.queued named it
            return
        self._handle(message)

    def _handle(self, m: ServerMessage) -> None:
        mine = getattr(m, "call_id", None) == self.call_id and self.call_id is not None
        if isinstance(m, QueuePosition) and mine:
            self.queue = _queue_info(m)
            self._emit("position", call_id=m.call_id, **self.queue)
        elif isinstance(m, CallAnswered) and mine:
            transferred = self.state == "connected"
            self.agent_name = m.agent_name
            self._set_state("connected")
            self._emit("answered", call_id=m.call_id, agent_name=m.agent_name, transferred=transferred)
        elif isinstance(m, CallEnded) and mine:
            self._on_call_ended(m)
        elif isinstance(m, CallInterrupted) and mine:
            self._rejoin_front(m)
        elif isinstance(m, MediaState) and mine:
            self._emit("gateway_media", call_id=m.call_id, leg=m.leg, state=m.state)
            if m.leg == "caller" and m.state == "disconnected":
                # The gateway hears nothing from us: our network changed under the peer connection.
                self.network_changed("gateway_silence")
            if m.leg == "agent" and m.state == "connected":
                self._emit("connected", call_id=m.call_id, agent_name=self.agent_name)
        elif isinstance(m, MediaVideo) and mine:
            self._emit("video_paused", leg=m.leg, paused=m.state == "paused", reason=m.reason)
        elif isinstance(m, ChatMessage) and mine:
            self._emit("chat", call_id=m.call_id, message=m.message, text=m.message.get("text"),
                       sender=m.message.get("from"))
        elif isinstance(m, ContentPushed) and mine:
            self._emit("content", call_id=m.call_id, content=m.content)
        elif isinstance(m, CallHeld) and mine:
            self._emit("held", call_id=m.call_id, held=m.held)
        elif isinstance(m, CallTransferring) and mine:
            self._emit("transferring", call_id=m.call_id, mode=m.mode)
        elif isinstance(m, QueueClosed) and mine:
            self._emit("queue_closed", call_id=m.call_id, reason=m.reason, message=m.message)
        elif isinstance(m, CallRinging) and mine:
            self._emit("ringing", call_id=m.call_id, ringing=m.ringing, agent_name=m.agent_name)
        elif isinstance(m, CallBarge) and mine:
            self._emit("barge", call_id=m.call_id, active=m.active, name=m.name)
        elif isinstance(m, TranscriptNotice) and mine:
            self._emit("transcript", call_id=m.call_id, active=m.active, captions=m.captions)
        elif isinstance(m, Caption) and mine:
            self._emit("caption", call_id=m.call_id, speaker=m.speaker, utterance=m.utterance, text=m.text,
                       final=m.final)
        elif isinstance(m, Participant) and mine:
            self._emit("participant", state=m.type.split(".", 1)[1], role=m.role, name=m.name, cause=m.cause)
        elif isinstance(m, Shutdown):
            self._shutdown = {"reason": m.reason, "retry_after_s": m.retry_after_s, "resume": m.resume}
            self._emit("shutdown", **self._shutdown)
        elif isinstance(m, ErrorMessage):
            self._fail(m.error())

    def _rejoin_front(self, m: CallInterrupted) -> None:
        """The call was cut off (the gateway node that held its media died) and the gateway put this caller back at
        the front of the line in a new call: follow it there and set the media up again for it (the old peer
        connection went with that node), as the browser client does."""
        if self.state not in ACTIVE:
            return
        self.call_id = m.rejoined_call_id
        self.agent_name = None
        self.queue = None
        self._recoveries = 0
        self._set_state("queued")
        self._emit("interrupted", call_id=m.call_id, rejoined_call_id=m.rejoined_call_id, reason=m.reason)
        self._renew_media(force=True)

    def _renew_media(self, force: bool = False) -> asyncio.Task[None]:
        """Set the call's media up again from scratch (a new peer connection and its offer, the old one closed
        first: it belongs to a process that is gone); one at a time. `force`: even if one is under way (it may be
        offering for the call that was cut off)."""
        if force and self._renewing is not None and not self._renewing.done():
            self._renewing.cancel()
        if force or self._renewing is None or self._renewing.done():
            self._renewing = self._spawn(self._media_again())
        return self._renewing

    async def _media_again(self) -> None:
        call_id = self.call_id
        if self._plan is None or call_id is None or self.state not in ACTIVE:
            return
        await self._teardown_media()
        try:
            await self._negotiate(self._plan.source)
        except CallinError as exc:
            if call_id == self.call_id and self.state in ACTIVE:
                self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. no address to gather on: told, not raised into a task
            if call_id == self.call_id and self.state in ACTIVE:
                self._fail(CallinError("media_error", f"could not set the media up again: {exc}", retryable=True))

    def _on_call_ended(self, m: CallEnded) -> None:
        if m.call_id == self._recovering_call:
            return  # being placed again after media_failed (_redial): it tells how
        if m.reason == "media_failed" and self._may_redial():
            self._spawn(self._recover_media(m.call_id, "media_failed", ended=m))
            return
        self._finish_call(m.reason, m.by, m.duration_s)

    # ------------------------------------------------------------------------------------------------ calls
    async def start_call(self, *, video: MediaSource | MediaStreamTrack | str | None = None,
                         audio: MediaStreamTrack | None = None, call_type: str | None = None,
                         queue: str | None = None, location: dict[str, Any] | None = None,
                         context: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue a call and set up its media; returns the queue information (call_id, position, queue_length,
        estimated_wait_s, queue) once queued. "answered" and "connected" follow when an agent picks up.

        `video`: a MediaSource (its audio is used too), a MediaStreamTrack, a path ("/dev/videoN" opens a V4L2
        camera, anything else a file) or None (a voice call; the video section stays, empty). `audio`: a track for
        the microphone's place (default: the source's audio). `call_type`: voice, video or screen (default: video
        when there is video). `queue`: the queue the token is expected to name: the queue comes from the caller
        token (your backend signs it); a call queued elsewhere is hung up and `queue_mismatch` raised.
        `location` and `context`: as in docs/protocol.md (device-reported position, what the user was doing)."""
        if self.state in ACTIVE:
            raise CallinError("call_in_progress", "a call is already in progress")
        source = self._source(video, audio)
        kind = call_type or ("video" if source.video is not None else "voice")
        if kind not in CALL_TYPES:
            raise CallinError("invalid_argument", f"call_type must be one of {', '.join(CALL_TYPES)}, not {kind!r}")
        self._plan = _CallPlan(kind, source, queue, location, dict(context or {}))
        self._redials = 0
        self._recoveries = 0
        return await self._place(self._plan)

    def _source(self, video: Any, audio: MediaStreamTrack | None) -> MediaSource:
        if self._owned_source is not None:
            self._owned_source.stop()
            self._owned_source = None
        if isinstance(video, str):
            source = camera(video) if video.startswith("/dev/video") else media_file(video)
            self._owned_source = source
        elif isinstance(video, MediaSource):
            source = MediaSource(audio=video.audio, video=video.video, label=video.label)
        elif isinstance(video, MediaStreamTrack) or video is None:
            source = MediaSource(video=video)
        else:
            raise CallinError("invalid_argument", "video must be a MediaSource, a track, a path or None")
        if audio is not None:
            source.audio = audio
        return source

    async def _place(self, plan: _CallPlan) -> dict[str, Any]:
        self._set_state("starting")
        self.call_type = plan.call_type
        self.agent_name = None
        self.queue = None
        self.last_end = None
        try:
            await self.connect()
            body: dict[str, Any] = {"type": "call.start", "call_type": plan.call_type}
            if plan.location is not None:
                body["location"] = plan.location
            if plan.context:
                body["context"] = plan.context
            self._early = []
            queued = await self._request(body)
            assert isinstance(queued, CallQueued)
            self.call_id = queued.call_id
            self.queue = _queue_info(queued)
            if self.state == "starting":
                self._set_state("queued")
            self._emit("queued", call_id=queued.call_id, **self.queue)
            early, self._early = [m for m in self._early if getattr(m, "call_id", None) == queued.call_id], []
            for m in early:
                self._handle(m)
            if plan.queue is not None and queued.queue != plan.queue:
                await self.hangup()
                raise CallinError("queue_mismatch", f"the call was queued in {queued.queue!r}, not {plan.queue!r}: "
                                  "the queue comes from the caller token (its queue claim)")
            if self.state in ACTIVE:
                await self._negotiate(plan.source)
            return {"call_id": queued.call_id, **self.queue}
        except BaseException:
            # Hung up, refused or cancelled while being set up: nothing of the call stays behind.
            if self.call_id is not None and self.state in ACTIVE and self._signal is not None and self._signal.open:
                with contextlib.suppress(CallinError):
                    await self._request({"type": "call.hangup", "call_id": self.call_id}, timeout=5)
            await self._teardown_media()
            if self.state in ACTIVE:
                self.call_id = None
                self._set_state("ready" if self._signal is not None and self._signal.open else "idle")
            raise

    async def _negotiate(self, source: MediaSource | None) -> None:
        """A new peer connection for the call and its offer. A peer connection already there (a media recovery)
        stays until the new one is answered, then is closed: if the offer is refused, the gateway keeps the old leg."""
        servers = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                   for s in (self.welcome.ice_servers if self.welcome else [])]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))  # an empty list: no ICE servers at all
        previous, self._pc = self._pc, pc
        self._pc_closing = False
        # Each peer connection sends proxies of the source's tracks: aiortc stops a sender's track when its peer
        # connection closes, and the source must outlive it (a recovery or a redial sends it again).
        audio = self._relay.subscribe(source.audio, buffered=False) if source and source.audio else None
        video = self._relay.subscribe(source.video, buffered=False) if source and source.video else None
        # Audio and video both sendrecv (the agent's voice, and its camera if it turns one on); a third section,
        # receive only, carries a barging supervisor's voice. No renegotiation later: decide the m-lines now.
        pc.addTransceiver(audio if audio is not None else "audio", direction="sendrecv")
        video_tx = pc.addTransceiver(video if video is not None else "video", direction="sendrecv")
        _prefer(video_tx, self.video_codec)
        pc.addTransceiver("audio", direction="recvonly")

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            self._emit("media", state=state)
            if pc is not self._pc:
                return
            if state == "connected":
                self._spawn(self._watch_media(pc))
            if state == "failed" or (state == "closed" and not self._pc_closing):
                self._spawn(self._recover_media(self.call_id, "ice_failed" if state == "failed" else "closed"))

        try:
            addresses = self.host_addresses() if callable(self.host_addresses) else self.host_addresses
            if addresses is not None:
                from gateway.media.aiortc_internals import restrict_host_addresses

                restrict_host_addresses(pc, addresses)
            await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate into the offer
            answer = await self._offer(pc.localDescription.sdp)
            if pc is not self._pc or self.state not in ACTIVE:
                return
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except BaseException:
            if self._pc is pc:
                self._pc = previous  # the gateway still has the old leg (a refused offer changes nothing)
                with contextlib.suppress(Exception):
                    await pc.close()
            raise
        if previous is not None:
            with contextlib.suppress(Exception):
                await self.sink.detach()
            with contextlib.suppress(Exception):
                await previous.close()
        names = ["audio", "video", "audio:1"]
        tracks = {names[i]: t.receiver.track for i, t in enumerate(pc.getTransceivers())
                  if i < len(names) and t.receiver.track is not None}
        await self.sink.attach(tracks)

    async def _watch_media(self, pc: RTCPeerConnection) -> None:
        """While `pc` is the call's: nothing at all received for media_silence_s means its path is gone."""
        try:
            from gateway.media.aiortc_internals import LinkProbe

            probe = LinkProbe(pc)
        except Exception as exc:  # noqa: BLE001 - an aiortc this SDK cannot look into: no silence detection
            log.warning("no media silence detection: %s", exc)
            return
        interval = max(0.05, min(0.25, self.media_silence_s / 4))
        count, last = probe.received(), time.monotonic()
        while pc is self._pc and pc.connectionState == "connected" and not self._closing:
            await asyncio.sleep(interval)
            now, received = time.monotonic(), probe.received()
            if received != count:
                count, last = received, now
            elif now - last >= self.media_silence_s and self.state in ACTIVE:
                self.network_changed("media_silence")
                count, last = received, now  # once per silence; a recovery replaces pc anyway

    def network_changed(self, cause: str = "network_changed") -> None:
        """Set the call's media up again over the same session, with a new peer connection: call it when your
        platform says the network changed (the SDK also does by itself when the peer connection fails, when
        nothing arrives on it for media_silence_s, and when the gateway says it hears nothing from us)."""
        if self.call_id is not None and self.state in ACTIVE and self._pc is not None:
            self._spawn(self._recover_media(self.call_id, cause))

    async def _offer(self, sdp: str) -> SdpAnswer:
        """sdp.offer, sent again after a retryable refusal (no free media port, a media worker restarting)."""
        delay = 0.5
        for attempt in range(4):
            try:
                answer = await self._request({"type": "sdp.offer", "call_id": self.call_id, "sdp": sdp})
                assert isinstance(answer, SdpAnswer)
                return answer
            except CallinError as exc:
                if not exc.retryable or exc.code in ("disconnected", "timeout") or attempt == 3:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _may_redial(self) -> bool:
        return self.redial_on_media_failure and self._plan is not None and self._redials < self.max_redials \
            and not self._closing

    async def _recover_media(self, call_id: str | None, cause: str, ended: CallEnded | None = None) -> None:
        """The call's media failed: our peer connection failed, closed under us or went silent (a network change),
        or the gateway hears nothing from us. While the call lasts, set its media up again in the same call: a new
        peer connection and its offer, which replaces our leg at the gateway (docs/protocol.md, Media recovery);
        retried with back-off. Only if the gateway ended the call (media_failed) is it placed again, with
        redial_on_media_failure."""
        if ended is not None:
            await self._redial(call_id, cause, ended)
            return
        if call_id is None or call_id != self.call_id or self._recovering:
            return
        if self._reoffering:
            self._reoffer_again = True  # a newer change while a recovery runs: one more offer after it
            return
        if self.state == "queued" and cause in ("ice_failed", "closed"):
            # Still in line: the gateway may be stopping (it closes media before it says `shutdown`) and keep this
            # caller's place; then the resume sets media up again. Give its word a moment to arrive.
            await asyncio.sleep(2.0)
            if self._shutdown is not None or self.reconnecting or self._signal is None or not self._signal.open \
                    or call_id != self.call_id:
                return
        self._reoffering = True
        delay = 0.5
        try:
            while call_id == self.call_id and self.state in ACTIVE and not self._closing:
                self._reoffer_again = False
                if self.reconnecting or self._signal is None or not self._signal.open:
                    await asyncio.sleep(0.25)  # the socket is being resumed: offer once it is back
                    continue
                self._recoveries += 1
                started = time.monotonic()
                self._emit("media_recovering", call_id=call_id, cause=cause, attempt=self._recoveries)
                try:
                    await self._negotiate(self._plan.source if self._plan is not None else None)
                except CallinError as exc:
                    if exc.code in ("call_ended", "unknown_call", "not_accepted"):
                        return
                    log.info("media recovery offer failed (%s): retrying in %.1f s", exc.code, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 4.0)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. no address to gather on yet: try again shortly
                    log.info("media recovery failed (%s): retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 4.0)
                    continue
                if call_id == self.call_id:
                    self._emit("media_recovered", call_id=call_id, cause=cause,
                               offer_s=round(time.monotonic() - started, 3))
                if not self._reoffer_again:
                    return
                cause = "network_changed"
        finally:
            self._reoffering = False

    async def _redial(self, call_id: str | None, cause: str, ended: CallEnded) -> None:
        """The gateway ended the call with media_failed: place the same call again (redial_on_media_failure)."""
        if self._recovering or call_id is None or call_id != self.call_id:
            return
        self._recovering = True
        self._recovering_call = call_id
        try:
            if not self._may_redial():
                self._finish_call("media_failed", "system", None)
                return
            self._finish_call("media_failed", ended.by, ended.duration_s, redialing=True)
            self._redials += 1
            self._emit("redialing", previous_call_id=call_id, attempt=self._redials, cause=cause)
            plan = self._plan
            assert plan is not None
            delay = 0.5
            for attempt in range(5):
                try:
                    await self._place(plan)
                    return
                except CallinError as exc:
                    # e.g. no media worker yet (the one that died is being restarted): try again shortly
                    if not exc.retryable or attempt == 4 or self._closing:
                        self._fail(exc, fatal=True)
                        return
                    await asyncio.sleep(delay)
                    delay *= 2
        finally:
            self._recovering = False
            self._recovering_call = None

    async def _request(self, body: dict[str, Any], timeout: float | None = None) -> ServerMessage:
        if self._signal is None or not self._signal.open:
            raise CallinError("disconnected", "not connected to the gateway", retryable=True)
        return await self._signal.request(body, timeout=timeout or self.request_timeout_s)

    async def send_chat(self, text: str) -> None:
        """A chat line for everyone in the call (also while it waits); the `chat` event echoes it."""
        line = str(text).strip()
        if not line or len(line) > MAX_CHAT_CHARS:
            raise CallinError("invalid_argument", f"a chat line has 1 to {MAX_CHAT_CHARS} characters")
        if self.call_id is None:
            raise CallinError("invalid_state", "there is no call to chat in")
        await self._request({"type": "chat.send", "call_id": self.call_id, "text": line})

    async def send_location(self, location: dict[str, Any]) -> None:
        """The device's position for the current call, after start_call (call.location in docs/protocol.md): for a
        location the device gives later than the call must start. `location`: {lat, lon, accuracy_m, timestamp}.
        Once per call: the gateway refuses a second one (`location_already_set`), as it does one for a call that
        started with a location; `call_ended` once the call is over. A call placed again after a media failure
        starts with it."""
        if self.call_id is None or self.state not in ("queued", "connected"):
            raise CallinError("invalid_state", "there is no call to send the location with")
        fields = {key: location.get(key) for key in ("lat", "lon", "accuracy_m", "timestamp")}
        await self._request({"type": "call.location", "call_id": self.call_id, "location": fields})
        if self._plan is not None and self._plan.location is None:
            self._plan.location = fields

    async def report_content(self, content_id: str, status: str) -> None:
        """Tell the agent what became of pushed content (a `content` event): seen, opened or dismissed."""
        if status not in CONTENT_STATUSES:
            raise CallinError("invalid_argument", f"status must be one of {', '.join(CONTENT_STATUSES)}")
        if self.call_id is None:
            raise CallinError("invalid_state", "there is no call")
        await self._request({"type": "content.status", "call_id": self.call_id, "content_id": content_id[:32],
                             "status": status})

    async def hangup(self) -> None:
        """End the call (queued, ringing or connected). Does nothing without a call."""
        if self.call_id is None or self.state not in ACTIVE:
            return
        call_id = self.call_id
        try:
            await self._request({"type": "call.hangup", "call_id": call_id}, timeout=5)
        except CallinError as exc:
            if exc.code not in ("call_ended", "unknown_call", "disconnected", "timeout"):
                raise
        if self.call_id == call_id:  # the gateway's call.ended (caller_hangup) normally came first
            self._finish_call("caller_hangup", "caller", None)

    def _finish_call(self, reason: str, by: str, duration_s: float | None, redialing: bool = False) -> None:
        call_id = self.call_id
        if call_id is None:
            return
        self.call_id = None
        self.last_end = {"call_id": call_id, "reason": reason, "by": by, "duration_s": duration_s,
                         "redialing": redialing}
        self._spawn(self._teardown_media())
        self._set_state("ended")
        self._emit("ended", **self.last_end)

    def _end_locally(self, reason: str) -> None:
        if self.call_id is not None:
            self._finish_call(reason, "system", None)

    async def _teardown_media(self) -> None:
        pc, self._pc = self._pc, None
        if pc is not None:
            self._pc_closing = True
            with contextlib.suppress(Exception):
                await self.sink.detach()
            await pc.close()

    async def close(self) -> None:
        """Hang up if needed, say `bye` (the session ends for good: no resume) and close the socket."""
        if self.state in ACTIVE:
            with contextlib.suppress(CallinError):
                await self.hangup()
        self._closing = True
        self._plan = None
        signal, self._signal = self._signal, None
        if signal is not None and signal.open:
            with contextlib.suppress(CallinError):
                await signal.request({"type": "bye"}, timeout=3)
        if signal is not None:
            await signal.close()
        await self._teardown_media()
        if self._owned_source is not None:
            self._owned_source.stop()
            self._owned_source = None
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                with contextlib.suppress(BaseException):
                    await task
        self.welcome = None
        self._set_state("closed")


def _queue_info(m: CallQueued | QueuePosition) -> dict[str, Any]:
    return {"position": m.position, "queue_length": m.queue_length, "estimated_wait_s": m.estimated_wait_s,
            "queue": m.queue}


def _prefer(transceiver: Any, codec: str) -> None:
    """Put `codec` (e.g. "VP8") first in the video section, with its retransmission codec; the rest after."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in codecs if c.mimeType.lower() == f"video/{codec.lower()}"]
    if not wanted:
        raise CallinError("invalid_argument", f"this aiortc cannot send {codec}")
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    rest = [c for c in codecs if c not in wanted and c not in rtx]
    transceiver.setCodecPreferences(wanted + rtx + rest)
