"""The media plane in this process: one Relay per call on this event loop (see plane.py)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from typing import Any

from ..errors import InvalidState, NotFound
from .leg import Leg, MediaConfig
from .plane import CALLER, Answer, LegEvent, LegListener, RecordingInfo, Still, TranscriptListener, TranscriptSegment
from .recorder import Recording
from .relay import Relay
from .snapshot import snapshot

log = logging.getLogger(__name__)


class LocalPlane:
    """Relays in-process. `relays` is public for in-process tests and benchmarks that look inside a leg."""

    def __init__(self, config: MediaConfig, leg_prefix: str = "") -> None:
        self.config = config
        self.relays: dict[str, Relay] = {}
        self._listeners: list[LegListener] = []
        self._leg_ids = itertools.count(1)
        self._leg_prefix = leg_prefix  # a worker's index: leg ids stay unique across a pool
        # Recordings finalized by close_call, for a stop_recording that comes after it (kept for the last few calls).
        self._finished: OrderedDict[str, RecordingInfo] = OrderedDict()
        self.recordings_done = 0  # recordings finalized since start (for stats)
        self.recorded_bytes = 0
        self.recording_drops = 0
        self.transcripts: dict[str, Any] = {}  # call id -> CallTranscriber (gateway/transcript/tap.py)
        self._transcript_listeners: list[TranscriptListener] = []
        self._speech: Any = None  # the speech engine, made when a first transcript starts

    # -- events
    def subscribe(self, listener: LegListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: LegEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one listener's bug must not silence the others
                log.exception("media plane listener failed on %s", event)

    def _watch(self, call_id: str, participant: str, leg: Leg) -> str:
        leg_id = f"{self._leg_prefix}{leg.id}#{next(self._leg_ids)}"

        def event(kind: str, **fields: Any) -> None:
            self._emit(LegEvent(call_id=call_id, participant=participant, leg_id=leg_id, kind=kind,  # type: ignore[arg-type]
                                **fields))

        leg.on("state", lambda state: event("state", state=state))
        leg.on("media", lambda state: event("state", state=state))
        leg.on("video", lambda paused, reason: event("video", paused=paused, reason=reason))
        leg.on("failed", lambda reason="failed": event("failed", reason=reason))
        return leg_id

    def subscribe_transcript(self, listener: TranscriptListener) -> None:
        self._transcript_listeners.append(listener)

    def _emit_segment(self, segment: TranscriptSegment) -> None:
        for listener in list(self._transcript_listeners):
            try:
                listener(segment)
            except Exception:
                log.exception("transcript listener failed on %s", segment)

    # -- lifecycle
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        relays, self.relays = list(self.relays.values()), {}
        await asyncio.gather(*(self._finish(relay) for relay in relays), return_exceptions=True)
        transcripts, self.transcripts = list(self.transcripts.values()), {}
        for transcriber in transcripts:
            transcriber.cancel()
        await asyncio.gather(*(relay.close() for relay in relays), return_exceptions=True)
        if self._speech is not None:
            speech, self._speech = self._speech, None
            await speech.close()

    # -- transcripts
    @property
    def speech(self) -> Any:
        """The speech engine (None until a first transcript starts)."""
        return self._speech

    def start_transcript(self, call_id: str) -> None:
        relay = self._relay(call_id)
        if call_id in self.transcripts:
            return
        from ..transcript.engine import create_engine
        from ..transcript.tap import CallTranscriber

        if self._speech is None:
            self._speech = create_engine(self.config.transcript)
            self._speech.warm()
        transcriber = CallTranscriber(call_id, self._speech, self.config.transcript, self._emit_segment)
        self.transcripts[call_id] = transcriber
        transcriber.bind(relay)

    async def stop_transcript(self, call_id: str) -> bool:
        transcriber = self.transcripts.get(call_id)
        if transcriber is None:
            return True
        try:
            await asyncio.shield(transcriber.finish())
            return transcriber.complete
        finally:
            if self.transcripts.get(call_id) is transcriber:
                del self.transcripts[call_id]

    # -- calls
    def has_call(self, call_id: str) -> bool:
        return call_id in self.relays

    def open_call(self, call_id: str) -> None:
        if call_id not in self.relays:
            self.relays[call_id] = Relay(call_id, self.config)

    def _relay(self, call_id: str) -> Relay:
        relay = self.relays.get(call_id)
        if relay is None:
            raise InvalidState("this call has no media (it has ended)", code="call_ended")
        return relay

    async def answer(self, call_id: str, participant: str, sdp: str) -> Answer:
        relay = self._relay(call_id)
        if participant == CALLER:
            leg, answer = await relay.caller_offer(sdp)
        else:
            leg, answer = await relay.agent_offer(participant, sdp)
        return Answer(leg_id=self._watch(call_id, participant, leg), sdp=answer)

    async def add_candidate(self, call_id: str, participant: str, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        relay = self.relays.get(call_id)
        leg = relay.leg(participant) if relay is not None else None
        if leg is None:
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        await leg.add_ice_candidate(candidate, sdp_mid, sdp_mline_index)

    def set_scene(self, call_id: str, **changes: Any) -> None:
        relay = self.relays.get(call_id)
        if relay is not None:
            relay.set_scene(**changes)

    async def remove(self, call_id: str, participant: str) -> None:
        relay = self.relays.get(call_id)
        if relay is not None:
            await relay.remove_agent(participant)

    async def reset_call(self, call_id: str) -> None:
        old = self.relays.get(call_id)
        relay = self.relays[call_id] = Relay(call_id, self.config)
        transcriber = self.transcripts.get(call_id)
        if transcriber is not None:
            transcriber.bind(relay)
        if old is not None:
            recording = old.take_recording()
            if recording is not None:  # the call goes on (a callback): so does its file
                relay.record(recording)
            await old.close()

    async def close_call(self, call_id: str) -> RecordingInfo | None:
        relay = self.relays.pop(call_id, None)
        transcriber = self.transcripts.get(call_id)
        if transcriber is not None:
            transcriber.finish()  # its last words are recognised; stop_transcript waits for them and forgets it
        if relay is None:
            return None
        info = await self._finish(relay)
        if info is not None:
            self._finished[call_id] = info
            while len(self._finished) > 100:
                self._finished.popitem(last=False)
        await relay.close()
        return info

    # -- recording (recorder.py)
    def _recording(self, call_id: str) -> Recording:
        relay = self.relays.get(call_id)
        if relay is None:
            raise NotFound("this call has no media (unknown or ended)", code="not_found")
        if relay.recording is None:
            raise InvalidState("this call is not being recorded", code="invalid_state")
        return relay.recording

    async def start_recording(self, call_id: str, path: str, *, mixed_audio: bool = False) -> str:
        relay = self.relays.get(call_id)
        if relay is None:
            raise NotFound("this call has no media (unknown or ended)", code="not_found")
        if relay.recording is not None:
            raise InvalidState("this call is already being recorded", code="invalid_state")
        if relay.transcode_mode:
            raise InvalidState("calls relayed with relay_mode=transcode cannot be recorded", code="recording_unsupported")
        recording = Recording(path, video_codec=relay.caller_video_codec, mixed_audio=mixed_audio,
                              title=f"call {call_id}")
        relay.recording = recording  # taken before the first await: a second start is refused meanwhile
        try:
            await recording.open()
        except BaseException:
            relay.recording = None
            raise
        if relay.recording is recording and not relay.closed:
            relay.record(recording)
        else:  # the call ended while the file was being created
            await recording.stop()
        log.info("call %s: recording to %s", call_id, recording.path)
        return recording.path

    async def pause_recording(self, call_id: str) -> None:
        self._recording(call_id).pause()

    async def resume_recording(self, call_id: str) -> None:
        self._recording(call_id).resume()

    async def stop_recording(self, call_id: str) -> RecordingInfo | None:
        relay = self.relays.get(call_id)
        if relay is None or relay.recording is None:
            return self._finished.pop(call_id, None)
        return await self._finish(relay)

    async def _finish(self, relay: Relay) -> RecordingInfo | None:
        recording = relay.take_recording()
        if recording is None:
            return None
        info = await recording.stop()
        self.recordings_done += 1
        self.recorded_bytes += info.size_bytes
        self.recording_drops += info.dropped_packets
        log.info("call %s: recording finished: %s, %.1f s, %d bytes, %d paused span(s), %d dropped", relay.call_id,
                 info.path, info.duration_s, info.size_bytes, len(info.paused_spans), info.dropped_packets)
        return info

    def recording_totals(self) -> dict[str, int]:
        """For metrics: recordings running now; recordings finished, their bytes and the media they dropped."""
        return {"active": sum(1 for r in self.relays.values() if r.recording is not None),
                "finished": self.recordings_done, "bytes_written": self.recorded_bytes,
                "dropped": self.recording_drops}

    async def still(self, call_id: str, participant: str = CALLER) -> Still:
        relay = self.relays.get(call_id)
        leg = relay.leg(participant) if relay is not None else None
        producer = leg.producers.get("video") if leg is not None else None
        if producer is None:
            raise NotFound("the caller sends no video", code="no_video")
        jpeg, width, height = await snapshot(producer)
        return Still(jpeg=jpeg, width=width, height=height)

    async def stats(self, call_id: str) -> dict[str, Any]:
        relay = self.relays.get(call_id)
        if relay is None:
            return {}
        stats = await relay.stats()
        if relay.recording is not None:
            stats["recording"] = relay.recording.snapshot()
        return stats
