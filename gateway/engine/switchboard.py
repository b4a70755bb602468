"""The Switchboard: the call engine's façade. Each command is validated, handed to the collaborator that owns it,
and followed by one settle step (offer waiting calls, tell newly queued callers of a closed queue, publish places
in line); timers and background steps settle the same way.

Collaborators (this package): presence (agents, wrap-up, reconnect notices), waiting (the line, closed queues,
callbacks, messages), dispatch (offering and ringing), calls (start, media legs, end), incall (hold, transfer,
consult), supervision, content (pushed content, chat), views (what signaling, REST and the wallboard read), timers.
Live state sits in gateway/store/live.py, media behind gateway/media/plane.py.

It knows nothing of HTTP or of the wire protocol: participants are Sessions that receive domain events.
Observers (metrics, records, webhooks) subscribe to its pyee events: call.queued, call.offered (call, username),
call.withdrawn (call, username, reason: declined / ring_timeout / agent_disconnected), call.answered, call.ended,
call.updated (a change worth recording: closed notice, callback request, rejoin, recording state),
call.callback_ready, recording.stopped (call, RecordingInfo | None: the call's recording file is final); and, for
a cluster router that speaks for this node's agents elsewhere, agent.detached / agent.resumed / agent.released
(session): an agent's console lost its socket, came back, or is gone for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from ..auth import AgentAccount
from ..callerguard import CallerGuard, subject_key
from ..calls import Call
from ..clock import Clock, SystemClock
from ..config import QueueConfig, Settings
from ..errors import InvalidState, Unavailable
from ..events import CallInterrupted
from ..media import MediaConfig, Relay
from ..media.local import LocalPlane
from ..media.plane import LegEvent, MediaPlane
from ..media.topology import SuperviseMode
from ..models import AgentStatus, CallContext, CallerIdentity, CallState, CallType, EndReason, Location, now
from ..positions import PositionNotices
from ..queues import Queue, QueueDirectory
from ..routing import AgentState, WaitEstimator
from ..sessions import Replay, ResumeFailed, Session, SessionRegistry
from ..store.recordings import LocalRecordingStorage
from ..store.live import LiveState, MemoryLiveState, SessionStore, TimerRegistry, WaitingLines
from .calls import CallLifecycle
from .content import Content
from .core import Core
from .dispatch import Dispatch
from .incall import ColleagueClaims, InCall
from .presence import Presence
from .recording import PreparePath, Recordings
from .supervision import Supervision
from .timers import Timers
from .transcripts import Transcripts
from .views import Place, Views
from .waiting import WaitingLine

SessionHook = Callable[[Session], None]
# Builds the session store: (settings, on_expire, on_detached, on_resumed) -> a SessionStore.
SessionStoreFactory = Callable[[Settings, SessionHook, SessionHook, SessionHook], SessionStore]


def memory_sessions(settings: Settings, on_expire: SessionHook, on_detached: SessionHook,
                    on_resumed: SessionHook) -> SessionStore:
    """Sessions and resume tokens in this process's memory (one node)."""
    return SessionRegistry(settings.resume_grace_s, on_expire, replay_events=settings.resume_replay_events,
                           on_detached=on_detached, on_resumed=on_resumed)


