"""Settings: CALLIN_* environment variables, optionally a TOML file (CALLIN_CONFIG_FILE)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


class IceServer(BaseModel):
    """One entry of RTCConfiguration.iceServers, handed to clients and used by the relay."""

    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None

    @field_validator("urls")
    @classmethod
    def _schemes(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"ICE server URL must start with stun:, turn: or turns: ({url!r})")
        return urls


class DemoAgent(BaseModel):
    username: str
    password: str
    display_name: str
    role: Literal["agent", "supervisor", "admin"] = "agent"
    skills: list[str] = Field(default_factory=list)
    capacity: int = Field(1, ge=1, le=10)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
QUEUE_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SKILL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SPAN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def check_skills(values: list[str]) -> list[str]:
    for value in values:
        if not SKILL.match(value):
            raise ValueError(f"a skill is 1-64 letters, digits or _ . : - (not {value!r})")
    return sorted(set(values))


def parse_span(text: str) -> tuple[int, int]:
    """"HH:MM-HH:MM" -> (start minute, end minute) of the day; the end may be 24:00."""
    match = _SPAN.match(text)
    if not match:
        raise ValueError(f"opening hours are 'HH:MM-HH:MM' (not {text!r})")
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if end > 24 * 60 or end <= start:
        raise ValueError(f"the span {text!r} must end after it starts, at 24:00 at the latest")
    return start, end


class PriorityRule(BaseModel):
    """A call whose token has claim `claim` equal to `equals` gets at least `priority` (higher is answered first)."""

    model_config = {"extra": "forbid"}

    claim: str = Field(min_length=1, max_length=64)
    equals: str | int | bool
    priority: int = Field(ge=-100, le=100)


class QueueConfig(BaseModel):
    """One queue: who may answer it (skills), when it is open, and what callers are told when it is not."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=QUEUE_NAME)
    display_name: str | None = Field(None, max_length=128)
    skills: list[str] = Field(default_factory=list, max_length=32,
                              description="an agent needs every one of them to be offered this queue's calls")
    timezone: str = Field("UTC", description="IANA zone of the opening hours, e.g. Europe/Paris")
    hours: dict[Weekday, list[str]] = Field(
        default_factory=dict,
        description="weekday -> spans 'HH:MM-HH:MM' in the queue's time zone; empty: always open; "
                    "a weekday left out is closed all day",
    )
    holidays: list[date] = Field(default_factory=list, max_length=366, description="closed all day (local dates)")
    max_wait_s: float | None = Field(None, gt=0, description="past it, the caller is offered a callback or a message")
    callback_threshold_s: float | None = Field(
        None, ge=0, description="offer a callback when the estimated wait exceeds this; None: never offered")
    callbacks: bool = Field(True, description="callers may ask to be called back")
    messages: bool = Field(True, description="callers may leave a message when the queue is closed or unstaffed")
    after_hours_message: str = Field("We are closed right now.", max_length=1000)
    closed_message: str = Field("Nobody can take your call right now.", max_length=1000,
                                description="told when the queue is open but no agent with its skills is staffed")
    max_wait_message: str = Field("Sorry for the long wait.", max_length=1000)
    priority_rules: list[PriorityRule] = Field(default_factory=list, max_length=32)

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        return check_skills(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for spans in value.values():
            if len(spans) > 8:
                raise ValueError("at most 8 spans a day")
            for span in spans:
                parse_span(span)
        return value

    @property
    def title(self) -> str:
        return self.display_name or self.name


class Settings(BaseSettings):
    """Every knob of the gateway. Read from CALLIN_* env vars and an optional TOML file."""

    model_config = SettingsConfigDict(env_prefix="CALLIN_", env_nested_delimiter="__", extra="forbid")

    # -- server
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(None, description="URL clients use to reach the gateway, for printed links")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    web_root: Path = REPO_ROOT / "web"
    demo: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    shutdown_grace_s: float = Field(5.0, ge=0)
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="auto: uvloop when installed (the relay's per-packet work is mostly event-loop work)"
    )

    # -- caller tokens (JWT signed by the integrator's backend)
    caller_token_secret: SecretStr | None = Field(None, description="HS256 shared secret")
    caller_token_public_key: str | None = Field(None, description="PEM public key for RS256/ES256")
    caller_token_public_key_file: Path | None = None
    caller_token_audience: str = "callin"
    caller_token_issuer: str | None = None
    caller_token_leeway_s: int = Field(30, ge=0, le=600)
    caller_token_max_ttl_s: int = Field(24 * 3600, ge=60, description="tokens valid for longer are refused")

    # -- agents
    agent_session_ttl_s: int = Field(12 * 3600, ge=60)
    agent_secret: SecretStr | None = Field(None, description="signs agent session tokens; random per process if unset")
    demo_agents: list[DemoAgent] = Field(
        default_factory=lambda: [
            DemoAgent(username="alice", password="alice-demo", display_name="Alice (demo agent)",
                      skills=["billing", "general"]),
            DemoAgent(username="bob", password="bob-demo", display_name="Bob (demo agent)",
                      skills=["general", "tech"]),
            DemoAgent(username="sam", password="sam-demo", display_name="Sam (demo supervisor)", role="supervisor",
                      skills=["billing", "general", "tech"]),
            DemoAgent(username="admin", password="admin-demo", display_name="Admin (demo)", role="admin"),
        ]
    )

    # -- storage (records, accounts, API keys, webhooks)
    data_dir: Path = Field(Path("data"), description="folder of the embedded SQLite database")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db; default SQLite in data_dir"
    )
    node_name: str = Field(default_factory=socket.gethostname,
                           description="this node's name in call records; open records of this node are closed "
                                       "as interrupted when it starts")
    migrate_on_start: bool = Field(True, description="apply schema migrations when the server starts")

    # -- accounts and access
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open the agent WebSocket besides the gateway's own (CSWSH protection)",
    )
    password_hash_time_cost: int = Field(3, ge=1, le=20, description="argon2id iterations")
    password_hash_memory_kib: int = Field(64 * 1024, ge=1024, description="argon2id memory")
    session_cookie_name: str = "callin_session"

    # -- webhooks
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    webhook_retry_base_s: float = Field(2.0, gt=0, le=600, description="backoff: base * 4**(attempt-1)")
    webhook_queue_size: int = Field(10_000, ge=10)

    # -- calls
    ring_timeout_s: float = Field(20.0, gt=0, le=600)
    reoffer_after_decline_s: float = Field(
        15.0, ge=0, le=3600, description="when every agent who could take a call passed on it, ring again after this")
    resume_grace_s: float = Field(30.0, ge=0, le=3600)
    hello_timeout_s: float = Field(10.0, gt=0, le=120)
    max_queue_length: int = Field(1000, ge=1)
    # -- queue positions (issue 9: a queue of 10,000)
    position_update_interval_s: float = Field(
        1.0, ge=0, le=60, description="a waiting caller is told its changed position at most this often (the first "
                                      "and the last change always; 0: every change at once)")
    ring_outs_before_away: int = Field(2, ge=1, le=20,
                                       description="calls an agent lets ring out in a row before being set away")
    wrap_up_s: float = Field(0.0, ge=0, le=3600,
                             description="after a call the agent stays in wrap-up this long (0: available at once)")
    callback_rejoin_s: float = Field(120.0, gt=0, le=3600,
                                     description="how long an accepted callback waits for the caller to rejoin")
    max_left_message_chars: int = Field(2000, ge=1, le=2000, description="the protocol caps it at 2000")

    # -- queues (the queue "default" always exists; configure it here to change its hours or messages)
    queues: list[QueueConfig] = Field(default_factory=list)

    # -- protocol limits
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=4 * 1024 * 1024)
    max_sdp_bytes: int = Field(32 * 1024, ge=1024, le=32 * 1024, description="the protocol caps it at 32 KiB")
    max_context_bytes: int = Field(8 * 1024, ge=256)
    max_attachment_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    max_chat_chars: int = Field(2000, ge=1, le=2000, description="the protocol caps it at 2000")

    # -- media / network
    ice_servers: list[IceServer] = Field(default_factory=list)
    media_host_addresses: list[str] = Field(
        default_factory=list,
        description="addresses the relay gathers host candidates on; empty = all non-loopback interfaces",
    )
    media_announced_address: str | None = Field(
        None, description="public address announced instead of the gathered one (1:1 NAT)"
    )
    video_codecs: list[Literal["VP8", "H264"]] = Field(default_factory=lambda: ["VP8", "H264"], min_length=1)
    video_queue_frames: int = Field(30, ge=2, le=600)
    audio_queue_frames: int = Field(10, ge=2, le=600)
    keyframe_request_interval_s: float = Field(0.3, ge=0.0, le=10)
    relay_lean_receive: bool = Field(True, description="packet mode: skip aiortc's decoder-only receive work")
    relay_mode: Literal["packet", "frame", "transcode"] = Field(
        "packet",
        description="packet: forward RTP packets as they arrive (~1 ms); frame: whole encoded frames; "
        "transcode: decode and re-encode (aiortc's stock MediaRelay path, a core per few calls)",
    )

    @field_validator("media_host_addresses")
    @classmethod
    def _ips(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_address(value)
        return values

    @field_validator("media_announced_address")
    @classmethod
    def _announced(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @model_validator(mode="after")
    def _queues(self) -> "Settings":
        names = [q.name for q in self.queues]
        if len(names) != len(set(names)):
            raise ValueError("queue names must be unique")
        if "default" not in names:
            self.queues.insert(0, QueueConfig(name="default", display_name="Default"))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CALLIN_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # -- derived
    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file else "http"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'callin.db'}"

    def caller_public_key(self) -> str | None:
        if self.caller_token_public_key:
            return self.caller_token_public_key
        if self.caller_token_public_key_file:
            return self.caller_token_public_key_file.read_text()
        return None


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
