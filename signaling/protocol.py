"""The wire protocol of the caller and agent WebSockets: one JSON object per text frame, each with a `type`.

Requests carry an `id` (client-chosen string) that the response echoes. Errors are
`{"type": "error", "id": ..., "code": ..., "reason": ...}`. `docs/protocol.md` documents every message;
`callin schema` and GET /api/v1/protocol/schema publish the JSON Schema generated from these models.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from gateway import strictjson
from gateway.errors import BadRequest
from gateway.models import (MAX_CONTEXT_STEPS, MAX_CRM_FIELDS, MAX_CRM_KEY_CHARS, MAX_CRM_VALUE_CHARS, MAX_STEP_CHARS,
                            CallContext, CallerIdentity, CallType, Location, null_is_absent)

PROTOCOL_VERSION = 1
MAX_SDP_CHARS = 32 * 1024
MAX_TEXT_CHARS = 2000  # chat lines, left messages: the protocol's cap (a deployment may set a lower one)
RequestId = Annotated[str, Field(min_length=1, max_length=64, description="client-chosen, echoed in the response")]
CallId = Annotated[str, Field(min_length=1, max_length=64)]

# RFC 8839 section 5.1 (candidate-attribute, without "a="): foundation, component-id, transport, priority,
# connection-address, port, "typ" cand-type, then optional raddr/rport and extension name/value pairs.
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]"
CANDIDATE_PATTERN = (r"^$|^candidate:[A-Za-z0-9+/]{1,32} [0-9]{1,3} " + _TOKEN + r"+ [0-9]{1,10} [^\s]+ [0-9]{1,5} typ "
                     + _TOKEN + r"+( [^\s]+ [^\s]+)*$")
MID_PATTERN = "^" + _TOKEN + "{1,32}$"  # a=mid values are tokens (RFC 5888); JSEP's are at most 32 characters

# How a value that fails a pattern should look, for the error's reason (by field name).
PATTERN_HINTS = {
    "candidate": "an RTCIceCandidate.candidate line, \"candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS "
                 "PORT typ TYPE\" then optional name/value pairs (RFC 8839), or empty for end of candidates",
    "sdp_mid": "a media section's mid: 1-32 letters, digits or !#$%&'*+.^_`|~-",
    "attachment_id": "16 hexadecimal digits (lower case) from the upload",
    "url": "an http:// or https:// URL without spaces",
    "phone": "3-32 characters: +, digits, spaces, ( ) . -",
    "disposition": "1-64 letters, digits or _ . : -",
}


class Message(BaseModel):
    # The server writes every field of its messages (null for no value): its schema lists them all as required.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_serialization_defaults_required=True)


class Request(Message):
    """A client -> server message: unknown fields are refused, values are not coerced ("1" is not 1, 1 is not
    true), and `null` for an optional field is the same as leaving it out."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        return null_is_absent(cls, data)


# ---------------------------------------------------------------- client -> server (both roles)
class Hello(Request):
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


class SdpOffer(Request):
    """The client's SDP offer for its peer connection with the gateway; answered by `sdp.answer`."""

    type: Literal["sdp.offer"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64, description="optional for callers (their current call)")
    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class IceCandidate(Request):
    """A trickled ICE candidate (RTCIceCandidate.candidate); null/empty `candidate` means end of candidates."""

    type: Literal["ice.candidate"]
    id: RequestId | None = None
    call_id: str | None = Field(None, max_length=64)
    candidate: str | None = Field(None, max_length=1024, pattern=CANDIDATE_PATTERN,
                                  description="RTCIceCandidate.candidate (RFC 8839 grammar); null or empty: end of "
                                              "candidates")
    sdp_mid: str | None = Field(None, pattern=MID_PATTERN,
                                description="RTCIceCandidate.sdpMid: a mid of the offer's media sections")
    sdp_mline_index: int | None = Field(None, ge=0, le=16)


class Hangup(Request):
    type: Literal["call.hangup"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)


class Ping(Request):
    type: Literal["ping"]
    id: RequestId


class Bye(Request):
    """Close the session for good (no resume)."""

    type: Literal["bye"]
    id: RequestId


