"""Live transcripts of a call (per queue: QueueConfig.transcript): started when an agent answers, captions to the
agent and supervisors (a supervisor who joins is told first; and to the caller where the queue or setting says so)
as the media plane recognises them,
redacted first; final segments kept for the record; the whole transcript announced when its last words are in.

The caller is told before anything is transcribed (transcript.notice). Nothing the caller says reaches a session,
a record or a webhook unredacted (gateway/transcript/redact.py). Emits call.transcript_segment (call, segment)
for each final segment and call.transcript (call, segments) once the call's transcript is complete.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from ..calls import Call
from ..events import Caption, TranscriptNotice
from ..media.plane import CALLER, TranscriptSegment
from ..models import CallState
from ..transcript.redact import redact
from .core import Core

log = structlog.get_logger("callin.transcripts")

STOP_TIMEOUT_S = 45.0  # the media plane's own limit is 30 s (gateway/transcript/tap.py)
MAX_TEXT = 10_000  # characters of one segment (signaling/protocol.py CaptionOut.text)


@dataclass(frozen=True, slots=True)
class Segment:
    """One final, redacted segment of a call's transcript, as stored and sent."""

    seq: int  # 0, 1, 2 ... in the order they were recognised
    participant: str  # "caller" or the username
    role: str  # caller, agent, supervisor, colleague
    name: str  # the caller's or staff member's display name
    utterance: int
    text: str
    start_s: float
    end_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Transcripts:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._segments: dict[str, list[Segment]] = {}  # call id -> its final segments (while the transcript runs)
        self._finishing: set[asyncio.Task[None]] = set()
        self.start_failures = 0  # answered calls whose transcript could not start (Prometheus)
        core.plane.subscribe_transcript(self.on_segment)

    def active(self, call_id: str) -> bool:
        return call_id in self._segments

    def running(self) -> int:
        """Calls being transcribed now (their transcript not handed on yet)."""
        return len(self._segments)

    def _queue_config(self, call: Call) -> Any:
        queues = self.core.queues
        return queues.get(call.queue).config if call.queue in queues else None

    def caller_captions(self, call: Call) -> bool:
        config = self._queue_config(call)
        flag = config.caller_captions if config is not None else None
        return self.core.settings.transcript_caller_captions if flag is None else flag

    # -- start: the agent answered -----------------------------------------------------------------------------
    def call_answered(self, call: Call) -> None:
        config = self._queue_config(call)
        if config is None or config.transcript != "on" or call.id in self._segments:
            return
        try:
            self.core.plane.start_transcript(call.id)
        except Exception as exc:  # noqa: BLE001 - the call goes on untranscribed; the record says so
            self.start_failures += 1
            call.log("transcript_failed", cause=getattr(exc, "code", type(exc).__name__))
            log.error("transcript.start_failed", call_id=call.id, error=str(exc))
            return
        self._segments[call.id] = []
        call.log("transcript_started")
        self.core.to_caller(call, TranscriptNotice(call_id=call.id, active=True, captions=self.caller_captions(call)))
        self.core.to_agent(call.agent, TranscriptNotice(call_id=call.id, active=True, captions=True))

    def supervisor_joined(self, call: Call, username: str) -> None:
        """A supervisor joined a transcribed call (monitor, whisper or barge): told so, then sent its captions as
        the call's agent is (on_segment sends them to every supervisor of the call)."""
        if call.id in self._segments:
            self.core.to_agent(username, TranscriptNotice(call_id=call.id, active=True, captions=True))

    # -- segments from the media plane ------------------------------------------------------------------------
    def _speaker(self, call: Call, participant: str) -> dict[str, str]:
        if participant == CALLER:
            return {"role": "caller", "name": call.identity.name or "Caller"}
        agent = self.core.live.agent(participant)
        name = agent.display_name if agent is not None else participant
        if participant == call.agent:
            role = "agent"
        elif participant in call.supervisors:
            role = "supervisor"
        else:
            role = "colleague"
        return {"role": role, "name": name}

    def on_segment(self, segment: TranscriptSegment) -> None:
        segments = self._segments.get(segment.call_id)
        call = self.core.live.call(segment.call_id)
        if segments is None or call is None:
            return
        text = redact(segment.text)[:MAX_TEXT]
        if not text.strip():
            return
        speaker = self._speaker(call, segment.participant)
        caption = Caption(call_id=call.id, speaker=speaker, utterance=segment.utterance, text=text,
                          final=segment.final, start_s=segment.start_s, end_s=segment.end_s)
        if call.state is not CallState.ENDED:
            self.core.to_agent(call.agent, caption)
            for username in call.supervisors:
                self.core.to_agent(username, caption)
            if self.caller_captions(call):
                self.core.to_caller(call, caption)
        if segment.final:
            kept = Segment(seq=len(segments), participant=segment.participant, role=speaker["role"],
                           name=speaker["name"], utterance=segment.utterance, text=text, start_s=segment.start_s,
                           end_s=segment.end_s)
            segments.append(kept)
            self.core.emit("call.transcript_segment", call, kept)

    # -- the end ----------------------------------------------------------------------------------------------
    def call_ended(self, call: Call) -> None:
        """The call ended (its media closes next): the last words are recognised in the background, then the
        transcript is complete (call.transcript)."""
        if call.id in self._segments:
            task = asyncio.ensure_future(self._finish(call))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    async def _finish(self, call: Call) -> None:
        try:
            complete = await asyncio.wait_for(self.core.plane.stop_transcript(call.id), STOP_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a dead worker or a stuck recogniser: what we have is kept
            complete = False
            log.error("transcript.incomplete", call_id=call.id, error=str(exc) or type(exc).__name__)
        segments = self._segments.pop(call.id, [])
        log.info("transcript.ready", call_id=call.id, segments=len(segments), complete=complete)
        self.core.emit("call.transcript", call, [s.as_dict() for s in segments], complete)

    async def close(self) -> None:
        """Stopping (every call has ended): wait for the last words of each (bounded by STOP_TIMEOUT_S)."""
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
