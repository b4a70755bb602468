"""What the SDK reads from the gateway, validated with pydantic before anything acts on it.

Only the fields the SDK uses are declared; unknown fields and unknown message types are ignored, as
docs/protocol.md asks of clients, so that later additions to the protocol do not break the SDK. Frames are
size-limited before they are parsed (`MAX_SERVER_MESSAGE_BYTES`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import CallinError

MAX_SERVER_MESSAGE_BYTES = 1 << 20  # a welcome with a long card history stays far below this
Short = Field(max_length=256)


class ServerMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str = Field(max_length=64)
    id: str | None = Field(None, max_length=64)
    seq: int | None = Field(None, ge=0)


class IceServer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    urls: list[str] = Field(max_length=16)
    username: str | None = None
    credential: str | None = None


class WelcomeCall(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    call_id: str = Field(max_length=64)
    state: str = Field(max_length=32)
    call_type: str | None = Field(None, max_length=16)


class Welcome(ServerMessage):
    type: Literal["welcome"]
    session_id: str = Field(max_length=128)
    resume_token: str = Field(max_length=256)
    resumed: bool = False
    resume_grace_s: float = Field(ge=0)
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=16)
    max_message_bytes: int = Field(65536, gt=0)
    caller: dict[str, Any] | None = None
    call: WelcomeCall | None = None
    replayed: int = 0
    replay_complete: bool = True


class ErrorMessage(ServerMessage):
    type: Literal["error"]
    code: str = Field(max_length=64)
    reason: str = Field("", max_length=4096)
    retryable: bool = False
    detail: dict[str, Any] | None = None

    def error(self) -> CallinError:
        return CallinError(self.code, self.reason or self.code, retryable=self.retryable, detail=self.detail)


class CallQueued(ServerMessage):
    type: Literal["call.queued"]
    call_id: str = Field(max_length=64)
    position: int
    queue_length: int
    estimated_wait_s: int | None = None
    queue: str = Field(max_length=128)


class QueuePosition(ServerMessage):
    type: Literal["queue.position"]
    call_id: str = Field(max_length=64)
    position: int
    queue_length: int
    estimated_wait_s: int | None = None
    queue: str = Field(max_length=128)


class SdpAnswer(ServerMessage):
    type: Literal["sdp.answer"]
    call_id: str | None = Field(None, max_length=64)
    sdp: str = Field(max_length=65536)


class CallAnswered(ServerMessage):
    type: Literal["call.answered"]
    call_id: str = Field(max_length=64)
    agent_name: str = Short


class CallEnded(ServerMessage):
    type: Literal["call.ended"]
    call_id: str = Field(max_length=64)
    reason: str = Field(max_length=64)
    by: str = Field(max_length=256)
    duration_s: float | None = None


class MediaState(ServerMessage):
    type: Literal["media.state"]
    call_id: str = Field(max_length=64)
    leg: str = Field(max_length=256)
    state: str = Field(max_length=32)


class MediaVideo(ServerMessage):
    type: Literal["media.video"]
    call_id: str = Field(max_length=64)
    leg: str = Field(max_length=256)
    state: str = Field(max_length=32)
    reason: str = Field("", max_length=64)


class ChatMessage(ServerMessage):
    type: Literal["chat.message"]
    call_id: str = Field(max_length=64)
    message: dict[str, Any]


class ContentPushed(ServerMessage):
    type: Literal["content.pushed"]
    call_id: str = Field(max_length=64)
    content: dict[str, Any]


class CallHeld(ServerMessage):
    type: Literal["call.held"]
    call_id: str = Field(max_length=64)
    held: bool


class CallTransferring(ServerMessage):
    type: Literal["call.transferring"]
    call_id: str = Field(max_length=64)
    mode: str | None = Field(None, max_length=32)


class QueueClosed(ServerMessage):
    type: Literal["queue.closed"]
    call_id: str = Field(max_length=64)
    reason: str | None = Field(None, max_length=64)
    message: str | None = Field(None, max_length=4096)


class Participant(ServerMessage):
    type: Literal["participant.reconnecting", "participant.reconnected"]
    call_id: str = Field(max_length=64)
    role: str = Field(max_length=32)
    name: str | None = Field(None, max_length=256)
    cause: str = Field("socket", max_length=16)  # socket, media


class CallRinging(ServerMessage):
    type: Literal["call.ringing"]
    call_id: str = Field(max_length=64)
    ringing: bool
    agent_name: str | None = Field(None, max_length=256)


class CallBarge(ServerMessage):
    type: Literal["call.barge"]
    call_id: str = Field(max_length=64)
    active: bool
    name: str | None = Field(None, max_length=256)


class TranscriptNotice(ServerMessage):
    type: Literal["transcript.notice"]
    call_id: str = Field(max_length=64)
    active: bool
    captions: bool = False


class Caption(ServerMessage):
    type: Literal["caption"]
    call_id: str = Field(max_length=64)
    speaker: dict[str, Any]
    utterance: int = Field(ge=1)
    text: str = Field(max_length=10_000)
    final: bool


class CallInterrupted(ServerMessage):
    type: Literal["call.interrupted"]
    call_id: str = Field(max_length=64)
    rejoined_call_id: str = Field(min_length=1, max_length=64)
    reason: str = Field("node_lost", max_length=64)


class Shutdown(ServerMessage):
    type: Literal["shutdown"]
    reason: str = Field("", max_length=4096)
    retry_after_s: float = Field(5.0, ge=0, le=3600)
    resume: bool = False  # this caller's place in line is kept across the restart: resume, do not start over


KNOWN: dict[str, type[ServerMessage]] = {
    "welcome": Welcome, "error": ErrorMessage, "call.queued": CallQueued, "queue.position": QueuePosition,
    "sdp.answer": SdpAnswer, "call.answered": CallAnswered, "call.ended": CallEnded, "media.state": MediaState,
    "media.video": MediaVideo, "chat.message": ChatMessage, "content.pushed": ContentPushed, "call.held": CallHeld,
    "call.transferring": CallTransferring, "queue.closed": QueueClosed, "participant.reconnecting": Participant,
    "participant.reconnected": Participant, "shutdown": Shutdown, "call.ringing": CallRinging,
    "call.barge": CallBarge, "transcript.notice": TranscriptNotice, "caption": Caption,
    "call.interrupted": CallInterrupted,
}


def parse(text: str) -> ServerMessage:
    """One text frame from the gateway as a validated message; CallinError("bad_server_message") otherwise.
    Message types the SDK does not know come back as a plain ServerMessage (ignored by the caller)."""
    if len(text) > MAX_SERVER_MESSAGE_BYTES:
        raise CallinError("bad_server_message", f"a message of {len(text)} characters is over the SDK's limit")
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise CallinError("bad_server_message", "the gateway sent JSON that is not an object")
        model = KNOWN.get(raw.get("type")) if isinstance(raw.get("type"), str) else None
        return (model or ServerMessage).model_validate(raw)
    except (ValueError, ValidationError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in first["loc"]) if first else ""
        why = f"{first['msg']} at {where}" if first else "it is not valid JSON"
        raise CallinError("bad_server_message", f"the gateway sent a message the SDK cannot read: {why}") from None