# ---------------------------------------------------------------- caller -> server
class StartCall(Request):
    """Ask for a call. Identity comes only from the token; location and context are device-reported."""

    type: Literal["call.start"]
    id: RequestId
    call_type: Annotated[CallType, Field(strict=False)]  # the enum's values ("voice", ...), nothing else
    location: Location | None = None
    context: CallContext = Field(default_factory=CallContext)


class CallLocationIn(Request):
    """The device's position, sent after call.start (the browser answers its consent prompt while the call is
    already queued): the same Location as call.start's. Once per call, while it is queued, offered or connected;
    the call's agent (or the agent it rings at), a joined colleague and supervisors get `call.location`."""

    type: Literal["call.location"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64, description="defaults to the current call")
    location: Location


class CallbackRequest(Request):
    """Keep my place and let me leave: I am told (callback.ready, or the integrator's webhook
    call.callback_ready) when an agent takes the call, then I rejoin with call.rejoin."""

    type: Literal["callback.request"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, min_length=3, max_length=32, pattern=r"^\+?[0-9 ().-]{3,32}$",
                              description="optional number the team may call instead; kept with the record")


class LeaveMessage(Request):
    """Instead of waiting in a closed or unstaffed queue (after queue.closed): a message for the team. Ends the call."""

    type: Literal["message.leave"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class Rejoin(Request):
    """After callback.ready: take the call back (then sdp.offer as usual). Any session with the same caller token
    subject may rejoin."""

    type: Literal["call.rejoin"]
    id: RequestId
    call_id: str = Field(min_length=1, max_length=64)


# ---------------------------------------------------------------- agent -> server
class SetStatus(Request):
    type: Literal["agent.status"]
    id: RequestId
    status: Literal["available", "away"]


class Accept(Request):
    type: Literal["call.accept"]
    id: RequestId
    call_id: CallId


class Decline(Request):
    type: Literal["call.decline"]
    id: RequestId
    call_id: CallId


class Hold(Request):
    """Put the caller on hold (nothing flows either way; the caller is told) or take them off it."""

    type: Literal["call.hold", "call.resume"]
    id: RequestId
    call_id: CallId


class Transfer(Request):
    """Blind: the call rings at `to_agent` (or goes to `to_queue`) at once and leaves you. Warm: `to_agent` is
    consulted first while the caller is on hold; finish with transfer.complete or transfer.cancel."""

    type: Literal["call.transfer"]
    id: RequestId
    call_id: CallId
    mode: Literal["blind", "warm"]
    to_agent: str | None = Field(None, min_length=1, max_length=128)
    to_queue: str | None = Field(None, min_length=1, max_length=64)


class TransferStep(Request):
    type: Literal["transfer.complete", "transfer.cancel"]
    id: RequestId
    call_id: CallId


class Supervise(Request):
    """Supervisors: monitor (listen and watch unheard), whisper (the agent hears you) or barge (both do). Then send
    sdp.offer for the call: audio section 1 = caller, audio section 2 = agent, video = the caller's."""

    type: Literal["supervise.start"]
    id: RequestId
    call_id: CallId
    mode: Literal["monitor", "whisper", "barge"]


class SuperviseStop(Request):
    type: Literal["supervise.stop"]
    id: RequestId
    call_id: CallId


class WallboardSubscribe(Request):
    """Supervisors: receive `wallboard` now and whenever queues, waiting callers, agents or calls change."""

    type: Literal["wallboard.subscribe", "wallboard.unsubscribe"]
    id: RequestId


class PushContent(Request):
    """Show something on the caller's screen: a link (url), an image (attachment_id of an uploaded image, or an
    https url) or a text card (text). The caller reports content.status seen/opened/dismissed."""

    model_config = ConfigDict(json_schema_extra={"allOf": [  # what _needs_payload checks, for schema readers
        {"if": {"properties": {"kind": {"const": "link"}}},
         "then": {"required": ["url"], "properties": {"url": {"type": "string"}}}},
        {"if": {"properties": {"kind": {"const": "image"}}},
         "then": {"anyOf": [{"required": ["attachment_id"], "properties": {"attachment_id": {"type": "string"}}},
                            {"required": ["url"], "properties": {"url": {"type": "string", "pattern": "^https://"}}}]}},
        {"if": {"properties": {"kind": {"const": "text"}}},
         "then": {"required": ["text"], "properties": {"text": {"type": "string", "minLength": 1}}}},
    ]})

    type: Literal["content.push"]
    id: RequestId
    call_id: CallId
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


class ChatSend(Request):
    """A chat line and/or a file (attachment_id from POST /api/v1/calls/{call_id}/attachments)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [  # what _something checks, for schema readers
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["attachment_id"], "properties": {"attachment_id": {"type": "string"}}},
    ]})

    type: Literal["chat.send"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    attachment_id: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")

    @model_validator(mode="after")
    def _something(self) -> "ChatSend":
        if not self.text and not self.attachment_id:
            raise ValueError("send text, an attachment, or both")
        return self


class ContentStatusIn(Request):
    type: Literal["content.status"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    content_id: str = Field(max_length=32)
    status: Literal["seen", "opened", "dismissed"]


class WrapUp(Request):
    """Submit the wrap-up of the call just ended (same as POST /api/v1/calls/{id}/wrap-up); ends wrap-up time."""

    type: Literal["wrap_up.submit"]
    id: RequestId
    call_id: CallId
    disposition: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    notes: str | None = Field(None, max_length=10_000)


class WrapUpExtend(Request):
    """The console still has an unsaved wrap-up note: keep the agent in wrap-up (no call offered) for another
    wrap_up_s, at most wrap_up_max_s after the call ended. Answered with `agent.status` (`wrap_up`, `wrap_up_s`)."""

    type: Literal["wrap_up.extend"]
    id: RequestId
    call_id: CallId


MediaSourceReason = Literal["camera_blocked", "camera_unavailable"]


class MediaSource(Request):
    """Caller: what its video section sends now (after a replaceTrack): the camera, the screen, or nothing, and with
    nothing on a call that wanted the camera, why (`reason`). The call's agent (and supervisors) get `media.source`;
    the card's `media_source` and `media_source_reason` follow it."""

    model_config = ConfigDict(json_schema_extra={  # what _reason_with_none checks, for schema readers
        "if": {"required": ["reason"], "properties": {"reason": {"type": "string"}}},
        "then": {"properties": {"source": {"const": "none"}}},
    })

    type: Literal["media.source"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64, description="defaults to the current call")
    source: Literal["camera", "screen", "none"]
    reason: MediaSourceReason | None = Field(None, description='only with "none": the camera is blocked (permission '
                                                               'denied) or unavailable (missing, busy, failed)')

    @model_validator(mode="after")
    def _reason_with_none(self) -> "MediaSource":
        if self.reason is not None and self.source != "none":
            raise ValueError('a reason goes only with source "none"')
        return self


# The agent's messages about a call always name it: the same messages as the caller's, with `call_id` required.
class AgentSdpOffer(SdpOffer):
    call_id: CallId


class AgentIceCandidate(IceCandidate):
    call_id: CallId


class AgentHangup(Hangup):
    call_id: CallId


class AgentChatSend(ChatSend):
    call_id: CallId


class RecordingConsent(Request):
    """The caller's answer to recording.state "asking": accept (the call may be recorded) or decline (nothing of
    this call is recorded)."""

    type: Literal["recording.consent"]
    id: RequestId
    call_id: str | None = Field(None, max_length=64)
    accept: bool


class RecordingControl(Request):
    """Start (queues with recording on_demand; the caller is told, or asked first), pause (nothing is recorded until
    resumed: a card number read out) or resume the call's recording. The call's agent, or a supervisor in it."""

    type: Literal["recording.start", "recording.pause", "recording.resume"]
    id: RequestId
    call_id: CallId


CallerMessage = Annotated[
    Hello | StartCall | SdpOffer | IceCandidate | Hangup | Ping | Bye | ChatSend | ContentStatusIn | CallbackRequest
    | LeaveMessage | Rejoin | MediaSource | RecordingConsent | CallLocationIn,
    Field(discriminator="type"),
]
AgentMessage = Annotated[
    Hello | SetStatus | Accept | Decline | AgentSdpOffer | AgentIceCandidate | AgentHangup | Ping | Bye | Hold
    | Transfer | TransferStep | Supervise | SuperviseStop | PushContent | AgentChatSend | WallboardSubscribe | WrapUp
    | WrapUpExtend | RecordingControl,
    Field(discriminator="type"),
]


# ---------------------------------------------------------------- server -> client
class Part(BaseModel):
    """An object inside a server message: typed, and open (a later version may add fields; clients ignore them)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True, json_schema_serialization_defaults_required=True)


CallTypeName = Literal["voice", "video", "screen"]
MediaSourceName = Literal["camera", "screen", "none"]


class ScannedCodeOut(Part):
    format: str = Field(description='the symbology, e.g. "QR Code", "EAN-13", "Code 128", "DataMatrix"')
    text: str = Field(description="what it encodes (from the caller: show it as text)")


class PhotoLocationOut(Part):
    lat: float
    lon: float


class ScanOut(Part):
    """What the gateway read in a caller's picture: codes, and the place the photo was taken (its EXIF GPS)."""

    codes: list[ScannedCodeOut]
    location: PhotoLocationOut | None = Field(description="from the photo's own metadata, not the device's "
                                                          "consented location")


class AttachmentOut(Part):
    """A file uploaded to a call; `url` is the path to download it."""

    id: str
    call_id: str
    name: str
    mime: str
    size: int
    sha256: str
    uploaded_by: str = Field(description='"caller" or the uploading staff member\'s username')
    at: float
    url: str
    scan: ScanOut | None = Field(description="a caller's picture: the codes in it and where it was taken; null for "
                                             "other files and for staff uploads")


class ConsultOut(Part):
    from_: str = Field(alias="from", description="username of the agent who asks")
    from_name: str | None


RecordingStateName = Literal["off", "asking", "pending", "recording", "paused", "declined", "stopped", "failed"]
RecordingPolicyName = Literal["off", "on_demand", "always"]
RecordingConsentName = Literal["notify", "ask"]


class RecordingOut(Part):
    """A call's recording: its state, the queue's policy and how the caller's consent is sought."""

    state: RecordingStateName
    policy: RecordingPolicyName
    consent: RecordingConsentName


class CardOut(Part):
    """What the agent sees about a call: verified identity, device location, app context, recent history."""

    call_id: str
    call_type: CallTypeName
    queue: str
    priority: int
    created_at: float
    identity: CallerIdentity
    location: Location | None
    context: CallContext
    transferred_from: str | None
    history: list[dict[str, Any]] = Field(description="the call's newest events, oldest first: {seq, at, kind, ...}")
    history_omitted: int
    callback: bool
    callback_phone: str | None
    media_source: MediaSourceName = Field(description="what the caller's video section sends now")
    media_source_reason: MediaSourceReason | None = Field(
        description="with media_source none: why a video call has no camera (camera_blocked, camera_unavailable)")
    consult: ConsultOut | None = Field(None, description="only in the call.offered of a warm transfer's consult")
    recording: RecordingOut | None = Field(None, description="the call's recording (null: not decided yet)")


class ContentOut(Part):
    content_id: str
    kind: Literal["link", "image", "text"]
    title: str | None = None
    url: str | None = None
    text: str | None = None
    attachment: AttachmentOut | None = None
    by: str
    at: float
    status: str


class ChatSenderOut(Part):
    role: Literal["caller", "agent", "supervisor"]
    name: str | None
    username: str | None = Field(None, description="staff only")


class ChatLineOut(Part):
    message_id: str
    from_: ChatSenderOut = Field(alias="from")
    text: str | None
    attachment: AttachmentOut | None
    at: float


class AgentInfoOut(Part):
    username: str
    display_name: str | None
    status: str


class SessionCallOut(Part):
    """welcome.call: a caller's {call_id, state, call_type}; an agent's {call_id, state, card}."""

    call_id: str
    state: Literal["queued", "offered", "connected"]
    call_type: CallTypeName | None = None
    card: CardOut | None = None
    connected_s: float | None = Field(None, description="an agent's connected call: seconds since it was answered "
                                      "(a reloaded console's call timer goes on from there)")


class WallboardQueueOut(Part):
    name: str
    waiting: int  # with several nodes: the callers of every node
    oldest_since: float | None
    waiting_here: int | None = None  # with several nodes: this node's callers (the ones listed in `waiting`)


class WallboardWaitingOut(Part):
    call_id: str
    queue: str
    priority: int
    call_type: CallTypeName
    caller: str
    since: float
    state: str
    ringing_at: str | None
    callback: bool


class WallboardCallOut(Part):
    call_id: str
    queue: str
    call_type: CallTypeName
    caller: str
    agent: str | None
    since: float | None
    held: bool
    consult: str | None
    supervisors: dict[str, str]


class WallboardAgentOut(Part):
    username: str
    display_name: str | None
    status: str
    call_id: str | None
    since: float | None


class Limits(Part):
    """What this gateway enforces, read from its settings (welcome.limits): clients size what they send by it."""

    max_message_bytes: int = Field(description="a client message (text frame), in bytes")
    max_sdp_bytes: int
    max_context_bytes: int = Field(description="call.start context, encoded as compact JSON")
    max_context_steps: int
    max_step_chars: int
    max_crm_fields: int
    max_crm_key_chars: int
    max_crm_value_chars: int
    max_chat_chars: int
    chat_burst: int = Field(description="chat lines a sender may send at once ...")
    chat_lines_per_minute: float = Field(description="... then this many a minute (chat_rate_limited)")
    chat_max_lines_per_call: int
    max_left_message_chars: int
    max_attachment_bytes: int
    attachments_per_call: int
    max_remote_candidates: int = Field(description="distinct ICE candidates per peer connection")
    call_starts_per_minute: int = Field(description="call.start per caller per minute (rate_limited)")
    hello_timeout_s: float
    heartbeat_s: float = Field(description="WebSocket pings; a client that does not answer is gone")
    max_pending_messages: int = Field(description="messages queued for a client that does not read them")


def limits_of(settings: Any, max_pending_messages: int) -> Limits:
    """The one place that turns settings into the limits announced in welcome."""
    return Limits(
        max_message_bytes=settings.max_message_bytes, max_sdp_bytes=settings.max_sdp_bytes,
        max_context_bytes=settings.max_context_bytes, max_context_steps=MAX_CONTEXT_STEPS,
        max_step_chars=MAX_STEP_CHARS, max_crm_fields=MAX_CRM_FIELDS, max_crm_key_chars=MAX_CRM_KEY_CHARS,
        max_crm_value_chars=MAX_CRM_VALUE_CHARS, max_chat_chars=settings.max_chat_chars,
        chat_burst=settings.chat_burst, chat_lines_per_minute=settings.chat_lines_per_minute,
        chat_max_lines_per_call=settings.chat_max_lines_per_call,
        max_left_message_chars=settings.max_left_message_chars,
        max_attachment_bytes=settings.max_attachment_bytes, attachments_per_call=settings.attachments_per_call_count,
        max_remote_candidates=settings.media_max_remote_candidates,
        call_starts_per_minute=settings.caller_call_starts_per_minute, hello_timeout_s=settings.hello_timeout_s,
        heartbeat_s=settings.ws_heartbeat_s, max_pending_messages=max_pending_messages)


class EventOut(Message):
    """A message the server sends unasked (an event): numbered in the session's sequence, for replay on resume."""

    seq: int | None = Field(None, ge=1, description="this event's number in the session (1, 2, 3 ...); "
                                                    "send the last one seen as hello.last_seq when resuming")


class IceServerOut(Message):
    urls: list[str]
    username: str | None = None
    credential: str | None = None  # TURN: minted for this session, valid for turn_credential_ttl_s


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    id: str
    protocol: int = PROTOCOL_VERSION
    session_id: str
    resume_token: str
    resumed: bool = False
    resume_grace_s: float
    ice_servers: list[IceServerOut]
    ice_transport_policy: Literal["all", "relay"] = Field(
        "all", description="RTCConfiguration.iceTransportPolicy to use: relay = only TURN relay candidates")
    max_message_bytes: int
    limits: Limits
    caller: CallerIdentity | None = Field(None, description="caller: the verified identity from the token")
    agent: AgentInfoOut | None = Field(None, description="agent: account and current status")
    call: SessionCallOut | None = Field(None, description="the session's current call, when resumed")
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
    card: CardOut
    ring_timeout_s: float


class OfferWithdrawnOut(EventOut):
    type: Literal["call.offer_withdrawn"] = "call.offer_withdrawn"
    call_id: str
    reason: str


class CallAcceptedOut(Message):
    type: Literal["call.accepted"] = "call.accepted"
    id: str
    call_id: str
    card: CardOut


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
    card: CardOut


class ContentPushedOut(EventOut):
    """To the caller: show this. `content` has content_id, kind, title, url, text, attachment (with its url)."""

    type: Literal["content.pushed"] = "content.pushed"
    call_id: str
    content: ContentOut


class ContentSent(Message):
    type: Literal["content.sent"] = "content.sent"
    id: str
    call_id: str
    content: ContentOut


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
    message: ChatLineOut


class WallboardOut(Message):
    """queues [{name, waiting, oldest_since, waiting_here}] (with several nodes `waiting` counts every node's callers
    and `waiting_here` this node's, which are the ones listed), waiting [{call_id, queue, priority, call_type, caller, since, state,
    ringing_at, callback}], calls [{call_id, queue, call_type, caller, agent, since, held, consult, supervisors}],
    agents [{username, display_name, status, call_id, since}], at. Times are UNIX seconds."""

    type: Literal["wallboard"] = "wallboard"
    id: str | None = None
    queues: list[WallboardQueueOut]
    waiting: list[WallboardWaitingOut]
    calls: list[WallboardCallOut]
    agents: list[WallboardAgentOut]
    at: float


class MediaSourceOut(EventOut):
    """To the call's agent and supervisors: the caller's video section now sends its camera, its screen, or
    nothing (the caller's media.source)."""

    type: Literal["media.source"] = "media.source"
    call_id: str
    leg: Literal["caller"] = "caller"
    source: MediaSourceName
    reason: MediaSourceReason | None = Field(None, description="with none: camera_blocked or camera_unavailable")


class CallLocationOut(EventOut):
    """To the call's agent (or the agent it rings at), a joined colleague and supervisors: the caller's device
    reported its position after the call started (call.location); the card's `location` is this from now on.
    Device-reported, not verified: show it as such, with its accuracy."""

    type: Literal["call.location"] = "call.location"
    call_id: str
    location: Location


class CallInterruptedOut(EventOut):
    """To the caller, on resuming: its connected call (`call_id`) was cut off because the node that held its media
    died (`reason` node_lost); the caller waits again, at the front of the line, in a new call (`rejoined_call_id`,
    also in welcome.call): send a new sdp.offer for it, as for any waiting call. Nothing to answer."""

    type: Literal["call.interrupted"] = "call.interrupted"
    call_id: str
    rejoined_call_id: str
    reason: Literal["node_lost"] = "node_lost"


class CallRingingOut(EventOut):
    """To the caller: its call rings at an agent now (`ringing` true, with the agent's display name), or that ring
    ended without an answer (`ringing` false: missed, declined, the agent went away) and the call waits again.
    An answer is call.answered, not call.ringing false."""

    type: Literal["call.ringing"] = "call.ringing"
    call_id: str
    ringing: bool
    agent_name: str | None = None


class CallBargeOut(EventOut):
    """To the caller: a supervisor joined the conversation (barge: the caller hears them; `active` true, with their
    display name) or stopped speaking in it (`active` false). Silent monitoring and whispering to the agent are
    not told."""

    type: Literal["call.barge"] = "call.barge"
    call_id: str
    active: bool
    name: str | None = None


class TranscriptNoticeOut(EventOut):
    """The call is transcribed from now on (`active` true: what everyone says is turned into text, redacted, kept
    with the call record), or no longer. To the caller before anything is transcribed, and to the agent.
    `captions`: this recipient is sent the captions (caption messages)."""

    type: Literal["transcript.notice"] = "transcript.notice"
    call_id: str
    active: bool
    captions: bool = False


class CaptionSpeaker(Message):
    role: Literal["caller", "agent", "supervisor", "colleague"]
    name: str = Field(max_length=256)


class CaptionOut(EventOut):
    """What someone in the call said, as recognised, card numbers and long digit runs redacted. A partial result
    (`final` false) is replaced by the next caption of the same speaker role and name and `utterance`; the final
    one settles it. Plain text: show it as text, never as HTML. Times: seconds from the start of the transcript."""

    type: Literal["caption"] = "caption"
    call_id: str
    speaker: CaptionSpeaker
    utterance: int = Field(ge=1)
    text: str = Field(max_length=10_000)
    final: bool
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)


