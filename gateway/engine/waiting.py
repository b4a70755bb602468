"""The waiting line: joining it, places told to callers (only changes, coalesced), closed queues (after hours, no
agents, max wait) and the hours recheck, callbacks (offer, request, ready, rejoin, restore after a restart) and
messages left instead of waiting."""

from __future__ import annotations

import structlog

from ..calls import Call
from ..errors import BadRequest, Forbidden, InvalidState, NotFound
from ..events import CallbackOffer, CallbackReady, QueueClosed, QueueUpdate
from ..models import CallerIdentity, CallState, EndReason
from ..positions import PositionNotices
from ..queues import ClosedReason, Queue
from ..routing import AgentState
from ..sessions import Session
from .core import Core
from .presence import Presence
from .views import Views

log = structlog.get_logger("callin.waiting")

HOURS_RECHECK_MAX_S = 300.0


class WaitingLine:
    def __init__(self, core: Core, presence: Presence, views: Views) -> None:
        self.core = core
        self.presence = presence
        self.views = views
        self.positions = PositionNotices(core.settings.position_update_interval_s, views.position_of,
                                         self._tell_position)
        self._joined: list[Call] = []  # joined since the last settle: told if their queue is closed
        self._shared_due = False  # several nodes: places read from the shared line not yet published
        core.timers.on("wait", self._max_wait)
        core.timers.on("rejoin", self._rejoin_expired)
        core.timers.on("hours", lambda: None)  # nothing of its own: the settle step after it rechecks the hours

    # -- joining and leaving ----------------------------------------------------------------------------------
    def join(self, call: Call, replaced: Call | None, queue: Queue) -> None:
        """A new call waits; it takes the place of `replaced` (the same caller, back) if that was in its queue."""
        line = self.core.live.line
        if replaced is not None and replaced.queue == call.queue:
            call.arrived_at = replaced.arrived_at or replaced.created_at  # before its place: the line notes its wait
            line.take_place(call, replaced.id)  # the caller came back: its place in line is kept
        else:
            line.add(call)
        if replaced is not None:
            line.remove(replaced.id)
        if queue.config.max_wait_s is not None:
            self.core.timers.set(f"call:{call.id}:wait", queue.config.max_wait_s, call.id)
        self._joined.append(call)

    def tell_joined(self) -> None:
        """Part of settling: a caller who joined and still waits is told if nobody will answer soon."""
        joined, self._joined = self._joined, []
        at = self.core.clock.time()
        for call in joined:
            if call.state is not CallState.QUEUED:
                continue
            queue = self.views.queue_of(call)
            if not queue.is_open(at):
                self.tell_closed(call, queue, ClosedReason.AFTER_HOURS)
            elif self.views.staffed(queue.name) == 0:
                self.tell_closed(call, queue, ClosedReason.NO_AGENTS)

    def leave(self, call: Call) -> None:
        """The call no longer waits (answered or ended): out of the line, nothing more to tell it."""
        self.core.live.line.remove(call.id)
        self.positions.forget(call.id)

    def line_skills(self, name: str) -> frozenset[str]:
        return self.core.queues.get(name if name in self.core.queues else "default").skills

    # -- places -----------------------------------------------------------------------------------------------
    def publish_positions(self) -> None:
        """Recompute the places that may have changed: in each queue, from the first rank that moved (a join at
        the back moves nobody else), or every place when the queue's estimate inputs changed. What each caller
        is told, and when, is up to the position notices (only changes, at most once per interval)."""
        live = self.core.live
        line = live.line
        moved = line.take_moved()
        if self.views.shared_places is not None:
            self._publish_shared(bool(moved))
            return
        inputs: dict[str, tuple[int, int, float]] = {}
        for name in line.names():
            inputs[name] = current = self.views.inputs(name)
            start = 1 if self.views.estimate_inputs.get(name) != current else moved.get(name)
            if start is None:
                continue
            staffed, ready, _ = current
            estimator = live.estimator(name)
            length = line.length(name)
            for position, call in line.line(name, start):
                estimate = estimator.estimate(position, staffed, ready)
                if self.positions.update(call, position, length, estimate):
                    self._maybe_offer_callback(call, estimate, self.core.sessions.get(call.caller_session))
        self.views.estimate_inputs = inputs

    def shared_places_changed(self, places: dict[str, tuple[int, int]], staff: dict[str, tuple[int, int]] | None,
                              lengths: dict[str, int] | None) -> None:
        """Several nodes: the places of this node's callers over the whole cluster (and its staffing), as just read
        from the shared line; they are told at the next settle step."""
        views = self.views
        if places != views.shared_places or (staff is not None and staff != views.shared_staff):
            self._shared_due = True
        views.shared_places = places
        if staff is not None:
            views.shared_staff = staff
        if lengths is not None:
            views.shared_lengths = lengths

    def _publish_shared(self, moved: bool) -> None:
        """Places over the whole cluster: every waiting caller of this node whose place was read from the shared
        line (one not there yet is told at the next read, not a place that counts this node's callers only)."""
        views = self.views
        inputs = {name: views.inputs(name) for name in self.core.live.line.names()}
        if not (self._shared_due or moved or inputs != views.estimate_inputs):
            return
        self._shared_due = False
        places = views.shared_places or {}
        live = self.core.live
        for call in live.line:
            place = places.get(call.id)
            if place is None:
                continue
            position, length = place
            staffed, ready, _ = inputs[call.queue]
            estimate = live.estimator(call.queue).estimate(position, staffed, ready)
            if self.positions.update(call, position, length, estimate):
                self._maybe_offer_callback(call, estimate, self.core.sessions.get(call.caller_session))
        views.estimate_inputs = inputs

    def _tell_position(self, call: Call, position: int, length: int, estimate: int | None) -> None:
        self.core.to_caller(call, QueueUpdate(call_id=call.id, position=position, queue_length=length,
                                              estimated_wait_s=estimate, queue=call.queue))

    # -- closed queues ----------------------------------------------------------------------------------------
    def tell_closed(self, call: Call, queue: Queue, reason: ClosedReason) -> None:
        """Tell a waiting caller why nobody will answer soon and what it may do instead (no silent queue)."""
        if call.callback:
            return
        config = queue.config
        message = {ClosedReason.AFTER_HOURS: config.after_hours_message, ClosedReason.NO_AGENTS: config.closed_message,
                   ClosedReason.MAX_WAIT: config.max_wait_message}[reason]
        call.closed_reason = reason.value
        call.log("queue_closed", reason=reason.value)
        session = self.core.sessions.get(call.caller_session)
        if session is not None:
            opens_at = queue.schedule.next_opening(self.core.clock.time()) \
                if reason is ClosedReason.AFTER_HOURS else None
            session.deliver(QueueClosed(call_id=call.id, queue=queue.name, reason=reason.value, message=message,
                                        callback_available=config.callbacks, message_allowed=config.messages,
                                        opens_at=opens_at))
        log.info("call.queue_closed", call_id=call.id, queue=queue.name, reason=reason.value)
        self.core.emit("call.updated", call)

    def _max_wait_since_arrival(self, call: Call) -> None:
        max_wait_s = self.views.queue_of(call).config.max_wait_s
        if max_wait_s is None or call.closed_reason == ClosedReason.MAX_WAIT.value:
            return  # no max wait, or its caller was told already (before its node died)
        arrived = call.arrived_at if call.arrived_at is not None else call.created_at
        left = max(0.0, arrived + max_wait_s - self.core.clock.time())
        self.core.timers.set(f"call:{call.id}:wait", left, call.id)

    def _max_wait(self, call_id: str) -> None:
        call = self.core.live.call(call_id)
        if call is not None and call.state is CallState.QUEUED:
            self.tell_closed(call, self.views.queue_of(call), ClosedReason.MAX_WAIT)

    def recheck_hours_later(self, closed: set[str], at: float) -> None:
        """While calls (callbacks, mostly) wait in a closed queue, look again when the first of those queues opens
        (the timer firing settles the engine: dispatch and positions again)."""
        timers = self.core.timers
        timers.cancel("hours")
        if not closed or self.core.closing:
            return
        queues = self.core.queues
        openings = [t for t in (queues.get(n).schedule.next_opening(at) for n in closed if n in queues)
                    if t is not None]
        delay = min([HOURS_RECHECK_MAX_S] + [t - at for t in openings])
        timers.set("hours", max(1.0, delay))

    # -- callbacks --------------------------------------------------------------------------------------------
    def _maybe_offer_callback(self, call: Call, estimate: int | None, session: Session | None) -> None:
        config = self.views.queue_of(call).config
        threshold = config.callback_threshold_s
        if (session is None or call.callback or call.callback_offered or not config.callbacks or threshold is None
                or estimate is None or estimate <= threshold or call.state is not CallState.QUEUED):
            return
        call.callback_offered = True
        call.log("callback_offered", estimated_wait_s=estimate)
        session.deliver(CallbackOffer(call_id=call.id, queue=call.queue, estimated_wait_s=estimate))

    def waiting_call(self, session: Session, call_id: str | None) -> Call:
        call = self.views.caller_call(session, call_id)
        if not call.waiting:
            raise InvalidState("the call is not waiting in a queue", code="not_queued")
        return call

    async def request_callback(self, session: Session, call_id: str | None, phone: str | None) -> Call:
        """The caller keeps its place and may leave; when an agent accepts, it is told (callback.ready, webhook)."""
        call = self.waiting_call(session, call_id)
        if call.callback:
            raise InvalidState("a callback is already requested", code="callback_requested")
        if not self.views.queue_of(call).config.callbacks:
            raise Forbidden("this queue does not offer callbacks", code="callbacks_disabled")
        call.callback = True
        call.callback_phone = phone
        call.log("callback_requested", phone_given=phone is not None)
        # The caller may leave: its media goes (a fresh relay waits for the rejoin) and its session going away no
        # longer ends the call; while the session lives it is still told positions and callback.ready.
        self.core.live.untrack_legs(call.id)
        session.call_id = None
        self.core.timers.cancel(f"call:{call.id}:wait")
        log.info("call.callback_requested", call_id=call.id, queue=call.queue)
        self.core.emit("call.updated", call)
        await self.core.plane.reset_call(call.id)
        return call

    def restorable(self, call: Call) -> bool:
        return self.core.live.call(call.id) is None and call.state is CallState.QUEUED

    def restored(self, call: Call) -> None:
        """A callback request or a waiting call read back from the records (its node stopped or crashed) waits here
        again (restored in the order they were made, so their places hold). A waiting caller keeps its queue's max
        wait counted from when it arrived, not from now: the deadline is re-created here from its record."""
        self.core.live.line.add(call)
        if not call.callback:
            self._max_wait_since_arrival(call)
        log.info("call.callback_restored" if call.callback else "call.restored", call_id=call.id, queue=call.queue)
        self.core.emit("call.updated", call)

    def rejoined(self, call: Call) -> None:
        """A caller whose connected call was cut off waits again, at the front of its queue (see restore_rejoin)."""
        self.core.live.line.add(call, first=True)
        call.log("rejoined_front", interrupted=call.rejoin_of)
        log.info("call.rejoined_front", call_id=call.id, interrupted=call.rejoin_of, queue=call.queue)
        self.core.emit("call.queued", call)

    def callback_ready(self, call: Call, agent: AgentState) -> None:
        """An agent took the callback: the caller is asked to rejoin within callback_rejoin_s."""
        rejoin_s = self.core.settings.callback_rejoin_s
        call.callback_ready_at = self.core.clock.time()
        call.log("callback_ready", agent=agent.username)
        self.core.to_caller(call, CallbackReady(call_id=call.id, agent_name=agent.display_name,
                                                rejoin_within_s=rejoin_s))
        self.core.timers.set(f"call:{call.id}:rejoin", rejoin_s, call.id)
        log.info("call.callback_ready", call_id=call.id, agent=agent.username)

    def _rejoin_expired(self, call_id: str) -> None:
        call = self.core.live.call(call_id)
        if call is not None and call.state is not CallState.ENDED and call.rejoined_at is None:
            self.core.end_call_later(call, EndReason.CALLBACK_EXPIRED, "system")

    def rejoin(self, session: Session, call_id: str) -> Call:
        """A caller who asked for a callback comes back (with its token) once an agent has taken it."""
        live = self.core.live
        call = live.call(call_id)
        identity: CallerIdentity = session.principal
        if call is None or call.identity.subject != identity.subject or call.identity.issuer != identity.issuer:
            raise NotFound("no such call for this caller", code="unknown_call")
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        if not call.callback or call.callback_ready_at is None:
            raise InvalidState("rejoin when told callback.ready", code="callback_not_ready")
        if call.rejoined_at is not None and call.caller_session and call.caller_session != session.id:
            raise InvalidState("the caller has rejoined already", code="already_rejoined")
        current = live.call(session.call_id) if session.call_id not in (None, call.id) else None
        if current is not None and current.state is not CallState.ENDED:
            raise InvalidState("this session already has a call", code="call_in_progress")
        call.caller_session = session.id
        session.call_id = call.id
        call.rejoined_at = self.core.clock.time()
        self.core.timers.cancel(f"call:{call.id}:rejoin")
        call.log("rejoined")
        log.info("call.rejoined", call_id=call.id)
        self.core.emit("call.updated", call)
        return call

    # -- messages ---------------------------------------------------------------------------------------------
    def check_message(self, session: Session, call_id: str | None, text: str) -> tuple[Call, str]:
        """A message instead of waiting in a closed or unstaffed queue (or past its max wait): (call, text) when
        it may be left (the call then ends, message_left)."""
        call = self.waiting_call(session, call_id)
        if call.closed_reason is None:
            raise InvalidState("messages are for closed or unstaffed queues; wait or ask for a callback",
                               code="queue_open")
        if not self.views.queue_of(call).config.messages:
            raise Forbidden("this queue does not take messages", code="messages_disabled")
        text = text.strip()
        if not text:
            raise BadRequest("the message is empty", code="empty_message")
        limit = self.core.settings.max_left_message_chars
        if len(text) > limit:
            raise BadRequest(f"a message has at most {limit} characters", code="message_too_long")
        return call, text
