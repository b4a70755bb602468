"""The wire protocol of the caller and agent WebSockets: one JSON object per text frame, each with a `type`.

Requests carry an `id` (client-chosen string) that the response echoes. Errors are
`{"type": "error", "id": ..., "code": ..., "reason": ...}`. `docs/protocol.md` documents every message;
`callin schema` and GET /api/v1/protocol/schema publish the JSON Schema generated from these models.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from gateway import strictjson
from gateway.errors import BadRequest
from gateway.models import AgentStatus, CallContext, CallType, Location

PROTOCOL_VERSION = 1
MAX_SDP_CHARS = 32 * 1024
RequestId = Annotated[str, Field(min_length=1, max_length=64, description="client-chosen, echoed in the response")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------- client -> server (both roles)
class Hello(Message):
    """First message on every socket. `token`: caller JWT or agent session token. `resume_token`: from an earlier
    `welcome`, to get the session (and its call) back after a reconnect."""

    type: Literal["hello"]
    id: RequestId
    token: str | None = Field(None, min_length=1, max_length=8192, description="omit only if an Authorization header was sent at upgrade")
    resume_token: str | None = Field(None, max_length=128)
    last_seq: int | None = Field(None, ge=0, le=2**53,
                                 description="with resume_token: the seq of the last event this client processed; "
                                             "the events after it are sent again")
    protocol: int = PROTOCOL_VERSION


class SdpOffer(Message):
    """The client's SDP offer for its peer connection with the gateway; answered by `sdp.answer`."""

    type: Literal["sdp.offer"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64, description="optional for callers (their current call)")
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class IceCandidate(Message):
    """A trickled ICE candidate (RTCIceCandidate.candidate); null/empty `candidate` means end of candidates."""

    type: Literal["ice.candidate"]
    id: RequestId | None = None
    call_id: str | None = Field(None, max_length=64)
    candidate: str | None = Field(None, max_length=1024)
    sdp_mid: str | None = Field(None, max_length=64)
    sdp_mline_index: int | None = Field(None, ge=0, le=16)


class Hangup(Message):
    type: Literal["call.hangup"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)


class Ping(Message):
    type: Literal["ping"]
    id: RequestId


class Bye(Message):
    """Close the session for good (no resume)."""

    type: Literal["bye"]
    id: RequestId


# ---------------------------------------------------------------- caller -> server
class StartCall(Message):
    """Ask for a call. Identity comes only from the token; location and context are device-reported."""

    type: Literal["call.start"]
    id: RequestId
    call_type: CallType
    location: Location | None = None
    context: CallContext = Field(default_factory=CallContext)


class CallbackRequest(Message):
    """Keep my place and let me leave: I am told (callback.ready, or the integrator's webhook
    call.callback_ready) when an agent takes the call, then I rejoin with call.rejoin."""

    type: Literal["callback.request"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, min_length=3, max_length=32, pattern=r"^\+?[0-9 ().-]{3,32}$",
                              description="optional number the team may call instead; kept with the record")