class ParticipantOut(EventOut):
    """The other side of the call lost its socket (reconnecting) or got its session back (reconnected); with cause
    "media", it is setting its media up again with a new peer connection (a network change) / its media is back."""

    type: Literal["participant.reconnecting", "participant.reconnected"]
    call_id: str
    role: Literal["caller", "agent"]
    name: str | None = None
    cause: Literal["socket", "media"] = "socket"


class RecordingStateOut(EventOut):
    """To the caller and the call's staff: the call's recording state changed. `pending`: the call will be recorded
    once answered (the caller is told before anything is recorded); `asking`: the caller is asked and answers with
    recording.consent; `recording`, `paused` (nothing is recorded until resumed), `declined` (the caller declined:
    nothing is recorded), `stopped` (the call ended), `failed` (the recorder could not start), `off`.
    `by`: who changed it (caller, agent, api, system)."""

    type: Literal["recording.state"] = "recording.state"
    call_id: str
    state: RecordingStateName
    policy: RecordingPolicyName
    consent: RecordingConsentName
    by: Literal["caller", "agent", "api", "system"] | None = None


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
    | ParticipantOut | ShutdownOut | MediaSourceOut | CallRingingOut | CallBargeOut | RecordingStateOut
    | TranscriptNoticeOut | CaptionOut | CallInterruptedOut | CallLocationOut,
    Field(discriminator="type"),
]

