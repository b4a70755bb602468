"""A media plane without media, for engine tests that run in milliseconds: it records what the engine asked, answers
offers with a fixed SDP, and lets a test emit leg events (a leg connecting, failing, a worker dying)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from gateway.errors import MediaError, InvalidState, NotFound
from gateway.media.plane import CALLER, Answer, LegEvent, LegListener, RecordingInfo, Still, TranscriptListener, TranscriptSegment

FAKE_RECORDING = bytes(range(256)) * 16  # what the fake recorder "writes" (4 KiB, each byte value)
FAKE_ANSWER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n"


class FakePlane:
    def __init__(self) -> None:
        self.calls: dict[str, dict[str, str]] = {}  # call id -> participant -> leg id
        self.scenes: dict[str, dict[str, Any]] = {}
        self.asked: list[tuple[Any, ...]] = []  # every request, in order
        self.closed = False
        self.recordings: dict[str, dict[str, Any]] = {}  # call id -> {path, paused, spans, started_at}
        self.fail_recording = False  # start_recording raises (a recorder that cannot start)
        self._listeners: list[LegListener] = []
        self._transcript_listeners: list[TranscriptListener] = []
        self.transcribing: set[str] = set()
        self._ids = itertools.count(1)

    # -- MediaPlane
    def subscribe(self, listener: LegListener) -> None:
        self._listeners.append(listener)

    def subscribe_transcript(self, listener: TranscriptListener) -> None:
        self._transcript_listeners.append(listener)

    def start_transcript(self, call_id: str) -> None:
        if call_id not in self.calls:
            raise InvalidState("this call has no media (it has ended)", code="call_ended")
        self.asked.append(("start_transcript", call_id))
        self.transcribing.add(call_id)

    async def stop_transcript(self, call_id: str) -> bool:
        self.asked.append(("stop_transcript", call_id))
        self.transcribing.discard(call_id)
        return True

    async def start(self) -> None:
        self.asked.append(("start",))

    async def close(self) -> None:
        self.closed = True
        self.calls.clear()

    def has_call(self, call_id: str) -> bool:
        return call_id in self.calls

    def open_call(self, call_id: str) -> None:
        self.asked.append(("open_call", call_id))
        self.calls.setdefault(call_id, {})
        self.scenes.setdefault(call_id, {})

    async def answer(self, call_id: str, participant: str, sdp: str) -> Answer:
        self.asked.append(("answer", call_id, participant))
        legs = self.calls.get(call_id)
        if legs is None:
            raise InvalidState("this call has no media (it has ended)", code="call_ended")
        if sdp == "bad":
            raise MediaError("malformed SDP: fake", code="bad_sdp")
        # A second offer of the same participant replaces its leg (a new leg id), as the real planes do.
        legs[participant] = f"fake:{call_id}:{participant}#{next(self._ids)}"
        return Answer(leg_id=legs[participant], sdp=FAKE_ANSWER)

    async def add_candidate(self, call_id: str, participant: str, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        if participant not in self.calls.get(call_id, {}):
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        self.asked.append(("add_candidate", call_id, participant, candidate))

    def set_scene(self, call_id: str, **changes: Any) -> None:
        self.asked.append(("set_scene", call_id, changes))
        if call_id in self.scenes:
            self.scenes[call_id].update(changes)

    async def remove(self, call_id: str, participant: str) -> None:
        self.asked.append(("remove", call_id, participant))
        self.calls.get(call_id, {}).pop(participant, None)

    async def reset_call(self, call_id: str) -> None:
        self.asked.append(("reset_call", call_id))
        self.calls[call_id] = {}

    async def still(self, call_id: str, participant: str = CALLER) -> Still:
        if participant not in self.calls.get(call_id, {}):
            raise NotFound("the caller sends no video", code="no_video")
        return Still(jpeg=b"\xff\xd8fake\xff\xd9", width=2, height=2)

    async def close_call(self, call_id: str) -> None:
        self.asked.append(("close_call", call_id))
        self.calls.pop(call_id, None)
        self.scenes.pop(call_id, None)

    async def stats(self, call_id: str) -> dict[str, Any]:
        return {}

    async def start_recording(self, call_id: str, path: str, *, mixed_audio: bool = False) -> None:
        self.asked.append(("start_recording", call_id, path, mixed_audio))
        if call_id not in self.calls:
            raise NotFound(f"no call {call_id}", code="not_found")
        if call_id in self.recordings:
            raise InvalidState("this call is being recorded already", code="invalid_state")
        if self.fail_recording:
            raise MediaError("the recorder could not open its file", code="recording_failed")
        self.recordings[call_id] = {"path": path, "paused": None, "spans": [], "started_at": time.time()}

    async def pause_recording(self, call_id: str) -> None:
        self.asked.append(("pause_recording", call_id))
        rec = self.recordings.get(call_id)
        if rec is not None and rec["paused"] is None:
            rec["paused"] = time.time()

    async def resume_recording(self, call_id: str) -> None:
        self.asked.append(("resume_recording", call_id))
        rec = self.recordings.get(call_id)
        if rec is not None and rec["paused"] is not None:
            rec["spans"].append((rec["paused"] - rec["started_at"], time.time() - rec["started_at"]))
            rec["paused"] = None

    async def stop_recording(self, call_id: str) -> RecordingInfo | None:
        """Writes a small file at the path (+ .webm) so that the archive has something to hash."""
        self.asked.append(("stop_recording", call_id))
        rec = self.recordings.pop(call_id, None)
        if rec is None:
            return None
        if rec["paused"] is not None:
            rec["spans"].append((rec["paused"] - rec["started_at"], time.time() - rec["started_at"]))
        path = Path(rec["path"] + ".webm")
        path.write_bytes(FAKE_RECORDING)
        return RecordingInfo(path=str(path), container="webm", started_at=rec["started_at"],
                             duration_s=time.time() - rec["started_at"], size_bytes=len(FAKE_RECORDING),
                             tracks=({"participant": "caller", "kind": "audio", "codec": "opus"},),
                             paused_spans=tuple(rec["spans"]))

    # -- what a test makes happen
    def leg_id(self, call_id: str, participant: str) -> str:
        return self.calls[call_id][participant]

    def emit(self, call_id: str, participant: str, kind: str, leg_id: str | None = None, **fields: Any) -> None:
        event = LegEvent(call_id=call_id, participant=participant,
                         leg_id=leg_id or self.leg_id(call_id, participant), kind=kind, **fields)  # type: ignore[arg-type]
        for listener in list(self._listeners):
            listener(event)

    def say(self, call_id: str, participant: str, text: str, final: bool = True, utterance: int = 1,
            start_s: float = 0.0, end_s: float = 1.0) -> None:
        """A segment as the recogniser would deliver it (not redacted)."""
        segment = TranscriptSegment(call_id=call_id, participant=participant, utterance=utterance, text=text,
                                    final=final, start_s=start_s, end_s=end_s)
        for listener in list(self._transcript_listeners):
            listener(segment)
