"""Value objects of the call domain. They validate themselves; none of them knows HTTP or RTP."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import strictjson


class CallType(StrEnum):
    VOICE = "voice"
    VIDEO = "video"
    SCREEN = "screen"

    @property
    def has_video(self) -> bool:
        return self is not CallType.VOICE


class CallState(StrEnum):
    QUEUED = "queued"
    OFFERED = "offered"  # ringing at one agent
    CONNECTED = "connected"
    ENDED = "ended"


class EndReason(StrEnum):
    CALLER_HANGUP = "caller_hangup"
    AGENT_HANGUP = "agent_hangup"
    CALLER_GONE = "caller_disconnected"
    AGENT_GONE = "agent_disconnected"
    MEDIA_FAILED = "media_failed"
    SHUTDOWN = "shutdown"
    QUEUE_FULL = "queue_full"
    MESSAGE_LEFT = "message_left"  # the caller left a message instead of waiting
    CALLBACK_EXPIRED = "callback_expired"  # an agent took the callback but the caller did not rejoin in time
    REPLACED = "replaced"  # the same caller started a new call, which took this one's place in line
    RECORDS_UNAVAILABLE = "records_unavailable"  # the call's record could not be written in time: not queued


class AgentStatus(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    AWAY = "away"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"  # after a call: notes and disposition, then available


# Limits of the app context a caller sends (announced in `welcome.limits`, published in the JSON Schema).
MAX_CONTEXT_STEPS = 50
MAX_STEP_CHARS = 256
MAX_CRM_FIELDS = 64
MAX_CRM_KEY_CHARS = 64
MAX_CRM_VALUE_CHARS = 1024


def null_is_absent(model: type[BaseModel], data: Any) -> Any:
    """A JSON `null` for an optional field reads as if the field were absent (mobile JSON encoders write nulls): the
    field gets its default. A null for a required field stays, and is refused."""
    if not isinstance(data, dict):
        return data
    fields = model.model_fields
    if not any(value is None and key in fields and not fields[key].is_required() for key, value in data.items()):
        return data
    return {key: value for key, value in data.items()
            if not (value is None and key in fields and not fields[key].is_required())}


class Frozen(BaseModel):
    """No NaN or Infinity and no unpaired surrogates anywhere inside: what these hold is written to records, cards
    and webhook bodies as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_json(cls, data: Any) -> Any:
        if isinstance(data, dict):
            strictjson.check(data)
        return null_is_absent(cls, data)


class CallerIdentity(Frozen):
    """Who the caller is, taken only from a verified token (never from what the device says)."""

    subject: str = Field(min_length=1, max_length=256)
    name: str | None = Field(None, max_length=256)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    issuer: str | None = Field(None, max_length=256)
    claims: dict[str, str | int | float | bool] = Field(default_factory=dict)
    verified: bool = True
    expires_at: int

    @field_validator("claims")
    @classmethod
    def _claims_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 32:
            raise ValueError("at most 32 extra claims")
        for key, item in value.items():
            if len(key) > 64 or (isinstance(item, str) and len(item) > 512):
                raise ValueError("claim key or value too long")
        return value


class Location(Frozen):
    """Device-reported position, sent with the caller's consent. Never verified by the gateway."""

    model_config = ConfigDict(strict=True)  # read from the wire: no "1" for 1

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=1_000_000)
    timestamp: float = Field(description="when the device measured it, UNIX seconds")
    source: Literal["device"] = "device"


CrmKey = Annotated[str, Field(min_length=1, max_length=MAX_CRM_KEY_CHARS)]
CrmValue = Annotated[str, Field(max_length=MAX_CRM_VALUE_CHARS)] | int | float | bool | None


class CallContext(Frozen):
    """What the caller was doing in the app."""

    model_config = ConfigDict(strict=True)  # read from the wire: no "1" for 1

    screen: str | None = Field(None, max_length=256, description="the screen the user was on")
    steps: list[Annotated[str, Field(max_length=MAX_STEP_CHARS)]] = Field(
        default_factory=list, max_length=MAX_CONTEXT_STEPS, description="recent self-service steps, oldest first")
    crm: dict[CrmKey, CrmValue] = Field(default_factory=dict, max_length=MAX_CRM_FIELDS,
                                        description="fields for the agent (account number, plan ...)")

    def encoded_size(self) -> int:
        return len(json.dumps(self.model_dump(), separators=(",", ":")).encode())


class CallEvent(Frozen):
    at: float
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)


def now() -> float:
    return time.time()