caller_adapter: TypeAdapter[Any] = TypeAdapter(CallerMessage)
agent_adapter: TypeAdapter[Any] = TypeAdapter(AgentMessage)
server_adapter: TypeAdapter[Any] = TypeAdapter(ServerMessage)


class ProtocolError(BadRequest):
    code = "bad_message"


ROLE_OF = {id(caller_adapter): "caller", id(agent_adapter): "agent"}
TYPES_OF = {"caller": set(caller_adapter.json_schema()["discriminator"]["mapping"]),
            "agent": set(agent_adapter.json_schema()["discriminator"]["mapping"])}
MAX_PROBLEMS = 3  # named in one error's reason; one bad frame gets one error
_UNION_TAG = ("int", "float", "bool", "str", "none", "list", "dict", "constrained-str", "function-after",
              "function-before", "function-wrap", "lax-or-strict", "json-or-python", "literal")


def _shown(value: Any, limit: int = 40) -> str:
    """A value as the client sent it (JSON), shortened: never a Python repr."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = "that value"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(the field's dotted path, its own name) from a pydantic location; union member tags are left out."""
    parts: list[str] = []
    for item in loc[1:]:  # loc[0]: the message type (the discriminator's tag)
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item == "[key]":
            parts.append("(a key)")
        elif item.split("[", 1)[0] in _UNION_TAG or item[:1].isupper():
            continue
        else:
            parts.append(("." if parts else "") + item)
    path = "".join(parts).replace(".[", "[").replace(".(a key)", " (a key)")
    own = next((item for item in reversed(loc[1:]) if isinstance(item, str) and item.split("[", 1)[0]
                not in _UNION_TAG and not item[:1].isupper() and item != "[key]"), "")
    return path or "the message", own


