"""The call and its state machine: queued -> offered -> connected -> ended (offered -> queued on decline/timeout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidState
from .recording import CallRecording
from .models import CallContext, CallerIdentity, CallEvent, CallState, CallType, EndReason, Location, now

_ALLOWED: dict[CallState, set[CallState]] = {
    CallState.QUEUED: {CallState.OFFERED, CallState.ENDED},
    CallState.OFFERED: {CallState.QUEUED, CallState.CONNECTED, CallState.ENDED},
    CallState.CONNECTED: {CallState.ENDED, CallState.OFFERED, CallState.QUEUED},  # the latter two: blind transfer
    CallState.ENDED: set(),
}


@dataclass
class Call:
    id: str
    identity: CallerIdentity
    call_type: CallType
    location: Location | None
    context: CallContext
    caller_session: str
    caller_resume: str | None = None  # hash of the caller session's resume token (kept with the record)
    awaiting_caller: bool = False  # restored after a restart: waits (in place) but is not offered until the caller is back
    priority: int = 0
    queue: str = "default"
    state: CallState = CallState.QUEUED
    created_at: float = field(default_factory=now)
    arrived_at: float | None = None  # its place in line counts from then (a caller back in a new call keeps its place)
    rejoin_of: str | None = None  # a caller whose connected call was cut off (its node died): that call's id
    offered_to: str | None = None
    agent: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    ended_by: str | None = None
    declined_by: set[str] = field(default_factory=set)
    events: list[CallEvent] = field(default_factory=list)
    # in-call handling (gateway/engine/incall.py, supervision.py, content.py)
    held: bool = False
    consult: str | None = None  # colleague consulted for a warm transfer (ringing or joined)
    consult_joined: bool = False
    transferred_from: str | None = None
    supervisors: dict[str, str] = field(default_factory=dict)  # username -> monitor | whisper | barge
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)  # content_id -> pushed content and its status
    attachments: set[str] = field(default_factory=set)  # ids of files exchanged in the call
    closed_reason: str | None = None  # after_hours / no_agents / max_wait: what the caller was told
    callback: bool = False  # the caller asked to be called back and may have left
    callback_phone: str | None = None
    callback_offered: bool = False
    callback_ready_at: float | None = None  # an agent accepted the callback; the caller is asked to rejoin
    rejoined_at: float | None = None
    message: str | None = None  # left for the team instead of waiting
    history_limit: int = 50  # newest events shown in the card (settings.card_history_events)
    chat_guard: Any = field(default=None, repr=False)  # gateway/chatguard.py, made on the first chat line
    media_source: str = ""  # camera, screen or none: what the caller's video sends now (its media.source)
    media_source_reason: str | None = None  # with none: camera_blocked / camera_unavailable (media.source reason)
    recording: CallRecording | None = None  # the queue's recording policy and the caller's consent (gateway/recording.py)

    def __post_init__(self) -> None:
        if not self.media_source:
            self.media_source = {CallType.VOICE: "none", CallType.SCREEN: "screen"}.get(self.call_type, "camera")
        self.log("queued", call_type=self.call_type.value)

    def log(self, kind: str, **detail: Any) -> None:
        self.events.append(CallEvent(at=now(), kind=kind, detail=detail))

    def transition(self, target: CallState, **detail: Any) -> None:
        if target not in _ALLOWED[self.state]:
            raise InvalidState(f"call {self.id} is {self.state.value}, it cannot become {target.value}")
        self.state = target
        self.log(target.value, **detail)

    @property
    def waiting(self) -> bool:
        return self.state in (CallState.QUEUED, CallState.OFFERED)

    @property
    def waited_since(self) -> float:
        """When its caller began to wait: its first arrival (kept across a return and a restore on another node),
        or, for a caller put back first in line after its connected call was cut off, this call (its place in line
        counts from far back to put it first: not a wait)."""
        if self.rejoin_of is not None or self.arrived_at is None:
            return self.created_at
        return min(self.arrived_at, self.created_at)

    @property
    def wait_s(self) -> float:
        end = self.answered_at or self.ended_at or now()
        return end - self.created_at

    def history(self, start: int, limit: int) -> list[dict[str, Any]]:
        """Events start .. start+limit-1, oldest first, each with its index `seq` (GET .../history pages by it)."""
        return [{"seq": i, "at": e.at, "kind": e.kind, **e.detail}
                for i, e in enumerate(self.events[start:start + limit], start=start)]

    def card(self) -> dict[str, Any]:
        """What the agent sees: verified identity, device location, app context, and the newest `history_limit`
        events (`history_omitted` older ones are left out: GET /api/v1/calls/{id}/history has them)."""
        return {
            "call_id": self.id,
            "call_type": self.call_type.value,
            "queue": self.queue,
            "priority": self.priority,
            "created_at": self.created_at,
            "identity": self.identity.model_dump(),
            "location": self.location.model_dump() if self.location else None,
            "context": self.context.model_dump(),
            "transferred_from": self.transferred_from,
            "history": self.history(max(0, len(self.events) - self.history_limit), self.history_limit),
            "history_omitted": max(0, len(self.events) - self.history_limit),
            "callback": self.callback,
            "callback_phone": self.callback_phone,
            "media_source": self.media_source,
            "media_source_reason": self.media_source_reason,
            "recording": self.recording.public() if self.recording is not None else None,
        }
