"""A call's life: starting one (one live call per caller, a returning caller replaces its earlier call), its
media (offers, candidates, the legs the plane reports on and what their events mean), and its end (everyone told,
agents to wrap-up, media closed, the call forgotten from live state a while later)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import structlog

from ..callerguard import CallerGuard
from ..calls import Call
from ..errors import InvalidState, Unavailable
from ..events import CallEnded, Event, MediaState, MediaVideo, OfferWithdrawn
from ..media.plane import LegEvent
from ..models import CallContext, CallerIdentity, CallState, CallType, EndReason, Location, now
from ..sessions import Session
from .core import Core
from .incall import InCall
from .presence import Presence
from .dispatch import Dispatch
from .recording import Recordings
from .supervision import Supervision
from .transcripts import Transcripts
from .views import Views
from .waiting import WaitingLine

log = structlog.get_logger("callin.switchboard")

FORGET_AFTER_S = 300.0
# Leg failures a participant can recover from with a new offer (its side closed or lost the connection); a leg
# silent past the watchdog's grace (media_timeout), one that never connected or a dead worker end the call at once.
RECOVERABLE = frozenset({"closed_by_remote", "ice_failed", "dtls_failed"})


class CallLifecycle:
    def __init__(self, core: Core, guard: CallerGuard, presence: Presence, waiting: WaitingLine, dispatch: Dispatch,
                 incall: InCall, supervision: Supervision, views: Views, recordings: Recordings,
                 transcripts: Transcripts) -> None:
        self.core = core
        self.recordings = recordings
        self.guard = guard
        self.presence = presence
        self.waiting = waiting
        self.dispatch = dispatch
        self.incall = incall
        self.supervision = supervision
        self.views = views
        self.transcripts = transcripts
        core.timers.on("forget", core.live.forget_call)
        self._recovering: dict[str, str] = {}  # leg id -> call id: a replacing leg not yet connected
        self._failed: dict[str, set[str]] = {}  # call id -> its failed legs waiting for a new offer (recovery)
        core.timers.on("recover", self._recovery_over)

    # -- starting ---------------------------------------------------------------------------------------------
    def start(self, session: Session, call_type: CallType, location: Location | None, context: CallContext) -> Call:
        """Validate, then queue (the settle step that follows offers it, or tells the caller the queue is closed)."""
        core, live, settings = self.core, self.core.live, self.core.settings
        current = live.call(session.call_id) if session.call_id is not None else None
        if current is not None and current.state is not CallState.ENDED:
            raise InvalidState("this session already has a call", code="call_in_progress")
        replaced = self.guard.check_start(session, live.live_calls_of(session.principal))
        if len(live.line) - (replaced is not None and replaced.id in live.line) >= settings.max_queue_length:
            raise Unavailable("the queue is full, try again later", code="queue_full")
        if context.encoded_size() > settings.max_context_bytes:
            raise InvalidState(f"context larger than {settings.max_context_bytes} bytes", code="context_too_large")
        identity: CallerIdentity = session.principal
        queue = core.queues.for_caller(identity)
        call = Call(
            id=secrets.token_hex(8),
            identity=identity,
            call_type=call_type,
            location=location,
            context=context,
            caller_session=session.id,
            caller_resume=session.resume_hash,
            priority=queue.priority_for(identity),
            queue=queue.name,
            created_at=core.clock.time(),
            history_limit=settings.card_history_events,
        )
        self.add(call)
        session.call_id = call.id
        self.guard.started(session)
        self.waiting.join(call, replaced, queue)
        if replaced is not None:
            replaced.log("replaced", by_call=call.id)
            call.log("replaces", call=replaced.id)
            log.info("call.replaced", call_id=replaced.id, by_call=call.id)
            core.end_call_later(replaced, EndReason.REPLACED, "caller")
        log.info("call.queued", call_id=call.id, call_type=call_type.value, subject=identity.subject, queue=queue.name)
        core.emit("call.queued", call)
        return call

    def add(self, call: Call) -> None:
        self.core.live.add_call(call)
        self.core.plane.open_call(call.id)

    # -- media ------------------------------------------------------------------------------------------------
    async def caller_offer(self, session: Session, call_id: str | None, sdp: str) -> str:
        call = self.views.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        return await self._offer(call, "caller", sdp)

    async def agent_offer(self, session: Session, call_id: str, sdp: str) -> str:
        """An agent's offer, once it accepted the call, or already while the call rings at it: then its leg is set
        up (ICE and DTLS done during the ring) but stays out of the call's scene, so that nothing flows either way
        until it accepts, and a ring that ends unanswered removes it (Dispatch.withdraw)."""
        state, call = self.views.agent_and_call(session, call_id)
        username = state.username
        if not self.views.rings_at(call, username) and (
                call.state is not CallState.CONNECTED or not self.views.is_participant(call, username)):
            raise InvalidState("accept the call before sending media", code="not_accepted")
        return await self._offer(call, username, sdp)

    def _label(self, call: Call, participant: str) -> str:
        """How events name a leg: "caller", "agent" (the call's agent), else the participant's username (a
        supervisor, a consulted colleague, an agent whose ring is not answered yet: told to that agent only)."""
        if participant == "caller":
            return "caller"
        return "agent" if call.agent == participant else participant

    async def _offer(self, call: Call, participant: str, sdp: str) -> str:
        """A participant's offer: its leg is set up. A participant that already has one (its network changed, its
        app or console was reloaded: a new peer connection) gets a new leg in its place, and the others in the call
        hear of it as participant.reconnecting / reconnected with cause "media"."""
        live = self.core.live
        previous = live.leg_of(call.id, participant)
        answer = await self.core.plane.answer(call.id, participant, sdp)
        if call.state is CallState.ENDED:
            return answer.sdp  # ended while the offer was answered: the plane has closed the call's media
        early = participant != "caller" and self.views.rings_at(call, participant)
        if participant != "caller" and not early and not self.views.is_participant(call, participant):
            # The ring ended (declined, timed out, withdrawn) while its offer was being answered: no leg stays.
            await self.core.plane.remove(call.id, participant)
            raise InvalidState("the call no longer rings here", code="not_offered")
        label = self._label(call, participant)
        live.track_leg(answer.leg_id, call.id, participant, label)
        if participant == "caller":
            call.log("caller_media_offered")
        elif early:
            call.log("agent_media_offered", agent=participant, ringing=True)
        else:
            call.log("agent_media_offered", agent=participant)
        if previous is not None:
            call.log("media_replaced", leg=label)
            log.info("call.media_replaced", call_id=call.id, leg=label)
            if label in ("caller", "agent"):
                self._recovering[answer.leg_id] = call.id
                self.presence.announce_media(call, label, connected=False)
        return answer.sdp

    async def add_candidate(self, call: Call, participant: str, candidate: str | None,
                            sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        plane = self.core.plane
        if not plane.has_call(call.id):
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        await plane.add_candidate(call.id, participant, candidate, sdp_mid, sdp_mline_index)

    def on_leg_event(self, event: LegEvent) -> None:
        """The media plane's one stream of leg events. Events of a leg that was replaced or removed are ignored."""
        core = self.core
        tracked = core.live.leg(event.leg_id)
        call = core.live.call(event.call_id)
        if tracked is None or call is None:
            return
        label = tracked[2]
        side = label not in ("caller", "agent")

        def tell(make: Callable[[str], Event]) -> None:
            if side:  # a supervisor's or colleague's leg is their own business: the caller must not see it
                core.to_agent(label, make("self"))
                return
            for session_id in self.views.participant_sessions(call):
                core.to_session(session_id, make(label))

        if event.kind == "state":  # connection states, and the watchdog's disconnected/connected
            state = event.state or ""
            tell(lambda name: MediaState(call_id=call.id, leg=name, state=state))
            if state == "connected" and self._recovering.pop(event.leg_id, None) is not None:
                self.presence.announce_media(call, label, connected=True)
        elif event.kind == "video":
            paused, reason = bool(event.paused), event.reason or ""
            call.log("video_paused" if paused else "video_resumed", leg=label, reason=reason)
            tell(lambda name: MediaVideo(call_id=call.id, leg=name, state="paused" if paused else "resumed",
                                         reason=reason))
        elif event.kind == "failed":
            self._recovering.pop(event.leg_id, None)
            if call.state is CallState.ENDED:
                return  # the call ended first (a peer closes its connection once told)
            call.log("media_failed", leg=label, cause=event.reason or "failed")
            if side and self.views.rings_at(call, label):
                # The leg a ringing console set up ahead of its answer: dropped; the call is not affected (the
                # console offers again if the agent accepts).
                core.live.untrack_legs(call.id, label)
                core.spawn(core.plane.remove(call.id, label))
            elif side and label in call.supervisors:
                core.spawn(self.supervision.drop(call, label))
            elif side and label == call.consult:
                core.spawn(self.incall.end_consult(call, "media_failed"))
            elif (event.reason in RECOVERABLE and core.settings.media_recovery_grace_s > 0
                  and call.state is not CallState.ENDED):
                # The participant's side went away (a network change, a reloaded app): its new offer may follow.
                self._failed.setdefault(call.id, set()).add(event.leg_id)
                core.timers.set(f"call:{call.id}:recover", core.settings.media_recovery_grace_s, call.id)
            else:
                core.end_call_later(call, EndReason.MEDIA_FAILED, "system")

    def _recovery_over(self, call_id: str) -> None:
        """The recovery grace is over: a failed leg that was not replaced by a new offer ends the call."""
        failed = self._failed.pop(call_id, set())
        call = self.core.live.call(call_id)
        if call is None or call.state is CallState.ENDED:
            return
        if any(self.core.live.leg(leg_id) is not None for leg_id in failed):
            self.core.end_call_later(call, EndReason.MEDIA_FAILED, "system")

    # -- the end ----------------------------------------------------------------------------------------------
    async def end(self, call: Call, reason: EndReason, by: str) -> None:
        if call.state is CallState.ENDED:
            return
        core, live = self.core, self.core.live
        core.timers.cancel_group(f"call:{call.id}")  # ringing, a new round, max wait, rejoin, consult
        was_waiting = call.waiting
        live.call_ended(call)
        self.waiting.leave(call)
        call.ended_at = now()
        call.end_reason = reason
        call.ended_by = by
        call.transition(CallState.ENDED, reason=reason.value, by=by)
        self.recordings.ending(call)  # told before call.ended; the record below has the final state
        duration = call.ended_at - call.answered_at if call.answered_at else None
        if duration is not None:
            live.estimator(call.queue).record_handle_time(duration)
        event = CallEnded(call_id=call.id, reason=reason.value, by=by, duration_s=duration)
        caller = core.sessions.get(call.caller_session)
        if caller is not None:
            caller.deliver(event)
            caller.call_id = None
        for username in {call.agent, call.offered_to} - {None}:
            agent = live.agent(username)
            if agent is None:
                continue
            session = core.sessions.get(agent.session_id or "")
            if call.offered_to == username and call.agent is None:
                if session is not None:
                    session.deliver(OfferWithdrawn(call_id=call.id, reason=reason.value))
            elif session is not None:
                session.deliver(event)
                session.call_id = None
            self.presence.call_over(agent, call, session)
        call.offered_to = None
        # Observers (the record first) see the end before anything is awaited: a wrap-up sent by the agent as soon
        # as it gets call.ended must find the record already ended.
        log.info("call.ended", call_id=call.id, reason=reason.value, by=by, abandoned=was_waiting)
        core.emit("call.ended", call)
        await self.incall.release_consult(call, event)
        self.supervision.call_ended(call, event)
        await self.recordings.ended(call)  # the recorder stops (its file finalised) before the media closes
        self.transcripts.call_ended(call)  # its last words are recognised after the media has closed
        await core.plane.close_call(call.id)
        live.untrack_legs(call.id)
        for leg_id in [k for k, v in self._recovering.items() if v == call.id]:
            del self._recovering[leg_id]
        self._failed.pop(call.id, None)
        # Live state keeps ended calls briefly (for late requests to get a clear "call_ended"); records keep them.
        core.timers.set(f"call:{call.id}:forget", FORGET_AFTER_S, call.id)