def _problem(error: Any, kind: str) -> str:
    """One validation error, said for a person."""
    where, own = _where(tuple(error["loc"]))
    ctx = error.get("ctx") or {}
    code = error["type"]
    simple = {
        "missing": f"{where} is required",
        "string_type": f"{where} must be a string",
        "int_type": f"{where} must be an integer (a JSON number without a fraction, not a string)",
        "int_from_float": f"{where} must be an integer",
        "float_type": f"{where} must be a number (not a string)",
        "bool_type": f"{where} must be true or false (not a number or a string)",
        "dict_type": f"{where} must be an object",
        "model_type": f"{where} must be an object",
        "model_attributes_type": f"{where} must be an object",
        "list_type": f"{where} must be an array",
        "finite_number": f"{where} must be a finite number",
        "none_required": f"{where} must be null",
    }
    if code in simple:
        return simple[code]
    if code == "extra_forbidden":
        return f"{where} is not a field of {kind} (unknown fields are refused)"
    if code in ("literal_error", "enum"):
        expected = re.sub(r"<\w+\.\w+: ('[^']*')>", r"\1", str(ctx.get("expected", "one of the listed values")))
        return f"{where} must be {expected}, not {_shown(error.get('input'))}"
    if code == "string_too_short":
        low = ctx.get("min_length", 1)
        return f"{where} must not be empty" if low == 1 else f"{where} must have at least {low} characters"
    if code == "string_too_long":
        return f"{where} must have at most {ctx.get('max_length')} characters"
    if code in ("too_long", "too_short"):
        bound = ctx.get("max_length") if code == "too_long" else ctx.get("min_length")
        return f"{where} must have at {'most' if code == 'too_long' else 'least'} {bound} entries"
    if code == "string_pattern_mismatch":
        return f"{where} must be {PATTERN_HINTS.get(own, 'in the documented form')}"
    bounds = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
              "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}
    if code in bounds:
        key, words = bounds[code]
        return f"{where} must be {words} {ctx.get(key)}"
    if code == "value_error":
        return f"{ctx.get('error', error['msg'])}" if where == "the message" else f"{where}: {ctx.get('error')}"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Input should be ")
    return f"{where}: {message}"


