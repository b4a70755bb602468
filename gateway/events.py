"""Domain events the engine delivers to a participant's session. The signaling layer turns them into messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    call_id: str
    position: int  # 1 = next to be answered
    queue_length: int
    estimated_wait_s: int | None
    queue: str = "default"


@dataclass(frozen=True, slots=True)
class CallOffered:
    call_id: str
    card: dict[str, Any]
    ring_timeout_s: float


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    call_id: str
    reason: str  # caller_hangup, ring_timeout, declined, taken, agent_disconnected


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_id: str
    agent_name: str


@dataclass(frozen=True, slots=True)
class CallInterrupted:
    """To the caller: its connected call was cut off (the node that held its media died); it waits again at the front
    of the line in a new call (rejoined_call_id), offered to the next free agent."""

    call_id: str
    rejoined_call_id: str
    reason: str = "node_lost"


@dataclass(frozen=True, slots=True)
class CallRinging:
    """To the caller: its call rings at an agent (ringing, with the agent's name), or that ring was withdrawn
    (missed, declined, the agent's console went away) and the call waits again."""

    call_id: str
    ringing: bool
    agent_name: str | None = None


@dataclass(frozen=True, slots=True)
class CallBarge:
    """To the caller: a supervisor started (active) or stopped speaking in the call (barge). Monitoring and
    whispering are never told: the caller does not hear them."""

    call_id: str
    active: bool
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    reason: str
    by: str  # caller, agent, system
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    status: str
    reason: str | None = None
    call_id: str | None = None
    wrap_up_s: float | None = None  # with status wrap_up: how long before the agent is available again


@dataclass(frozen=True, slots=True)
class MediaState:
    call_id: str
    leg: str
    state: str


@dataclass(frozen=True, slots=True)
class MediaVideo:
    """The video sent to a participant was paused (its link cannot keep up; its audio goes on), or resumed."""

    call_id: str
    leg: str
    state: str  # paused, resumed
    reason: str  # backlog, keyframes


@dataclass(frozen=True, slots=True)
class CallHeld:
    call_id: str
    held: bool


@dataclass(frozen=True, slots=True)
class CallTransferring:
    """To the caller: the agent is handing the call on (blind or warm)."""

    call_id: str
    mode: str


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """To the agent who handed the call on: their part is over."""

    call_id: str
    to: str


@dataclass(frozen=True, slots=True)
class ConsultState:
    """To the two agents of a warm transfer: the colleague joined, or the consult ended (cancelled/declined)."""

    call_id: str
    state: str  # joined, declined, ring_timeout, cancelled, completed, agent_disconnected (the colleague's console)
    colleague: str


@dataclass(frozen=True, slots=True)
class ContentPushed:
    call_id: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContentStatus:
    call_id: str
    content_id: str
    status: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    call_id: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class QueueClosed:
    """The caller is told why nobody will answer soon, and what it may do instead."""

    call_id: str
    queue: str
    reason: str  # after_hours / no_agents / max_wait
    message: str
    callback_available: bool
    message_allowed: bool
    opens_at: float | None = None


@dataclass(frozen=True, slots=True)
class CallbackOffer:
    call_id: str
    queue: str
    estimated_wait_s: int | None


@dataclass(frozen=True, slots=True)
class CallbackReady:
    call_id: str
    agent_name: str
    rejoin_within_s: float


@dataclass(frozen=True, slots=True)
class ParticipantConnection:
    """To the others in a call: a participant's socket went away (reconnecting) or came back (reconnected), or
    (cause "media") its media is being set up again with a new peer connection (a network change) and is back."""

    call_id: str
    role: str  # caller, agent, colleague, supervisor
    name: str | None
    connected: bool
    cause: str = "socket"  # socket, media


@dataclass(frozen=True, slots=True)
class MediaSourceChanged:
    """To the call's staff: the caller's video section now sends its camera, its screen, or nothing."""

    call_id: str
    source: str  # camera, screen, none
    reason: str | None = None  # with none: camera_blocked / camera_unavailable (why a video call has no camera)


@dataclass(frozen=True, slots=True)
class CallLocated:
    """To the call's staff (or the agent it rings at): the caller's device reported its position after the start."""

    call_id: str
    location: dict[str, Any]  # gateway.models.Location, dumped: lat, lon, accuracy_m, timestamp, source "device"


@dataclass(frozen=True, slots=True)
class RecordingChanged:
    """To the caller and the call's staff: the call's recording state (gateway/recording.py) changed; `asking`
    asks the caller for consent (recording.consent)."""

    call_id: str
    state: str  # off, asking, pending, recording, paused, declined, stopped, failed
    policy: str  # off, on_demand, always
    consent: str  # notify, ask
    by: str | None = None  # caller, agent, api, system


@dataclass(frozen=True, slots=True)
class TranscriptNotice:
    """To the caller (and the call's staff): the call is being transcribed from now on (active), or no longer;
    `captions`: this recipient is sent the captions."""

    call_id: str
    active: bool
    captions: bool = False


@dataclass(frozen=True, slots=True)
class Caption:
    """What someone in the call said, redacted: a partial result (replaced by the next one of the same speaker and
    utterance) or the final one. `speaker` {role: caller / agent / supervisor / colleague, name}."""

    call_id: str
    speaker: dict[str, Any]
    utterance: int
    text: str
    final: bool
    start_s: float
    end_s: float


Event = (
    QueueUpdate | CallOffered | OfferWithdrawn | CallAnswered | CallEnded | AgentStatusChanged | MediaState
    | MediaVideo | CallHeld | CallTransferring | CallTransferred | ConsultState | ContentPushed | ContentStatus | ChatMessage
    | QueueClosed | CallbackOffer | CallbackReady | ParticipantConnection | MediaSourceChanged | CallRinging
    | CallBarge | RecordingChanged | TranscriptNotice | Caption | CallInterrupted | CallLocated
)


@dataclass
class EventLog:
    entries: list[dict[str, Any]] = field(default_factory=list)
