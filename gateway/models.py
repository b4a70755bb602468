"""Value objects of the call domain. They validate themselves; none of them knows HTTP or RTP."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any, Literal

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


class Frozen(BaseModel):
    """No NaN or Infinity and no unpaired surrogates anywhere inside: what these hold is written to records, cards
    and webhook bodies as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_json(cls, data: Any) -> Any:
        if isinstance(data, dict):
            strictjson.check(data)
        return data


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

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(ge=0, le=1_000_000)
    timestamp: float = Field(description="when the device measured it, UNIX seconds")
    source: Literal["device"] = "device"


class CallContext(Frozen):
    """What the caller was doing in the app."""

    screen: str | None = Field(None, max_length=256)
    steps: list[str] = Field(default_factory=list, max_length=50)
    crm: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[str]) -> list[str]:
        for step in value:
            if len(step) > 256:
                raise ValueError("a step is at most 256 characters")
        return value

    @field_validator("crm")
    @classmethod
    def _crm(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 64:
            raise ValueError("at most 64 CRM fields")
        for key, item in value.items():
            if not key or len(key) > 64:
                raise ValueError("CRM field names are 1-64 characters")
            if isinstance(item, str) and len(item) > 1024:
                raise ValueError(f"CRM field {key!r} is longer than 1024 characters")
        return value

    def encoded_size(self) -> int:
        return len(json.dumps(self.model_dump(), separators=(",", ":")).encode())


class CallEvent(Frozen):
    at: float
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)


def now() -> float:
    return time.time()
