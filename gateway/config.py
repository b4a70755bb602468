"""Settings: CALLIN_* environment variables, optionally a TOML file (CALLIN_CONFIG_FILE)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from datetime import date
import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_web_root() -> Path:
    """The static pages (console, caller widget, demo): web/ beside the code in a source checkout, else the copy
    installed with the package (the data package `callin_web`, see pyproject.toml)."""
    beside = REPO_ROOT / "web"
    if (beside / "caller" / "callin-widget.js").is_file():
        return beside
    # callin_web holds no Python module: a namespace package, which may have several portions on sys.path (an
    # editable install of a checkout beside an installed wheel); the first one that has the pages wins.
    try:
        spec = importlib.util.find_spec("callin_web")
    except (ImportError, ValueError):
        return beside
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        root = Path(location)
        if (root / "caller" / "callin-widget.js").is_file():
            return root
    return beside

# Remote ICE candidates the relay never sends to unless the operator says otherwise: link-local, where the cloud
# metadata services live (169.254.169.254: AWS, GCP, Azure, OpenStack; fd00:ec2::254: AWS over IPv6), and
# Alibaba Cloud's metadata address.
DEFAULT_DENIED_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(text: str) -> str:
    """An origin as browsers send it in the Origin header: scheme://host[:port], lower case, no default port, no path.
    '*' (every origin) and 'scheme://*.domain[:port]' (its subdomains) are kept as patterns."""
    text = text.strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"an origin is http(s)://host[:port], e.g. https://shop.example.com (not {text!r})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"an origin has no path, query or user name: {text!r} (e.g. https://shop.example.com)")
    host = parts.hostname.lower()
    if "*" in host and not (host.startswith("*.") and "*" not in host[2:] and "." in host[2:]):
        raise ValueError(f"a wildcard origin is scheme://*.domain, e.g. https://*.example.com (not {text!r})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port of {text!r} is not a number from 1 to 65535") from None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


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

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    claim: str = Field(min_length=1, max_length=64)
    equals: str | int | bool
    priority: int = Field(ge=-100, le=100)


class QueueConfig(BaseModel):
    """One queue: who may answer it (skills), when it is open, and what callers are told when it is not."""

    model_config = {"extra": "forbid", "allow_inf_nan": False}

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
    recording: Literal["off", "on_demand", "always"] = Field(
        "off", description="off: never recorded; on_demand: the agent starts it (recording.start); always: every "
                           "answered call (docs/recording.md)")
    recording_consent: Literal["notify", "ask"] = Field(
        "notify", description="notify: the caller is told before recording starts; ask: the caller is asked and may "
                              "decline (then nothing is recorded)")
    recording_mixed_audio: bool = Field(
        False, description="one mixed audio track instead of one per participant (decodes audio; video is never "
                           "re-encoded)")
    transcript: Literal["off", "on"] = Field(
        "off", description="on: what is said in this queue's answered calls is transcribed (the caller is told), "
                           "shown to the agent as captions, stored with the call record")
    caller_captions: bool | None = Field(
        None, description="with transcript on: the caller sees the captions too; unset: the transcript_caller_captions "
                          "setting")

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

    model_config = SettingsConfigDict(env_prefix="CALLIN_", env_nested_delimiter="__", extra="forbid",
                                      allow_inf_nan=False)

    # -- server
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = Field(None, description="URL clients use to reach the gateway, for printed links")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    web_root: Path = Field(default_factory=default_web_root,
                           description="folder of the static pages; default: the copy installed with the package")
    demo: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    shutdown_grace_s: float = Field(
        3.0, ge=0, le=60,
        description="on SIGTERM: how long the sockets get to take their shutdown message and close (1001) "
                    "before the rest is cut; the whole stop stays within this plus about a second")
    # -- graceful shutdown (issue 9)
    shutdown_retry_after_s: float = Field(
        5.0, ge=0, le=3600, description="the retry-after hint in the shutdown message sent to every socket")
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="auto: uvloop when installed (the relay's per-packet work is mostly event-loop work)"
    )
    # -- HTTP hardening (hostile callers and outsiders)
    http_header_timeout_s: float = Field(
        15.0, gt=0, le=600, description="a client must send a complete request head within this of connecting (or "
                                        "of its previous response); idle keep-alive connections close after it too")
    hsts_max_age_s: int = Field(
        180 * 24 * 3600, ge=0, description="Strict-Transport-Security max-age sent over HTTPS (0: no header)")

    # -- caller tokens (JWT signed by the integrator's backend)
    caller_token_secret: SecretStr | None = Field(None, description="HS256 shared secret")
    caller_token_public_key: str | None = Field(None, description="PEM public key for RS256/ES256")
    caller_token_public_key_file: Path | None = None
    caller_token_audience: str = "callin"
    caller_token_issuer: str | None = None
    caller_token_leeway_s: int = Field(30, ge=0, le=600)
    caller_token_max_ttl_s: int = Field(24 * 3600, ge=60, description="tokens valid for longer are refused")

    # -- agents
    agent_session_ttl_s: int = Field(
        30 * 60, ge=60, description="an agent session ends this long after its last refresh (the console refreshes "
                                    "while open)")
    agent_session_max_s: int = Field(12 * 3600, ge=60, description="no agent session lives longer than this")
    agent_session_check_s: float = Field(
        15.0, gt=0, le=600, description="how often live agent sockets are checked against ended sessions "
                                        "(expiry, or sign-out through another node)")
    agent_secret: SecretStr | None = Field(
        None, description="no longer used: agent sessions are kept server-side (accepted so old configs load)")
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
                           description="this node's name in call records and logs (informative: open records "
                                       "are owned by a node instance and closed by its lease, see node_lease_s)")
    # -- call recordings (docs/recording.md)
    recording_dir: Path | None = Field(
        None, description="folder the recordings are written to; default: recordings/ in data_dir")
    recording_retention_days: float = Field(
        90.0, ge=0, le=36_500, description="recordings are deleted this many days after their call (the record keeps "
                                           "their metadata, marked deleted); 0: kept until deleted by hand")
    recording_sweep_interval_s: float = Field(
        3600.0, gt=0, le=86_400, description="how often recordings past their retention are looked for")
    migrate_on_start: bool = Field(True, description="apply schema migrations when the server starts")
    # -- records: durability and node lease (issue 9, docs/deployment.md "Call records")
    node_lease_s: float = Field(15.0, ge=1, le=3600,
                                description="a node whose heartbeat is older than this is taken for dead: any node "
                                            "closes its open call records (interrupted) and restores its callbacks")
    node_heartbeat_s: float = Field(5.0, gt=0, le=600, description="how often a node renews its lease (< lease)")
    records_batch_max: int = Field(500, ge=1, le=10_000, description="call rows written per transaction")
    records_durable_timeout_s: float = Field(
        10.0, gt=0, le=300, description="how long a new call waits for its record to be committed before the "
                                        "caller is refused with records_unavailable")
    records_stop_timeout_s: float = Field(60.0, gt=0, le=3600,
                                          description="on stop, how long to wait for the records backlog to be written")
    redis_url: SecretStr | None = Field(
        None, description="several nodes on one database: the Redis they share (redis://host:6379/0 or "
                          "rediss://...; a password in the URL); unset: one node, no Redis")
    drain_deadline_s: float = Field(
        0.0, ge=0, le=86_400,
        description="on SIGTERM the node drains: readiness 503, no new calls, waiting callers handed to other nodes "
                    "at once; connected calls may finish for up to this long, then they end (shutdown). 0: at once")
    node_dead_after_s: float = Field(
        5.0, gt=0, le=600,
        description="with Redis: a node silent this long in the node registry is dead; its waiting callers and "
                    "callback requests are taken over at once, without waiting for node_lease_s")
    node_beat_s: float = Field(
        1.0, gt=0, le=60, description="with Redis: how often a node writes its heartbeat and counts to the registry")
    restore_waiting_within_s: float = Field(
        120.0, ge=0, le=86_400,
        description="the waiting calls of a node that stopped or crashed are restored in line (their callers resume "
                    "in place) if it was last heard of this recently; older ones are closed as interrupted. 0: never")
    restore_resume_grace_s: float = Field(
        60.0, gt=0, le=3600,
        description="how long a restored waiting call keeps its place for its caller to resume (then it ends, "
                    "caller_gone)")

    # -- accounts and access
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open the agent WebSocket and send cookie-signed writes besides the "
                    "gateway's public URL (CSWSH and CSRF protection); the request's Host header is never trusted",
    )
    # -- embedding the caller widget in integrators' sites (docs/integration.md)
    embed_origins: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="Origins of the integrators' sites that embed the caller widget: they get CORS headers on the "
                    "widget's files (/static/caller/) and on the caller's file API, and may open the caller "
                    "WebSocket. A JSON list or comma-separated (CALLIN_EMBED_ORIGINS=https://shop.example.com,"
                    "https://*.example.org); 'https://*.example.org' matches its subdomains; '*' allows every origin "
                    "and must be written out. Unset: every origin in demo mode, none otherwise (the gateway's own "
                    "pages always work). Agent, admin and REST management endpoints never get CORS headers")
    password_hash_time_cost: int = Field(3, ge=1, le=20, description="argon2id iterations")
    password_hash_memory_kib: int = Field(64 * 1024, ge=1024, description="argon2id memory")
    # -- sign-in throttling (hostile callers and outsiders)
    password_hash_concurrency: int = Field(
        2, ge=1, le=64, description="password hashes computed at once (each takes password_hash_memory_kib)")
    password_hash_queue: int = Field(
        64, ge=0, le=10_000, description="sign-ins waiting for a hash slot; more are refused with 503")
    signin_free_failures_per_account: int = Field(
        5, ge=1, le=1000, description="wrong passwords for one account before each further one blocks it")
    signin_free_failures_per_address: int = Field(
        20, ge=1, le=100_000, description="wrong passwords from one client address before each further one blocks it")
    signin_backoff_base_s: float = Field(1.0, gt=0, le=3600, description="first block; doubles with each failure")
    signin_backoff_max_s: float = Field(900.0, gt=0, le=86_400, description="the longest block")
    session_cookie_name: str = "callin_session"

    # -- webhooks
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(5, ge=1, le=20)
    webhook_retry_base_s: float = Field(2.0, gt=0, le=600, description="backoff: base * 4**(attempt-1)")
    webhook_queue_size: int = Field(10_000, ge=10)
    # -- webhooks: destinations and per-destination queues (hostile callers and outsiders)
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description="networks (CIDR) webhooks may reach although they are loopback, link-local, private or "
                    "reserved, e.g. [\"10.0.5.0/24\"]; by default only public addresses are reached")
    webhook_per_destination_concurrency: int = Field(
        4, ge=1, le=64, description="attempts in flight at once to one destination (scheme://host:port)")
    webhook_per_destination_queue: int = Field(
        1000, ge=1, le=100_000, description="deliveries waiting for one destination; more are dropped and logged")

    # -- calls
    ring_timeout_s: float = Field(20.0, gt=0, le=600)
    reoffer_after_decline_s: float = Field(
        15.0, ge=0, le=3600, description="when every agent who could take a call passed on it, ring again after this")
    resume_grace_s: float = Field(30.0, ge=0, le=3600)
    # -- sessions: replay on resume and dead-peer detection (issue 9)
    resume_replay_events: int = Field(
        256, ge=16, le=100_000,
        description="events kept per session for replay on resume (a newer queue position replaces the older)")
    ws_heartbeat_s: float = Field(
        10.0, ge=1, le=120,
        description="WebSocket ping interval; a peer that does not answer within half of it is treated as gone "
                    "(its session detaches and waits resume_grace_s)")
    hello_timeout_s: float = Field(10.0, gt=0, le=120)
    setups_per_loop_iteration: int = Field(
        8, ge=1, le=10_000,
        description="WebSocket handshakes, hellos and call.starts handled per turn of the event loop; the rest "
                    "wait for the next turn, so that a crowd joining at once does not stall media and ICE answers "
                    "(signaling/turnstile.py)")
    gc_sweep_interval_s: float = Field(
        2.0, ge=0, le=3600,
        description="`callin serve` runs Python's full garbage collections itself, this often, each walking only "
                    "what became long-lived since the last (see gateway/gcpolicy.py); 0: Python's default "
                    "collector, which stops the process for about a second at a time when 10,000 callers wait")
    gc_complete_every: int = Field(
        150, ge=1, le=1000,
        description="every Nth sweep walks everything (frees garbage among long-lived objects): the one long "
                    "pause, every gc_sweep_interval_s * gc_complete_every seconds")
    max_queue_length: int = Field(1000, ge=1)
    # -- queue positions (issue 9: a queue of 10,000)
    position_update_interval_s: float = Field(
        1.0, ge=0, le=60, description="a waiting caller is told its changed position at most this often (the first "
                                      "and the last change always; 0: every change at once)")
    ring_outs_before_away: int = Field(2, ge=1, le=20,
                                       description="calls an agent lets ring out in a row before being set away")
    wrap_up_s: float = Field(0.0, ge=0, le=3600,
                             description="after a call the agent stays in wrap-up this long (0: available at once)")
    wrap_up_max_s: float = Field(900.0, gt=0, le=7200,
                                 description="wrap-up.extend (a console with an unsaved wrap-up note) keeps the agent "
                                             "in wrap-up at most this long after the call ended")
    callback_rejoin_s: float = Field(120.0, gt=0, le=3600,
                                     description="how long an accepted callback waits for the caller to rejoin")
    max_left_message_chars: int = Field(2000, ge=1, le=2000, description="the protocol caps it at 2000")

    # -- hostile callers: limits per caller identity (issuer + subject) and per source address (docs/threat-model.md)
    caller_max_sessions_per_subject: int = Field(
        5, ge=1, le=1000, description="open sessions per caller; a hello over it evicts the oldest one whose socket "
                                      "is gone, or is refused (too_many_sessions)")
    caller_max_calls_per_subject: int = Field(
        1, ge=1, le=100, description="live calls per caller; a new call replaces the oldest waiting one (reason "
                                     "replaced, its place in line kept) and is refused if the others are connected")
    caller_call_starts_per_minute: int = Field(6, ge=1, le=10_000, description="call.start per caller per minute")
    caller_max_sessions_per_address: int = Field(
        200, ge=1, le=100_000, description="open caller sessions per source address (offices share one behind NAT)")
    caller_call_starts_per_address_per_minute: int = Field(120, ge=1, le=100_000,
                                                            description="call.start per source address per minute")
    caller_unknown_resume_burst: int = Field(
        60, ge=1, le=100_000, description="hellos with a resume token this node does not know (each costs a records "
                                          "query) that one source address may send at once ...")
    caller_unknown_resumes_per_address_per_minute: int = Field(
        120, ge=1, le=100_000, description="... then this many a minute (rate_limited)")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For names the client; "
                    "empty: the TCP peer is the client")

    # -- queues (the queue "default" always exists; configure it here to change its hours or messages)
    queues: list[QueueConfig] = Field(default_factory=list)

    # -- protocol limits
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=4 * 1024 * 1024)
    max_sdp_bytes: int = Field(32 * 1024, ge=1024, le=32 * 1024, description="the protocol caps it at 32 KiB")
    max_context_bytes: int = Field(8 * 1024, ge=256)
    max_attachment_bytes: int = Field(5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    max_chat_chars: int = Field(2000, ge=1, le=2000, description="the protocol caps it at 2000")

    # -- hostile callers: chat and attachments (docs/threat-model.md)
    chat_max_lines_per_call: int = Field(300, ge=1, le=100_000,
                                         description="chat lines one sender may send in one call (chat_limit_reached)")
    chat_burst: int = Field(10, ge=1, le=1000, description="chat lines a sender may send at once ...")
    chat_lines_per_minute: float = Field(30.0, gt=0, le=6000, description="... then this many a minute (chat_rate_limited)")
    card_history_events: int = Field(
        50, ge=1, le=10_000, description="newest events of a call in the agent's card; the record has all of them")
    attachments_per_call_bytes: int = Field(50 * 1024 * 1024, ge=1024, description="files of one call, all senders")
    attachments_per_caller_bytes: int = Field(25 * 1024 * 1024, ge=1024,
                                              description="files one caller identity uploaded, over all its calls kept")
    attachments_per_call_count: int = Field(50, ge=1, le=10_000, description="files in one call")
    attachments_total_bytes: int = Field(10 * 1024 * 1024 * 1024, ge=1024 * 1024,
                                         description="disk budget of every kept file (attachments_full past it)")
    attachments_retention_s: float = Field(30 * 24 * 3600.0, gt=0,
                                           description="files are deleted this long after upload")
    attachments_storage: Literal["auto", "disk", "database"] = Field(
        "auto", description="where the files of calls are kept: disk (attachments/ in data_dir, one node), database "
                            "(the records database: every node reads them); auto: database when database_url is "
                            "PostgreSQL, disk otherwise")

    # -- media / network
    ice_servers: list[IceServer] = Field(default_factory=list)
    turn_urls: list[str] = Field(
        default_factory=list,
        description="TURN server URLs handed to clients with ephemeral credentials (needs turn_secret), e.g. "
                    "turn:turn.example.com:3478?transport=udp, turn:turn.example.com:3478?transport=tcp, "
                    "turns:turn.example.com:443?transport=tcp")
    turn_secret: SecretStr | None = Field(
        None, description="the secret shared with the TURN server (coturn: use-auth-secret, static-auth-secret)")
    turn_credential_ttl_s: float = Field(
        3600.0, ge=60, le=7 * 86_400, description="how long a minted TURN credential is valid (a resume mints anew)")
    turn_relay_only_callers: bool = Field(
        False, description="tell callers to use TURN relay candidates only (iceTransportPolicy relay): hides their "
                           "address from the gateway's media, and works where only TURN gets through")
    media_host_addresses: list[str] = Field(
        default_factory=list,
        description="addresses the relay gathers host candidates on; empty = all non-loopback interfaces",
    )
    media_announced_address: str | None = Field(
        None, description="public address announced instead of the gathered one (1:1 NAT)"
    )
    media_port_min: int = Field(
        0, description="lowest UDP port of the relay's media range (host candidates bind only in "
        "media_port_min..media_port_max); 0 with media_port_max 0: ports chosen by the OS")
    media_port_max: int = Field(0, description="highest UDP port of the relay's media range (see media_port_min)")
    video_codecs: list[Literal["VP8", "H264"]] = Field(default_factory=lambda: ["VP8", "H264"], min_length=1)
    video_queue_frames: int = Field(30, ge=2, le=600)
    audio_queue_frames: int = Field(10, ge=2, le=600)
    keyframe_request_interval_s: float = Field(0.3, ge=0.0, le=10)
    relay_lean_receive: bool = Field(True, description="packet mode: skip aiortc's decoder-only receive work")
    relay_fast_path: Literal["auto", "native", "python", "off"] = Field(
        "auto", description="packet mode's per-packet path: native (C module, built at install when a compiler is "
        "there), python (direct receive without the C module), off (aiortc's own path); auto: native if built")
    media_workers: int | None = Field(
        None, ge=0, le=256,
        description="media worker processes (one event loop each; all legs of a call in one worker): 0 runs media "
                    "in the server's own process; unset: one per CPU for `callin serve`, 0 for `callin demo`")
    relay_mode: Literal["packet", "frame", "transcode"] = Field(
        "packet",
        description="packet: forward RTP packets as they arrive (~1 ms); frame: whole encoded frames; "
        "transcode: decode and re-encode (aiortc's stock MediaRelay path, a core per few calls)",
    )
    # -- live transcripts (gateway/transcript/; per queue: QueueConfig.transcript)
    transcript_engine: Literal["pocketsphinx", "http"] = Field(
        "pocketsphinx", description="speech-to-text engine: pocketsphinx (in this host, US English) or http (each "
        "utterance POSTed as WAV to transcript_http_url)")
    transcript_http_url: str | None = Field(
        None, max_length=2000, description="transcript_engine=http: the recognition service's URL (answers JSON "
        "{text, words?})")
    transcript_http_token: SecretStr | None = Field(
        None, description="transcript_engine=http: sent as Authorization: Bearer <token>")
    transcript_http_timeout_s: float = Field(10.0, gt=0, le=120, description="one recognition request's limit")
    transcript_workers: int = Field(
        1, ge=1, le=64, description="pocketsphinx: recognition processes per media process (made on first use)")
    transcript_decoders: int = Field(
        4, ge=1, le=32, description="pocketsphinx: decoders per recognition process (~90 MB each with the general "
        "model, made as needed): one decodes whole utterances, the others decode utterances as their audio arrives "
        "(finals in ~0.3 s instead of ~1 s); 1: whole utterances only (the least memory)")
    transcript_grammar: Path | None = Field(
        None, description="pocketsphinx: a JSGF grammar file to recognise with instead of the general English "
        "language model (a closed vocabulary: digits, menu words)")
    transcript_endpoint_silence_s: float = Field(
        0.5, ge=0.1, le=5, description="silence that ends an utterance (then its final result is recognised)")
    transcript_partial_interval_s: float = Field(
        1.0, ge=0.2, le=30, description="while an utterance grows, a partial result at most this often")
    transcript_max_utterance_s: float = Field(15.0, ge=1, le=120, description="a longer utterance is cut here")
    transcript_caller_captions: bool = Field(
        False, description="the caller sees captions of the call when its queue's transcript is on (accessibility); "
        "a queue's caller_captions overrides it")
    # -- media / remote ICE candidates: where a peer may make the relay send checks, how many, how long
    media_max_remote_candidates: int = Field(
        20, ge=1, le=200, description="distinct UDP ICE candidates a peer connection may give (offer + trickled)")
    media_max_ice_checks: int = Field(
        40, ge=1, le=1000, description="connectivity checks one peer connection may start (each up to 7 STUN "
        "requests); then its remaining pairs fail")
    media_remote_allow: list[str] = Field(
        default_factory=list, description="networks (CIDR) remote candidates must be in; empty = any not denied")
    media_remote_deny: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DENIED_NETWORKS),
        description="networks (CIDR) the relay never sends to: link-local and cloud metadata by default")
    media_connect_timeout_s: float = Field(
        30.0, gt=0, le=600, description="a peer connection not connected this long after its answer fails "
        "(the call ends with media_failed)")
    # -- media health: dead legs and slow viewers (issue 9, "nothing lost")
    media_silence_s: float = Field(
        4.0, ge=0.5, le=60,
        description="nothing (RTP, RTCP, ICE checks) received from a participant this long: media.state disconnected",
    )
    media_failure_grace_s: float = Field(
        20.0, ge=0, le=600,
        description="disconnected this long (after media_silence_s): the call ends with media_failed",
    )
    media_recovery_grace_s: float = Field(
        5.0, ge=0, le=60,
        description="the caller's or the agent's peer connection failed or was closed by its side (a network change, "
                    "a reloaded app or console): the call waits this long for a new sdp.offer from that participant "
                    "(media recovery) before it ends with media_failed")
    viewer_keyframe_interval_s: float = Field(
        2.0, ge=0, le=60, description="one viewer may cause at most one keyframe request per interval (burst of 2)"
    )
    viewer_max_backlog_bytes: int = Field(
        64 * 1024, ge=4096, le=16 * 1024 * 1024,
        description="bytes waiting to be sent to one participant (buffer + kernel send queue) above which its "
        "video is paused",
    )
    viewer_resume_after_s: float = Field(
        5.0, gt=0, le=600, description="a paused viewer's video is retried after this (doubling on relapse, max 60 s)"
    )

    @field_validator("media_host_addresses")
    @classmethod
    def _ips(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_address(value)
        return values

    @field_validator("media_remote_allow", "media_remote_deny", "webhook_allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value.strip(), strict=False)
        return values

    @field_validator("embed_origins", mode="before")
    @classmethod
    def _embed_origins(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a JSON list, or origins separated by commas
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except ValueError:
                    raise ValueError("embed_origins: not a valid JSON list; write a JSON list of origins or "
                                     "origins separated by commas") from None
            else:
                value = [part for part in (p.strip() for p in text.split(",")) if part]
        if isinstance(value, list):
            return [normalise_origin(item) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("media_announced_address")
    @classmethod
    def _announced(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @model_validator(mode="after")
    def _media_ports(self) -> "Settings":
        if self.media_port_min == 0 and self.media_port_max == 0:
            return self  # the OS picks ephemeral ports
        if self.media_port_min == 0 or self.media_port_max == 0:
            raise ValueError("set both media_port_min and media_port_max for a media port range, or neither (0 and 0: "
                             "ports chosen by the OS)")
        from .media.ports import check_port_range  # here: gateway.media imports this module

        check_port_range(self.media_port_min, self.media_port_max)
        return self

    @model_validator(mode="after")
    def _turn(self) -> "Settings":
        from .turn import check_turn_url  # here: gateway.turn imports this module

        for url in self.turn_urls:
            check_turn_url(url)
        if self.turn_urls and self.turn_secret is None:
            raise ValueError("turn_urls need turn_secret (the secret shared with the TURN server: coturn's "
                             "static-auth-secret) to mint credentials")
        if self.turn_secret is not None and len(self.turn_secret.get_secret_value()) < 16:
            raise ValueError("turn_secret must be at least 16 characters")
        return self

    @model_validator(mode="after")
    def _transcripts(self) -> "Settings":
        if self.transcript_engine == "http" and not self.transcript_http_url:
            raise ValueError("transcript_engine http needs transcript_http_url (the recognition service's URL)")
        if self.transcript_http_url and urlsplit(self.transcript_http_url).scheme not in ("http", "https"):
            raise ValueError("transcript_http_url must be an http:// or https:// URL")
        if self.transcript_grammar is not None and not self.transcript_grammar.is_file():
            raise ValueError(f"transcript_grammar {self.transcript_grammar} is not a readable file (a JSGF grammar)")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    @model_validator(mode="after")
    def _node_lease(self) -> "Settings":
        if self.node_heartbeat_s >= self.node_lease_s:
            raise ValueError("node_heartbeat_s must be shorter than node_lease_s (a third of it is a good choice)")
        if self.node_beat_s >= self.node_dead_after_s:
            raise ValueError("node_beat_s must be shorter than node_dead_after_s (a third of it is a good choice)")
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
    def embedding_origins(self) -> list[str]:
        """embed_origins as it applies: unset means every origin in demo mode and none otherwise."""
        if self.embed_origins is None:
            return ["*"] if self.demo else []
        return self.embed_origins

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
    def recording_root(self) -> Path:
        return self.recording_dir if self.recording_dir is not None else self.data_dir / "recordings"

    @property
    def attachments_in_database(self) -> bool:
        """Files of calls in the records database (readable from every node) rather than on this node's disk."""
        if self.attachments_storage != "auto":
            return self.attachments_storage == "database"
        return self.db_url.startswith(("postgresql", "postgres"))

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