def explain(exc: ValidationError, kind: str) -> str:
    """Every problem of a message in one reason (the first MAX_PROBLEMS, then how many more)."""
    problems: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    for error in exc.errors():
        where = _where(tuple(error["loc"]))[0]
        if where in {w for w, *_ in seen}:  # one problem per field (a union reports one per member)
            continue
        seen.add((where,))
        problems.append(_problem(error, kind))
    reason = "; ".join(problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        reason += f" (and {len(problems) - MAX_PROBLEMS} more)"
    return reason


def parse(adapter: TypeAdapter[Any], raw: str | bytes, max_bytes: int) -> Any:
    """Size check, JSON check, then schema validation; each failure one ProtocolError with a stable code and a
    reason for a person."""
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
        raise ProtocolError("a message is a JSON object, like {\"type\": \"ping\", \"id\": \"r1\"}",
                            code="bad_message")
    role = ROLE_OF.get(id(adapter))
    kind = data.get("type")
    if "type" not in data:
        raise ProtocolError("a message needs a \"type\"", code="unknown_type")
    if not isinstance(kind, str):
        raise ProtocolError(f"type must be a string, not {_shown(kind)}", code="unknown_type")
    if role is not None and kind not in TYPES_OF[role]:
        other = "agent" if role == "caller" else "caller"
        why = f"{kind} is a message of the {other} socket, not of this one" if kind in TYPES_OF[other] \
            else f"unknown message type {_shown(kind)}"
        raise ProtocolError(why, code="unknown_type")
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        if exc.errors()[0]["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise ProtocolError(f"unknown message type {_shown(kind)}", code="unknown_type") from None
        raise ProtocolError(f"{kind}: {explain(exc, kind)}", code="invalid_message") from None


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


def _open(schema: Any) -> Any:
    """The server -> client part: no `additionalProperties: false` anywhere (clients ignore fields they do not know,
    and a later version may add some)."""
    if isinstance(schema, dict):
        return {key: _open(value) for key, value in schema.items()
                if not (key == "additionalProperties" and value is False)}
    if isinstance(schema, list):
        return [_open(value) for value in schema]
    return schema


def _nullable_when_optional(schema: dict[str, Any]) -> dict[str, Any]:
    """A client -> server part: every optional field also takes null (the server reads it as absent)."""
    for definition in schema.get("$defs", {}).values():
        required = set(definition.get("required", ()))
        for name, prop in definition.get("properties", {}).items():
            if name in required or _allows_null(prop):
                continue
            extra = {key: prop.pop(key) for key in ("default", "description", "title") if key in prop}
            definition["properties"][name] = {"anyOf": [dict(prop), {"type": "null"}], **extra}
    return schema


def _allows_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(item.get("type") == "null" for item in prop.get("anyOf", ()))


def _seq_optional(schema: dict[str, Any]) -> dict[str, Any]:
    """`seq` is spliced into each event as it is delivered; examples and recorded traffic may leave it out."""
    for definition in schema.get("$defs", {}).values():
        if "seq" in definition.get("required", ()):
            definition["required"] = [name for name in definition["required"] if name != "seq"]
    return schema


def json_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Callin signaling protocol",
        "version": PROTOCOL_VERSION,
        "description": "caller_to_server and agent_to_server: what the server accepts (unknown fields are refused, "
                       "values are not coerced, null for an optional field is the same as leaving it out); "
                       "server_to_client: what it sends (objects may gain fields: ignore the ones you do not know).",
        "caller_to_server": _nullable_when_optional(caller_adapter.json_schema()),
        "agent_to_server": _nullable_when_optional(agent_adapter.json_schema()),
        "server_to_client": _seq_optional(_open(server_adapter.json_schema(mode="serialization"))),
    }
