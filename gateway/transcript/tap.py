"""The media side of a call's transcript: a tap on the audio producer of each participant's leg.

A tap is a read-only observer of a Producer (gateway/media/forward.py `Producer.taps`, as a recording's taps are),
next to the forwarders that carry the audio to the other legs: it gets the same RTP packets (packet relay) or assembled frames (frame relay) and hands the Opus
payload to the participant's SpeechStream. Forwarding is not touched and nothing is sent anywhere. When a leg is
replaced (a network change) the participant's tap moves to its new producer and its stream carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..media.aiortc_internals import uint16_gt
from ..media.plane import TranscriptSegment
from .engine import SpeechEngine, TranscriptConfig
from .stream import Result, SpeechStream

log = logging.getLogger(__name__)

AUDIO_SLOT = "audio"  # a participant's own microphone (further audio sections carry what others say to it)
FINISH_TIMEOUT_S = 30.0


class AudioTap:
    """Reads one Producer's Opus payloads (it hangs in forward.Producer.taps, beside a recording's taps): late and
    duplicate packets are dropped; anything but Opus is ignored."""

    def __init__(self, producer: Any, on_payload: Callable[[bytes], None]) -> None:
        self.producer = producer
        self._on_payload = on_payload
        self._last_seq: int | None = None
        self.payloads = 0

    def on_packet(self, packet: Any, keyframe_start: bool) -> None:  # packet relay
        seq = packet.sequence_number
        if self._last_seq is not None and not uint16_gt(seq, self._last_seq):
            return
        self._last_seq = seq
        self._take(packet.payload)

    def on_frame(self, frame: Any, discontinuity: bool) -> None:  # frame relay
        self._take(frame.data)

    def _take(self, payload: bytes) -> None:
        if self.producer.codec.lower() != "opus":
            return
        self.payloads += 1
        self._on_payload(payload)

    def attach(self) -> None:
        if self not in self.producer.taps:
            self.producer.taps.append(self)

    def detach(self) -> None:
        if self in self.producer.taps:
            self.producer.taps.remove(self)


class CallTranscriber:
    """Taps every participant of one call's Relay while the transcript runs; results go to `emit` as segments."""

    def __init__(self, call_id: str, engine: SpeechEngine, config: TranscriptConfig,
                 emit: Callable[[TranscriptSegment], None]) -> None:
        self.call_id = call_id
        self._engine = engine
        self._config = config
        self._emit = emit
        self._started = time.monotonic()
        self._relay: Any = None
        self.streams: dict[str, SpeechStream] = {}
        self._taps: dict[str, tuple[Any, AudioTap]] = {}  # participant -> (producer, tap)
        self._finishing: dict[str, asyncio.Task[None]] = {}  # participants who left: their last words
        self._done: asyncio.Task[None] | None = None
        self._timed_out = False

    # -- the relay
    def bind(self, relay: Any) -> None:
        """Follow this relay's legs (again after a reset of the call's media)."""
        if self._relay is not None:
            self._relay.unobserve(self.sync)
        self._relay = relay
        relay.observe(self.sync)

    def sync(self, relay: Any) -> None:
        """Tap each participant's current audio producer; untap those that left (a Relay observer)."""
        if self._done is not None or relay is not self._relay:
            return
        present: set[str] = set()
        for participant, leg in list(relay.legs.items()):
            producer = leg.producers.get(AUDIO_SLOT)
            if producer is None:
                continue
            present.add(participant)
            tapped = self._taps.get(participant)
            if tapped is not None and tapped[0] is producer:
                continue
            stream = self.streams.get(participant)
            if stream is None or stream.closed:
                stream = self.streams[participant] = SpeechStream(
                    self._engine, self._config, self._sink(participant), started=self._started)
            else:
                stream.new_source()
            if tapped is not None:
                tapped[1].detach()
            tap = AudioTap(producer, stream.feed_opus)
            tap.attach()
            self._taps[participant] = (producer, tap)
        for participant in set(self._taps) - present:
            _, tap = self._taps.pop(participant)
            tap.detach()
            stream = self.streams.get(participant)
            if stream is not None and participant not in self._finishing:
                self._finishing[participant] = asyncio.ensure_future(stream.finish())

    def _sink(self, participant: str) -> Callable[[Result], None]:
        def sink(result: Result) -> None:
            self._emit(TranscriptSegment(call_id=self.call_id, participant=participant, utterance=result.utterance,
                                         text=result.text, final=result.final, start_s=result.start_s,
                                         end_s=result.end_s))
        return sink

    def _untap(self) -> None:
        if self._relay is not None:
            self._relay.unobserve(self.sync)
        for _, tap in self._taps.values():
            tap.detach()
        self._taps.clear()

    @property
    def complete(self) -> bool:
        """Every utterance heard so far was recognised (none lost to a failing engine or the finish timeout)."""
        return not self._timed_out and not any(stream.failures for stream in self.streams.values())

    # -- the end
    def finish(self) -> asyncio.Task[None]:
        """Stop listening now; the task ends once the last words of everyone have been recognised (idempotent)."""
        if self._done is None:
            self._untap()
            streams = list(self.streams.values())

            async def done() -> None:
                waits = [stream.finish() for stream in streams] + list(self._finishing.values())
                try:
                    await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), FINISH_TIMEOUT_S)
                except asyncio.TimeoutError:
                    log.error("transcript of call %s: recognition did not finish within %.0f s", self.call_id,
                              FINISH_TIMEOUT_S)
                    self._timed_out = True
                    self._stop_streams()

            self._done = asyncio.ensure_future(done())
        return self._done

    def cancel(self) -> None:
        """Stop at once (the plane is closing): results not out yet are lost."""
        self._stop_streams()
        if self._done is not None and not self._done.done():
            self._done.cancel()

    def _stop_streams(self) -> None:
        self._untap()
        for stream in self.streams.values():
            stream.cancel()
        for task in self._finishing.values():
            task.cancel()
