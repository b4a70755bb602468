"""The media plane, as the call engine sees it: everything the engine asks of media, and one stream of leg events.

The engine (gateway/engine/, its façade Switchboard) never holds an aiortc object: it asks the plane to answer a participant's offer,
add a candidate, set who hears whom (the call's scene), remove a participant, reset a call's media, take a still
picture and close a call, and it listens to one stream of `LegEvent`s. Two implementations, in the manner of
mediasoup's workers and LiveKit's local/distributed routers:

- `LocalPlane` (gateway/media/local.py): the relays run in this process, on this event loop (`callin demo`, most
  tests, `--media-workers 0`);
- `WorkerPlane` (gateway/media/workers.py): a pool of media worker processes, one per core, each its own event loop
  running a `LocalPlane`; every leg of a call lives in the worker that owns the call.

Naming: a *call* has *participants*: "caller", or the username of an agent, colleague or supervisor. Each answered
offer makes a *leg* with a `leg_id` unique for the life of the plane; events name it, so that events of a leg that
has since been replaced or removed can be told apart.

Recording (gateway/media/recorder.py): `start_recording` writes the call's encoded media to one file as it is
forwarded (no video decoding), `pause_recording`/`resume_recording` leave a span with no media in the same file,
`stop_recording` finalizes it and returns its `RecordingInfo`. Ending the call's media finalizes a running recording
too: `close_call` returns its `RecordingInfo`, and a `stop_recording` after `close_call` returns it as well (once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

CALLER = "caller"

LegEventKind = Literal["state", "video", "failed"]


@dataclass(frozen=True, slots=True)
class LegEvent:
    """Something happened to one leg.

    - kind "state": `state` is the peer connection's state (new, connecting, connected, closed, ...) or the media
      watchdog's verdict (disconnected: nothing received for a while; connected: media back);
    - kind "video": the video sent to this leg was paused (`paused` True) or resumed, with a `reason`
      (backlog, keyframes);
    - kind "failed": the leg ended without the engine asking (`reason`: ice_failed, dtls_failed, closed_by_remote,
      connect_timeout, media_timeout, worker_died).
    """

    call_id: str
    participant: str
    leg_id: str
    kind: LegEventKind
    state: str | None = None
    paused: bool | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    leg_id: str
    sdp: str


@dataclass(frozen=True, slots=True)
class Still:
    """One picture of a participant's video (JPEG)."""

    jpeg: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """A call's recording as finally written.

    `tracks`: one dict per track that carried media, in file order: {"participant": "caller" | a username |
    "mixed", "kind": "video" | "audio", "codec": "vp8" | "h264" | "opus", "index": the stream's index in the file,
    "packets": how many were written}. `paused_spans`: (start_s, end_s) from the file's start, also written in the
    file as chapters titled "paused"."""

    path: str  # the file as finally written (absolute)
    container: str  # "webm" (VP8+Opus, or Opus only) | "mkv" (H264+Opus)
    started_at: float  # UNIX time of the first written media (the file's time 0)
    duration_s: float
    size_bytes: int
    tracks: tuple[dict[str, Any], ...]
    paused_spans: tuple[tuple[float, float], ...]
    dropped_packets: int = 0  # media not written because the writer fell behind (a stalled disk)


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """What a participant said (gateway/transcript/), as the recogniser heard it: not yet redacted. `utterance`
    counts the participant's utterances (1, 2, ...); partial results (`final` False) of an utterance come before
    its final one and are replaced by it. Times are seconds from the start of the call's transcript."""

    call_id: str
    participant: str
    utterance: int
    text: str
    final: bool
    start_s: float
    end_s: float


LegListener = Callable[[LegEvent], None]
TranscriptListener = Callable[[TranscriptSegment], None]


class MediaPlane(Protocol):
    """What the engine asks of media. Unknown calls: `set_scene`, `remove`, `close_call` do nothing; `answer`,
    `add_candidate`, `still` raise a GatewayError with a stable code."""

    def subscribe(self, listener: LegListener) -> None:
        """Every leg event of every call goes to `listener` (called on the engine's event loop)."""

    def subscribe_transcript(self, listener: TranscriptListener) -> None:
        """Every transcript segment of every call goes to `listener` (on the engine's event loop)."""

    def start_transcript(self, call_id: str) -> None:
        """Transcribe what each participant of the call says, from now on (idempotent; legs added later too)."""

    async def stop_transcript(self, call_id: str) -> bool:
        """Stop listening; returns once the last words have been recognised and their segments delivered (also after
        close_call: the call's media is gone, its last utterances are still being recognised). True when every
        utterance was recognised; False when some were lost (a recognition process died, the service failed).
        Raises a GatewayError (media_worker_died) when the worker that held the transcript died."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Close every call's media and stop (workers exit)."""

    def open_call(self, call_id: str) -> None:
        """Make room for a call's media (idempotent). Its legs come with `answer`."""

    async def answer(self, call_id: str, participant: str, sdp: str) -> Answer:
        """A participant's SDP offer: its leg is set up and the answer returned. The caller's leg sets the call's
        video codec; an agent's leg is held to it (nothing is transcoded)."""

    async def add_candidate(self, call_id: str, participant: str, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None: ...

    def set_scene(self, call_id: str, **changes: Any) -> None:
        """Who hears and sees whom (gateway/media/topology.py Scene fields: agent, held, consult, supervisors)."""

    async def remove(self, call_id: str, participant: str) -> None:
        """Close one participant's leg (a supervisor leaves, a transfer completes)."""

    async def reset_call(self, call_id: str) -> None:
        """Close every leg of the call but keep room for new ones (a caller who left for a callback)."""

    async def still(self, call_id: str, participant: str = CALLER) -> Still:
        """A picture of the participant's video, decoded from the latest keyframe on."""

    async def close_call(self, call_id: str) -> RecordingInfo | None:
        """Close every leg of the call; a recording still running is finalized and its info returned."""

    async def start_recording(self, call_id: str, path: str, *, mixed_audio: bool = False) -> str:
        """Record the call's media to `path` as it is forwarded (returns the file's final path): the caller's video and audio, and the audio of
        every other participant whom someone hears (agent, consulted colleague, whispering or barging supervisor),
        each its own track (`mixed_audio`: all audio decoded and mixed into one Opus track; video never decoded).
        The file's suffix is set to its container's (.webm for VP8 or no video, .mkv for H264). Unknown call:
        NotFound (not_found); a recording already running: InvalidState (invalid_state); a file that cannot be
        created: Unavailable (recording_failed)."""

    async def pause_recording(self, call_id: str) -> None:
        """Stop writing media until `resume_recording` (idempotent); no recording: InvalidState (invalid_state)."""

    async def resume_recording(self, call_id: str) -> None:
        """Write media again, video from its next keyframe (idempotent); no recording: InvalidState."""

    async def stop_recording(self, call_id: str) -> RecordingInfo | None:
        """Finalize the file and return its info; None if no recording was running (or it was already returned).
        A recording whose media worker died is not finalized (the file plays up to about the death): its info is
        read back from the file (recorder.describe)."""

    async def stats(self, call_id: str) -> dict[str, Any]: ...

    def has_call(self, call_id: str) -> bool: ...