class LeaveMessage(Message):
    """Instead of waiting in a closed or unstaffed queue (after queue.closed): a message for the team. Ends the call."""

    type: Literal["message.leave"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class Rejoin(Message):
    """After callback.ready: take the call back (then sdp.offer as usual). Any session with the same caller token
    subject may rejoin."""

    type: Literal["call.rejoin"]
    id: RequestId
    call_id: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------- agent -> server
class SetStatus(Message):
    type: Literal["agent.status"]
    id: RequestId
    status: Literal[AgentStatus.AVAILABLE, AgentStatus.AWAY]


class Accept(Message):
    type: Literal["call.accept"]
    id: RequestId
    call_id: str = Field(max_length=64)


class Decline(Message):
    type: Literal["call.decline"]
    id: RequestId
    call_id: str = Field(max_length=64)


class Hold(Message):
    """Put the caller on hold (nothing flows either way; the caller is told) or take them off it."""

    type: Literal["call.hold", "call.resume"]
    id: RequestId
    call_id: str = Field(max_length=64)


class Transfer(Message):
    """Blind: the call rings at `to_agent` (or goes to `to_queue`) at once and leaves you. Warm: `to_agent` is
    consulted first while the caller is on hold; finish with transfer.complete or transfer.cancel."""

    type: Literal["call.transfer"]
    id: RequestId
    call_id: str = Field(max_length=64)
    mode: Literal["blind", "warm"]
    to_agent: str | None = Field(None, min_length=1, max_length=128)
    to_queue: str | None = Field(None, min_length=1, max_length=64)


class TransferStep(Message):
    type: Literal["transfer.complete", "transfer.cancel"]
    id: RequestId
    call_id: str = Field(max_length=64)


class Supervise(Message):
    """Supervisors: monitor (listen and watch unheard), whisper (the agent hears you) or barge (both do). Then send
    sdp.offer for the call: audio section 1 = caller, audio section 2 = agent, video = the caller's."""

    type: Literal["supervise.start"]
    id: RequestId
    call_id: str = Field(max_length=64)
    mode: Literal["monitor", "whisper", "barge"]


class SuperviseStop(Message):
    type: Literal["supervise.stop"]
    id: RequestId
    call_id: str = Field(max_length=64)


class WallboardSubscribe(Message):
    """Supervisors: receive `wallboard` now and whenever queues, waiting callers, agents or calls change."""

    type: Literal["wallboard.subscribe", "wallboard.unsubscribe"]
    id: RequestId


class PushContent(Message):
    """Show something on the caller's screen: a link (url), an image (attachment_id of an uploaded image, or an
    https url) or a text card (text). The caller reports content.status seen/opened/dismissed."""

    type: Literal["content.push"]
    id: RequestId
    call_id: str = Field(max_length=64)
    kind: Literal["link", "image", "text"]
    title: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$")
    text: str | None = Field(None, max_length=2000)
    attachment_id: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")

    @model_validator(mode="after")
    def _needs_payload(self) -> "PushContent":
        if self.kind == "link" and not self.url:
            raise ValueError("a link needs url")
        if self.kind == "image" and not (self.attachment_id or (self.url and self.url.startswith("https://"))):
            raise ValueError("an image needs attachment_id or an https url")
        if self.kind == "text" and not self.text:
            raise ValueError("a text card needs text")
        return self


class ChatSend(Message):
    """A chat line and/or a file (attachment_id from POST /api/v1/calls/{call_id}/attachments)."""

    type: Literal["chat.send"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    text: str | None = Field(None, min_length=1, max_length=2000)
    attachment_id: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")

    @model_validator(mode="after")
    def _something(self) -> "ChatSend":
        if not self.text and not self.attachment_id:
            raise ValueError("send text, an attachment, or both")
        return self


class ContentStatusIn(Message):
    type: Literal["content.status"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    content_id: str = Field(max_length=32)
    status: Literal["seen", "opened", "dismissed"]


class WrapUp(Message):
    """Submit the wrap-up of the call just ended (same as POST /api/v1/calls/{id}/wrap-up); ends wrap-up time."""

    type: Literal["wrap_up.submit"]
    id: RequestId
    call_id: str = Field(max_length=64)
    disposition: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    notes: str | None = Field(None, max_length=10_000)


CallerMessage = Annotated[
    Hello | StartCall | SdpOffer | IceCandidate | Hangup | Ping | Bye | ChatSend | ContentStatusIn | CallbackRequest
    | LeaveMessage | Rejoin,
    Field(discriminator="type"),
]
AgentMessage = Annotated[
    Hello | SetStatus | Accept | Decline | SdpOffer | IceCandidate | Hangup | Ping | Bye | Hold | Transfer
    | TransferStep | Supervise | SuperviseStop | PushContent | ChatSend | WallboardSubscribe | WrapUp,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- server -> client
class EventOut(Message):
    """A message the server sends unasked (an event): numbered in the session's sequence, for replay on resume."""

    seq: int | None = Field(None, ge=1, description="this event's number in the session (1, 2, 3 ...); "
                                                    "send the last one seen as hello.last_seq when resuming")


class IceServerOut(Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    id: str
    protocol: int = PROTOCOL_VERSION
    session_id: str
    resume_token: str
    resumed: bool = False
    resume_grace_s: float
    ice_servers: list[IceServerOut]
    max_message_bytes: int
    caller: dict[str, Any] | None = Field(None, description="caller: the verified identity from the token")
    agent: dict[str, Any] | None = Field(None, description="agent: account and current status")
    call: dict[str, Any] | None = Field(None, description="the session's current call, when resumed")
    replayed: int = Field(0, description="how many events follow this welcome as a replay (resume)")
    replay_complete: bool = Field(True, description="false: some events after last_seq are no longer held; "
                                                    "rebuild the state from this welcome")


class CallQueued(Message):
    type: Literal["call.queued"] = "call.queued"
    id: str
    call_id: str
    position: int = Field(description="in its queue; 1 = next")
    queue_length: int
    estimated_wait_s: int | None
    queue: str = "default"


class SdpAnswer(Message):
    type: Literal["sdp.answer"] = "sdp.answer"
    id: str
    call_id: str
    sdp: str


class Ack(Message):
    type: Literal["ack"] = "ack"
    id: str


class Pong(Message):
    type: Literal["pong"] = "pong"
    id: str


class QueuePosition(EventOut):
    type: Literal["queue.position"] = "queue.position"
    call_id: str
    position: int
    queue_length: int
    estimated_wait_s: int | None
    queue: str = "default"


class QueueClosedOut(EventOut):
    """Nobody will answer soon: after_hours, no_agents (nobody staffed with the queue's skills) or max_wait.
    The call stays queued (unless the caller leaves); callback.request and message.leave are the alternatives."""

    type: Literal["queue.closed"] = "queue.closed"
    call_id: str
    queue: str
    reason: Literal["after_hours", "no_agents", "max_wait"]
    message: str
    callback_available: bool
    message_allowed: bool
    opens_at: float | None = Field(None, description="after_hours: when the queue opens next (UNIX seconds)")


class CallbackOfferOut(EventOut):
    """The estimated wait is past the queue's callback threshold: the caller may ask for a callback."""

    type: Literal["callback.offer"] = "callback.offer"
    call_id: str
    queue: str
    estimated_wait_s: int | None


class CallbackAcceptedOut(Message):
    """Reply to callback.request: the place is kept; the caller may close the socket."""

    type: Literal["callback.accepted"] = "callback.accepted"
    id: str
    call_id: str
    position: int | None = None


class CallbackReadyOut(EventOut):
    """An agent took the callback: rejoin (call.rejoin, then sdp.offer) within rejoin_within_s."""

    type: Literal["callback.ready"] = "callback.ready"
    call_id: str
    agent_name: str
    rejoin_within_s: float


class CallRejoinedOut(Message):
    type: Literal["call.rejoined"] = "call.rejoined"
    id: str
    call_id: str
    state: str
    agent_name: str | None = None


class CallAnsweredOut(EventOut):
    type: Literal["call.answered"] = "call.answered"
    call_id: str
    agent_name: str


class CallOfferedOut(EventOut):
    type: Literal["call.offered"] = "call.offered"
    call_id: str
    card: dict[str, Any]
    ring_timeout_s: float


class OfferWithdrawnOut(EventOut):
    type: Literal["call.offer_withdrawn"] = "call.offer_withdrawn"
    call_id: str
    reason: str


class CallAcceptedOut(Message):
    type: Literal["call.accepted"] = "call.accepted"
    id: str
    call_id: str
    card: dict[str, Any]


class CallEndedOut(EventOut):
    type: Literal["call.ended"] = "call.ended"
    call_id: str
    reason: str
    by: str
    duration_s: float | None = None


class AgentStatusOut(EventOut):
    type: Literal["agent.status"] = "agent.status"
    status: str
    reason: str | None = None
    call_id: str | None = None
    id: str | None = None
    wrap_up_s: float | None = None


class MediaStateOut(EventOut):
    type: Literal["media.state"] = "media.state"
    call_id: str
    leg: str
    state: str


class MediaVideoOut(EventOut):
    type: Literal["media.video"] = "media.video"
    call_id: str
    leg: str
    state: Literal["paused", "resumed"]
    reason: Literal["backlog", "keyframes"]


class CallHeldOut(EventOut):
    type: Literal["call.held"] = "call.held"
    call_id: str
    held: bool


class CallTransferringOut(EventOut):
    """To the caller, on a blind transfer: you are being handed to another agent (stay on the line). A warm transfer
    shows as call.held (consult), then call.held false and call.answered with the new agent's name."""

    type: Literal["call.transferring"] = "call.transferring"
    call_id: str
    mode: str


class CallTransferredOut(EventOut):
    """To the agent who transferred the call: your part is over."""

    type: Literal["call.transferred"] = "call.transferred"
    call_id: str
    to: str


class ConsultStateOut(EventOut):
    type: Literal["consult.state"] = "consult.state"
    call_id: str
    state: str
    colleague: str


class SuperviseStarted(Message):
    type: Literal["supervise.started"] = "supervise.started"
    id: str
    call_id: str
    mode: str
    card: dict[str, Any]


class ContentPushedOut(EventOut):
    """To the caller: show this. `content` has content_id, kind, title, url, text, attachment (with its url)."""

    type: Literal["content.pushed"] = "content.pushed"
    call_id: str
    content: dict[str, Any]


class ContentSent(Message):
    type: Literal["content.sent"] = "content.sent"
    id: str
    call_id: str
    content: dict[str, Any]


class ContentStatusOut(EventOut):
    type: Literal["content.status"] = "content.status"
    call_id: str
    content_id: str
    status: str


class ChatMessageOut(EventOut):
    """A chat line to everyone in the call (the sender included): message has message_id, from {role, name},
    text, attachment {id, name, mime, size, url} or null, at."""

    type: Literal["chat.message"] = "chat.message"
    call_id: str
    message: dict[str, Any]


class WallboardOut(Message):
    """queues [{name, waiting, oldest_since}], waiting [{call_id, queue, priority, call_type, caller, since, state,
    ringing_at, callback}], calls [{call_id, queue, call_type, caller, agent, since, held, consult, supervisors}],
    agents [{username, display_name, status, call_id, since}], at. Times are UNIX seconds."""

    type: Literal["wallboard"] = "wallboard"
    id: str | None = None
    queues: list[dict[str, Any]]
    waiting: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    agents: list[dict[str, Any]]
    at: float


class ParticipantOut(EventOut):
    """The other side of the call lost its socket (reconnecting) or got its session back (reconnected)."""

    type: Literal["participant.reconnecting", "participant.reconnected"]
    call_id: str
    role: Literal["caller", "agent"]
    name: str | None = None


class ShutdownOut(Message):
    """The gateway is stopping: this socket closes with 1001 right after. `resume`: this session's call is kept
    (a caller waiting in line): reconnect after retry_after_s with hello {resume_token, last_seq} and it is back in
    its place (on this node once restarted, or another); otherwise the session ends with the socket."""

    type: Literal["shutdown"] = "shutdown"
    reason: str
    retry_after_s: float
    resume: bool = False


class ErrorOut(Message):
    type: Literal["error"] = "error"
    id: str | None = None
    code: str
    reason: str
    retryable: bool = False
    detail: dict[str, Any] | None = Field(None, description="resume_failed: {why, call: {call_id, reason, by} "
                                                            "or null}")


ServerMessage = Annotated[
    Welcome | CallQueued | SdpAnswer | Ack | Pong | QueuePosition | CallAnsweredOut | CallOfferedOut
    | OfferWithdrawnOut | CallAcceptedOut | CallEndedOut | AgentStatusOut | MediaStateOut | MediaVideoOut
    | ErrorOut | CallHeldOut | CallTransferringOut | CallTransferredOut | ConsultStateOut | SuperviseStarted
    | ContentPushedOut | ContentSent | ContentStatusOut | ChatMessageOut | WallboardOut
    | QueueClosedOut | CallbackOfferOut | CallbackAcceptedOut | CallbackReadyOut | CallRejoinedOut
    | ParticipantOut | ShutdownOut,
    Field(discriminator="type"),
]

caller_adapter: TypeAdapter[Any] = TypeAdapter(CallerMessage)
agent_adapter: TypeAdapter[Any] = TypeAdapter(AgentMessage)
server_adapter: TypeAdapter[Any] = TypeAdapter(ServerMessage)


class ProtocolError(BadRequest):
    code = "bad_message"


def parse(adapter: TypeAdapter[Any], raw: str | bytes, max_bytes: int) -> Any:
    """Size check, JSON check, then schema validation; each failure a ProtocolError with a stable code."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes exceeds the limit of {max_bytes}", code="message_too_large")
    try:
        data = strictjson.loads(raw)
    except strictjson.StrictJSONError as exc:
        if not exc.syntax:
            raise ProtocolError(f"message text is not valid Unicode: {exc.reason}", code="invalid_message") from None
        raise ProtocolError(f"message is not valid JSON: {exc.reason}", code="bad_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("a message is a JSON object", code="bad_message")
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            kind = data.get("type")
            raise ProtocolError(f"unknown message type {kind!r}", code="unknown_type") from None
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        raise ProtocolError(f"{where}: {first['msg']}", code="invalid_message") from None


def request_id(raw: str | bytes) -> str | None:
    """Best-effort id of a message that failed validation, so the error can echo it."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:  # an unpaired surrogate cannot be echoed
        return None
    return value


def json_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Callin signaling protocol",
        "version": PROTOCOL_VERSION,
        "caller_to_server": caller_adapter.json_schema(),
        "agent_to_server": agent_adapter.json_schema(),
        "server_to_client": server_adapter.json_schema(),
    }