class Switchboard(AsyncIOEventEmitter):
    def __init__(self, settings: Settings, media: MediaConfig | None = None, clock: Clock | None = None,
                 plane: MediaPlane | None = None, live: LiveState | None = None,
                 sessions: SessionStoreFactory | None = None,
                 timers: Callable[[Callable[[], None]], TimerRegistry] | None = None,
                 recording_path: PreparePath | None = None) -> None:
        """`live`, `sessions` and `timers` choose where live state is kept (default: this process's memory);
        `plane` where media runs (default: in this process); `recording_path` where recordings are written
        (default: a local folder, settings.recording_root)."""
        super().__init__()
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.queues = QueueDirectory(settings.queues)
        self.media = media or MediaConfig.from_settings(settings)
        self.sessions: SessionStore = (sessions or memory_sessions)(
            settings, self._session_expired, self._session_detached, self._session_resumed)
        self.guard = CallerGuard(settings, self.clock)
        self.live: LiveState = live if live is not None else MemoryLiveState()
        # Media: asked of the plane (in this process, or worker processes), never touched directly.
        self.plane: MediaPlane = plane if plane is not None else LocalPlane(self.media)
        self.core = Core(settings, self.clock, self.live, self.sessions, self.queues, self.plane, self.emit,
                         self._settle, timers or Timers)
        self.presence = Presence(self.core)
        self.views = Views(self.core, self.presence)
        self.waiting = WaitingLine(self.core, self.presence, self.views)
        self.dispatch = Dispatch(self.core, self.presence, self.waiting, self.views)
        self.incall = InCall(self.core, self.presence, self.dispatch, self.views)
        self.supervision = Supervision(self.core)
        self.content = Content(self.core, self.views)
        self.recording_storage = LocalRecordingStorage(settings.recording_root)
        self.recordings = Recordings(self.core, self.views, recording_path or self.recording_storage.prepare)
        self.on("call.queued", self.recordings.queued)
        self.on("call.answered", self.recordings.answered)
        self.transcripts = Transcripts(self.core)
        self.lifecycle = CallLifecycle(self.core, self.guard, self.presence, self.waiting, self.dispatch,
                                       self.incall, self.supervision, self.views, self.recordings, self.transcripts)
        self.core.bind_end_call(self.lifecycle.end)
        self.plane.subscribe(self._on_leg_event)
        self.on("call.answered", self.transcripts.call_answered)

    # ------------------------------------------------------------------ the settle step
    def _settle(self) -> None:
        """After each command, timer and background step: offer waiting calls to free agents, tell callers who
        just joined a closed or unstaffed queue, publish places in line. Nothing while closing."""
        if self.core.closing:
            return
        self.dispatch.run()
        self.waiting.tell_joined()
        self.waiting.publish_positions()

    def recheck(self) -> None:
        """Settle again (hours may have changed: a queue opened, its config was edited)."""
        self._settle()

    # ------------------------------------------------------------------ callers
    def open_caller(self, identity: CallerIdentity, address: str | None = None) -> Session:
        def holds_call(session: Session) -> bool:
            call = self.live.call(session.call_id)
            return call is not None and call.state is not CallState.ENDED

        by_subject, by_address = ("caller", subject_key(identity)), ("caller-address", address)
        same_address = self.sessions.members(by_address) if address is not None else None
        for stale in self.guard.session_to_evict(self.sessions.members(by_subject), same_address, holds_call):
            self.release_session(stale)  # its socket is gone and the same caller (or address) is back
        session = self.sessions.create("caller", identity)
        session.address = address
        self.sessions.file_under(session, by_subject, *((by_address,) if address is not None else ()))
        return session

    def start_call(self, session: Session, call_type: CallType, location: Location | None,
                   context: CallContext) -> Call:
        """Validate, then queue. One live call per caller session."""
        if self.core.closing:
            raise Unavailable("the gateway is shutting down", code="shutting_down")
        call = self.lifecycle.start(session, call_type, location, context)
        self._settle()
        return call

    def caller_call(self, session: Session, call_id: str | None) -> Call:
        return self.views.caller_call(session, call_id)

    async def caller_offer(self, session: Session, call_id: str | None, sdp: str) -> str:
        return await self.lifecycle.caller_offer(session, call_id, sdp)

    async def add_candidate(self, call: Call, participant: str, candidate: str | None,
                            sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        await self.lifecycle.add_candidate(call, participant, candidate, sdp_mid, sdp_mline_index)

    async def caller_hangup(self, session: Session, call_id: str | None) -> Call:
        call = self.views.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has already ended", code="call_ended")
        await self.end_call(call, EndReason.CALLER_HANGUP, "caller")
        return call

    async def request_callback(self, session: Session, call_id: str | None, phone: str | None) -> Call:
        call = await self.waiting.request_callback(session, call_id, phone)
        self._settle()
        return call

    def restore_callback(self, call: Call) -> None:
        """A callback request read back from the records (its node stopped or crashed): waiting here again, so the
        promise is kept; the caller is not connected (when an agent takes it, callback.ready fires as usual)."""
        if not self.waiting.restorable(call):
            return
        self.lifecycle.add(call)
        self.waiting.restored(call)
        self._settle()

    def restore_waiting(self, call: Call, caller_resume: str) -> None:
        """A waiting call read back from the records (its node restarted or crashed): it waits here again at its
        place, not offered until its caller resumes (with the token it holds, whose hash the record kept) within
        `restore_resume_grace_s`; then it ends as any call whose caller did not come back."""
        if not self.waiting.restorable(call):
            return
        self._await_caller(call, caller_resume)
        self.waiting.restored(call)
        self._settle()

    def restore_rejoin(self, call: Call, caller_resume: str) -> None:
        """A caller whose connected call was cut off (its node died; `call.rejoin_of`, closed as interrupted): it
        waits again in `call`, a new call at the front of its queue (ahead of its priority's other callers), not
        offered until it resumes with the token it holds within `restore_resume_grace_s`. On resuming it is told
        call.interrupted."""
        if self.live.call(call.id) is not None or self.core.closing:
            return
        session = self._await_caller(call, caller_resume)
        self.waiting.rejoined(call)
        session.deliver(CallInterrupted(call_id=call.rejoin_of or "", rejoined_call_id=call.id))
        self._settle()

    def _await_caller(self, call: Call, caller_resume: str) -> Session:
        """Track a call read back from the records, its caller not here yet: a restored session waits for it (the
        token it holds, whose hash the record kept) for `restore_resume_grace_s`."""
        session = self.sessions.restore("caller", call.identity, caller_resume, call.id,
                                        self.settings.restore_resume_grace_s)
        self.sessions.file_under(session, ("caller", subject_key(call.identity)))
        call.caller_session = session.id
        call.caller_resume = caller_resume
        call.awaiting_caller = True
        self.lifecycle.add(call)
        return session

    def rejoin(self, session: Session, call_id: str) -> Call:
        call = self.waiting.rejoin(session, call_id)
        self._settle()
        return call

    async def leave_message(self, session: Session, call_id: str | None, text: str) -> Call:
        """Instead of waiting in a closed or unstaffed queue (or past its max wait): a message kept with the record."""
        call, text = self.waiting.check_message(session, call_id, text)
        call.message = text
        call.log("message_left", chars=len(text))
        await self.end_call(call, EndReason.MESSAGE_LEFT, "caller")
        return call

    # ------------------------------------------------------------------ agents
    def open_agent(self, account: AgentAccount) -> Session:
        session = self.presence.open_agent(account)
        self._settle()
        return session

    def agent_state(self, session: Session) -> AgentState:
        return self.presence.agent_state(session)

    def set_agent_status(self, session: Session, status: AgentStatus) -> AgentState:
        state = self.presence.set_status(session, status)
        self._settle()
        return state

    def finish_wrap_up(self, username: str, call_id: str) -> bool:
        """The agent submitted the wrap-up of call_id (REST or agent message): available now, if still wrapping up."""
        done = self.presence.finish_wrap_up(username, call_id)
        self._settle()
        return done

    def extend_wrap_up(self, session: Session, call_id: str) -> float:
        """The console still has an unsaved wrap-up note for call_id: keep the agent in wrap-up a while longer."""
        return self.presence.extend_wrap_up(session, call_id)

    def take_callback(self, username: str, call_id: str) -> Call:
        """An agent asks for a waiting callback request now (the console's list): it rings at that agent at once."""
        call = self.dispatch.take_callback(username, call_id)
        self._settle()
        return call

    def takeable_callback(self, call_id: str, skills: frozenset[str] | None) -> Call:
        """The callback request `call_id` waiting here, if an agent with `skills` may take it now (else the typed
        error take_callback would raise)."""
        return self.dispatch.takeable_callback(call_id, skills)

    def give_callback(self, call: Call, agent: AgentState) -> Call:
        """Several nodes: ring `agent` (claimed in the shared store first) with the callback request `call`."""
        self.dispatch.give_callback(call, agent)
        self._settle()
        return call

    def claim_colleagues_with(self, claims: ColleagueClaims | None) -> None:
        """Several nodes: named colleagues of a transfer or consult are claimed through `claims` (None: this
        engine's agents only)."""
        self.incall.claims = claims

    def accept(self, session: Session, call_id: str) -> Call:
        state, call = self.views.agent_and_call(session, call_id)
        if call.consult == state.username and not call.consult_joined:
            call = self.incall.accept_consult(session, state, call)
        else:
            call = self.dispatch.accept(session, state, call)
        self._settle()
        return call

    def decline(self, session: Session, call_id: str) -> Call:
        state, call = self.views.agent_and_call(session, call_id)
        if call.consult == state.username and not call.consult_joined:
            call = self.incall.decline_consult(call)
        else:
            call = self.dispatch.decline(session, state, call)
        self._settle()
        return call

    async def agent_offer(self, session: Session, call_id: str, sdp: str) -> str:
        return await self.lifecycle.agent_offer(session, call_id, sdp)

    def agent_call(self, session: Session, call_id: str) -> Call:
        return self.views.agent_call(session, call_id)

    def agent_media_call(self, session: Session, call_id: str) -> Call:
        return self.views.agent_media_call(session, call_id)

    async def agent_hangup(self, session: Session, call_id: str) -> Call:
        call = self.views.agent_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has already ended", code="call_ended")
        username = session.principal.username
        if username in call.supervisors:  # a supervisor leaves; the call goes on
            return await self.stop_supervising(session, call_id)
        if username == call.consult:  # the consulted colleague leaves; back to the agent and the caller
            await self.incall.end_consult(call, "cancelled")
            self._settle()
            return call
        await self.end_call(call, EndReason.AGENT_HANGUP, "agent")
        return call

    # ------------------------------------------------------------------ in-call controls, supervision, content
    def hold(self, session: Session, call_id: str, held: bool) -> Call:
        call = self.incall.hold(session, call_id, held)
        self._settle()
        return call

    async def transfer(self, session: Session, call_id: str, *, to_agent: str | None, to_queue: str | None,
                       mode: str) -> Call:
        call = await self.incall.transfer(session, call_id, to_agent=to_agent, to_queue=to_queue, mode=mode)
        self._settle()
        return call

    async def cancel_transfer(self, session: Session, call_id: str) -> Call:
        call = await self.incall.cancel_transfer(session, call_id)
        self._settle()
        return call

    async def complete_transfer(self, session: Session, call_id: str) -> Call:
        call = await self.incall.complete_transfer(session, call_id)
        self._settle()
        return call

    def supervise(self, session: Session, call_id: str, mode: SuperviseMode) -> Call:
        username = session.principal.username
        known = self.views.call(call_id)
        joining = known is None or username not in known.supervisors  # not a change of mode
        call = self.supervision.supervise(session, call_id, mode)
        if joining:
            self.transcripts.supervisor_joined(call, username)
        self._settle()
        return call

    async def stop_supervising(self, session: Session, call_id: str) -> Call:
        call = await self.supervision.stop(session, call_id)
        self._settle()
        return call

    def push_content(self, session: Session, call_id: str, content: dict[str, Any]) -> dict[str, Any]:
        item = self.content.push(session, call_id, content)
        self._settle()
        return item

    def content_status(self, session: Session, call_id: str | None, content_id: str, status: str) -> None:
        self.content.status(session, call_id, content_id, status)
        self._settle()

    def media_source(self, session: Session, call_id: str | None, source: str, reason: str | None = None) -> None:
        self.content.media_source(session, call_id, source, reason)
        self._settle()

    def caller_location(self, session: Session, call_id: str | None, location: Location) -> Call:
        call = self.content.location(session, call_id, location)
        self._settle()
        return call

    def chat(self, session: Session, call_id: str | None, text: str | None,
             attachment: dict[str, Any] | None) -> dict[str, Any]:
        message = self.content.chat(session, call_id, text, attachment)
        self._settle()
        return message

    def check_attachment(self, call: Call, attachment: dict[str, Any] | None) -> None:
        self.content.check_attachment(call, attachment)

    def file_added(self, call: Call, attachment_id: str, kind: str, **detail: Any) -> None:
        self.content.file_added(call, attachment_id, kind, **detail)

    # ------------------------------------------------------------------ recording (gateway/engine/recording.py)
    def recording(self, session: Session, call_id: str, action: str) -> Call:
        """An agent (or a supervisor in the call) starts, pauses or resumes the call's recording."""
        call = self.recordings.agent_call(session, call_id)
        self.recordings.command(call, action, "agent")
        self._settle()
        return call

    def recording_by_api(self, call_id: str, action: str) -> dict[str, Any]:
        """The REST API (a payment system pausing while a card number is read out): start, pause or resume."""
        call = self.recordings.live_call(call_id)
        self.recordings.command(call, action, "api")
        self._settle()
        return self.recordings.public(call)

    def recording_state(self, call_id: str) -> dict[str, Any]:
        return self.recordings.public(self.recordings.live_call(call_id))

    def recording_consent(self, session: Session, call_id: str | None, accept: bool) -> Call:
        """The caller's answer to recording.state "asking"."""
        call = self.views.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        self.recordings.consent(call, accept)
        self._settle()
        return call

    # ------------------------------------------------------------------ endings
    async def end_call(self, call: Call, reason: EndReason, by: str) -> None:
        await self.lifecycle.end(call, reason, by)
        self._settle()

    # ------------------------------------------------------------------ sessions
    def _session_expired(self, session: Session) -> None:
        """A participant did not come back within the grace period."""
        if session.role == "caller":
            call = self.live.call(session.call_id)
            if call is not None and call.state is not CallState.ENDED and call.caller_session == session.id:
                self.core.end_call_later(call, EndReason.CALLER_GONE, "caller")
            return
        state = self.presence.signed_out(session)
        if state is None:
            return
        self.emit("agent.released", session)
        call = self.live.call(state.call_id) if state.call_id else None
        if call is not None and self.incall.colleague_left(state.username, call, for_good=True):
            pass  # a consulted colleague gone: the consult ends, the call goes on with its agent
        elif call is not None and call.state is CallState.OFFERED:
            self.dispatch.withdraw(call, state, "agent_disconnected")
        elif call is not None and call.state is CallState.CONNECTED:
            self.core.end_call_later(call, EndReason.AGENT_GONE, "agent")
        state.status = AgentStatus.OFFLINE
        self._settle()

    def _session_detached(self, session: Session) -> None:
        """A socket went away without bye: a call ringing at that console goes elsewhere; the others are told."""
        if self.core.closing:
            return
        if session.role == "agent":
            self.dispatch.agent_detached(session)
            state = self.live.agent(session.principal.username)
            call = self.live.call(state.call_id) if state is not None and state.session_id == session.id \
                and state.call_id else None
            if call is not None:  # a consult ringing at this console is withdrawn at once, as an offer
                self.incall.colleague_left(state.username, call, for_good=False)
            self.emit("agent.detached", session)
        self.presence.announce(session, connected=False)
        self._settle()

    def _session_resumed(self, session: Session) -> None:
        """A socket came back with its resume token: the others are told; calls may ring at that console again."""
        if self.core.closing:
            return
        if session.role == "caller":
            call = self.live.call(session.call_id)
            if call is not None and call.awaiting_caller and call.caller_session == session.id:
                call.awaiting_caller = False  # back after the restart: offered from now on, in its place
                call.log("caller_resumed")
                self.emit("call.updated", call)
        if session.role == "agent":
            self.emit("agent.resumed", session)
        self.presence.announce(session, connected=True)
        self._settle()

    def release_session(self, session: Session) -> None:
        """The client said goodbye (or its socket closed without a resumable state)."""
        self.sessions.remove(session)
        self._session_expired(session)

    def resume_session(self, token: str, role: str, same_principal: Any, last_seq: int | None) -> Session:
        """A resume that fails says why (and how its call ended, if it did)."""
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

    def _last_call(self, session_id: str, role: str, principal: Any) -> Call | None:
        """The latest call (still in live state) of an ended session."""
        if role == "caller":
            mine = [c for c in self.live.all_calls() if c.caller_session == session_id]
        else:
            mine = [c for c in self.live.all_calls() if c.agent == principal.username]
        return max(mine, key=lambda c: c.created_at, default=None)

    def attach(self, session: Session, deliver: Callable[..., Any], closer: Callable[..., Any] | None = None,
               last_seq: int | None = None) -> Replay:
        """A socket takes over the session's deliveries (the events it missed are returned for replay)."""
        return self.sessions.attach(session, deliver, closer=closer, last_seq=last_seq)

    def detach(self, session: Session, deliver: Callable[..., Any]) -> None:
        self.sessions.detach(session, deliver)

    # ------------------------------------------------------------------ media plane
    def _on_leg_event(self, event: LegEvent) -> None:
        """The media plane's one stream of leg events (gateway/engine/calls.py says what each means)."""
        self.lifecycle.on_leg_event(event)

    @property
    def relays(self) -> dict[str, Relay]:
        """The in-process relays (a LocalPlane's), for tests and benchmarks that look inside a leg; empty when
        media runs in worker processes."""
        return getattr(self.plane, "relays", {})

    # ------------------------------------------------------------------ views (read-only)
    def call(self, call_id: str | None) -> Call | None:
        return self.views.call(call_id)

    def agent(self, username: str | None) -> AgentState | None:
        return self.views.agent(username)

    def waiting_calls(self, queue: str | None = None) -> list[Call]:
        return self.views.waiting_calls(queue)

    def waiting_count(self) -> int:
        return self.views.waiting_count()

    def waiting_lines(self) -> dict[str, tuple[int, float]]:
        return self.views.waiting_lines()

    def counts(self) -> tuple[int, int, int]:
        """(calls ringing or connected, calls waiting, agents signed in): what a node tells the others."""
        calls = sum(1 for c in self.live.all_calls() if c.state in (CallState.OFFERED, CallState.CONNECTED))
        agents = sum(1 for a in self.live.all_agents() if a.status is not AgentStatus.OFFLINE)
        return calls, len(self.live.line), agents

    def release_calls(self, which: Callable[[Call], bool]) -> list[Call]:
        """Take the calls `which` picks out of this engine (a draining node hands them to the others through their
        records): their timers, place in line and media legs go, with no event and nothing recorded. The caller's
        session stays until `forget_caller_session`; the media plane's call is closed by the caller of this."""
        calls = [c for c in self.live.all_calls() if which(c)]
        for call in calls:
            self.core.timers.cancel_group(f"call:{call.id}")
            self.live.line.remove(call.id)
            self.live.untrack_legs(call.id)
            self.live.call_ended(call)
            self.live.forget_call(call.id)
        return calls

    async def close_media(self, call_id: str) -> None:
        await self.core.plane.close_call(call_id)

    def caller_session(self, call: Call) -> Session | None:
        return self.sessions.get(call.caller_session) if call.caller_session else None

    def forget_caller_session(self, session: Session, why: str) -> None:
        """Forget a caller's session without ending anything (its call was handed to another node): a resume that still
        reaches this node is answered as for `why`."""
        self.sessions.remove(session, why=why)

    def active_calls(self) -> int:
        return self.views.active_calls()

    def agents_with_status(self, status: AgentStatus) -> int:
        return self.views.agents_with_status(status)

    def average_handle_s(self, queue: str) -> float | None:
        return self.views.average_handle_s(queue)

    def is_participant(self, call: Call, username: str) -> bool:
        return self.views.is_participant(call, username)

    def queue_names(self) -> set[str]:
        return self.views.queue_names()

    def staffed(self, queue: str | None = None) -> int:
        return self.presence.staffed(queue)

    def ready(self, queue: str) -> int:
        return self.views.ready(queue)

    def attached(self, agent: AgentState) -> bool:
        return self.presence.attached(agent)

    def routable_agents(self) -> list[AgentState]:
        return self.presence.routable_agents()

    def queue_positions(self) -> dict[str, tuple[int, int, int | None]]:
        return self.views.queue_positions()

    def position_of(self, call_id: str) -> Place | None:
        return self.views.position_of(call_id)

    def snapshot(self) -> dict[str, Any]:
        return self.views.snapshot()

    def wallboard(self) -> dict[str, Any]:
        return self.views.wallboard()

    # ------------------------------------------------------------------ a cluster router (signaling/cluster_calls.py)
    def route_with(self, router: Callable[[], None] | None) -> None:
        """Several nodes: the settle step wakes `router`, which offers this node's calls to the agents of every
        node (each offer claimed in the shared store first); None: dispatch in-process again."""
        self.dispatch.router = router

    def offerable(self) -> list[tuple[Call, frozenset[str]]]:
        """This node's calls that may be offered now, in answer order, with the skills each needs."""
        return self.dispatch.offerable()

    def line_state(self) -> list[tuple[Call, bool]]:
        """Every waiting call of this node in answer order, and whether it may be offered now (queued, caller
        present, queue open): what this node mirrors into the cluster's shared line."""
        return self.dispatch.line_state()

    def shared_line(self, places: dict[str, tuple[int, int]], staff: dict[str, tuple[int, int]] | None = None,
                    lengths: dict[str, int] | None = None) -> None:
        """Several nodes: this node's callers' places over the whole cluster (call id -> (position, queue length)),
        and, when read, each queue's staffing (queue -> (staffed, ready)) and waiting callers over every node.
        Callers are told their new places at once (only changes, coalesced as always). No dispatch: the router
        that calls this is the one that dispatches."""
        self.waiting.shared_places_changed(places, staff, lengths)
        if not self.core.closing:
            self.waiting.publish_positions()

    def offer(self, call: Call, agent: AgentState) -> bool:
        """Ring `agent` for a waiting call (the router claimed the agent); False if either changed meanwhile."""
        if call.state is not CallState.QUEUED or call.awaiting_caller or agent.status is not AgentStatus.AVAILABLE:
            return False
        self.dispatch.offer(call, agent)
        return True

    def all_agents(self) -> list[AgentState]:
        return list(self.live.all_agents())

    def session(self, session_id: str | None) -> Session | None:
        return self.sessions.get(session_id or "")

    def drop_session(self, session: Session) -> None:
        """Forget an agent session without ending anything (a cluster stand-in no call needs any more): the agent
        is offline here."""
        self.sessions.remove(session)
        agent = self.live.agent(session.principal.username)
        if agent is not None and agent.session_id == session.id:
            agent.session_id = None
            agent.status = AgentStatus.OFFLINE

    def tell_agent(self, username: str, event: Any) -> None:
        self.core.to_agent(username, event)

    def cancel_wrap_up(self, agent: AgentState) -> None:
        if agent.status is AgentStatus.WRAP_UP:
            self.presence.cancel_wrap_up(agent)

    def follow_agent(self, username: str, status: AgentStatus, call_id: str | None = None) -> None:
        """The agent's status as the home of a call on another node says it (its events, relayed to this node that
        holds the agent's console): ringing or busy with `call_id`, wrapping it up, or free again."""
        agent = self.live.agent(username)
        if agent is None:
            return
        if status in (AgentStatus.RINGING, AgentStatus.BUSY):
            agent.call_id = call_id or agent.call_id
        elif status is AgentStatus.WRAP_UP:
            agent.wrap_up_call, agent.call_id = call_id or agent.call_id, None
        else:
            agent.call_id = agent.wrap_up_call = None
            if status is AgentStatus.AVAILABLE and agent.status is not AgentStatus.AVAILABLE:
                agent.idle_since = now()
        agent.status = status

    def adopt_wrap_up(self, username: str, call_id: str, started: float, until: float) -> bool:
        """Several nodes: this node, which holds the agent's console, takes over the wrap-up of `call_id` whose home
        died (see Presence.adopt_wrap_up). False if the agent is not wrapping that call up here."""
        agent = self.live.agent(username)
        if agent is None or agent.status is not AgentStatus.WRAP_UP or agent.wrap_up_call != call_id:
            return False
        self.presence.adopt_wrap_up(agent, call_id, started, until)
        return True

    def in_a_call(self, username: str) -> bool:
        """Whether the agent takes part (agent, consulted colleague, supervisor) in a call that has not ended."""
        return any(c.state is not CallState.ENDED and self.views.is_participant(c, username)
                   for c in self.live.all_calls())

    # ------------------------------------------------------------------ queues (configuration)
    def queue_config(self, name: str) -> Queue:
        return self.queues.get(name)

    def queue_of(self, call: Call) -> Queue:
        """The call's queue (the default one if an admin removed it while the call was live)."""
        return self.views.queue_of(call)

    def all_queues(self) -> list[Queue]:
        return self.queues.all()

    def has_queue(self, name: str) -> bool:
        return name in self.queues

    def put_queue(self, config: QueueConfig) -> Queue:
        """Add or change a queue (admin API); hours or skills may have changed, so the engine settles."""
        queue = self.queues.put(config)
        self._settle()
        return queue

    def remove_queue(self, name: str) -> None:
        """Remove a queue nobody waits in (the default queue stays)."""
        self.queues.remove(name, waiting=len(self.views.waiting_calls(name)))

    # Live state, for tests and tools that look inside (signaling reads the views above): read-only snapshots
    # taken through the live-state Protocols, whatever store keeps them.
    @property
    def calls(self) -> dict[str, Call]:
        return {call.id: call for call in self.live.all_calls()}

    @property
    def agents(self) -> dict[str, AgentState]:
        return {agent.username: agent for agent in self.live.all_agents()}

    @property
    def queue(self) -> WaitingLines:
        return self.live.line

    @property
    def estimator(self) -> WaitEstimator:
        return self.live.estimator("default")

    @property
    def positions(self) -> PositionNotices:
        return self.waiting.positions

    @property
    def closing(self) -> bool:
        return self.core.closing

    @closing.setter
    def closing(self, value: bool) -> None:
        self.core.closing = value

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start what runs beside the engine: the media plane (worker processes, if so configured)."""
        await self.plane.start()

    def _kept_across_restart(self, call: Call) -> bool:
        if call.callback:
            return call.rejoined_at is None
        return (call.state is CallState.QUEUED and call.caller_resume is not None
                and self.settings.restore_waiting_within_s > 0)

    async def close(self) -> None:
        """End every call (media legs closed once) and stop every timer and task. Two promises stay open, restored
        from the records by the next node that starts: a callback request the caller has not rejoined, and a call
        waiting in line (its caller is told to resume: signaling's shutdown message says so)."""
        self.core.closing = True
        for call in list(self.live.all_calls()):
            if call.state is not CallState.ENDED and not self._kept_across_restart(call):
                await self.lifecycle.end(call, EndReason.SHUTDOWN, "system")
        self.core.timers.close()
        self.waiting.positions.close()
        await self.transcripts.close()  # the last words of the calls just ended, before their media is gone
        await self.plane.close()
        self.live.clear()
        await self.core.drain()
        self.core.timers.close()  # what a last background step set
        self.sessions.close()
