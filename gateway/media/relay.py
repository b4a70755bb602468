"""A Relay per call: one leg per participant, and the forwarding edges its scene asks for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..errors import ClosedError, InvalidState
from .leg import Leg, LegRole, MediaConfig
from .recorder import Recording
from .topology import CALLER, Edge, Scene, edges, gated
from .warmup import KeyframeWarmer

log = logging.getLogger(__name__)

Observer = Callable[["Relay"], None]  # told the relay after each change of its legs or scene


class Relay:
    """Forwards encoded streams between the legs of one call, as its Scene says, without transcoding."""

    def __init__(self, call_id: str, config: MediaConfig) -> None:
        self.call_id = call_id
        self.config = config
        self.legs: dict[str, Leg] = {}
        self.scene = Scene()
        self._applied: set[Edge] = set()
        self.closed = False
        self._decoded_relay: Any = None
        self.replaced: dict[str, int] = {}  # participant -> legs replaced by a new offer (media recoveries)
        self._closing: set[asyncio.Future[None]] = set()  # replaced legs being closed
        self._negotiating: dict[str, Leg] = {}  # participant -> its new leg while its offer is being answered
        self._locks: dict[str, asyncio.Lock] = {}
        self._observers: list[Observer] = []  # what taps the legs' producers: a recording, a transcript
        # While a leg waits behind the gate (its agent has not accepted yet), keep the caller's keyframe fresh.
        self._warmer = KeyframeWarmer(self._caller_video) if config.relay_mode == "packet" else None
        self.recording: Recording | None = None  # the call's recording, tapping the legs' producers (recorder.py)

    @property
    def caller(self) -> Leg | None:
        return self.legs.get(CALLER)

    @property
    def agents(self) -> dict[str, Leg]:
        return {name: leg for name, leg in self.legs.items() if name != CALLER}

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the media of call {self.call_id} is closed")

    async def caller_offer(self, sdp: str) -> tuple[Leg, str]:
        # Normally the caller's leg comes first and sets the call's codec; after a callback the agent's leg may
        # already exist, and then the caller must use its codec (nothing is transcoded).
        codecs = [leg.video_codec for leg in self.legs.values() if leg.video_codec]
        return await self._add_leg(CALLER, LegRole.CALLER, sdp, video_codec=codecs[0] if codecs else None)

    async def agent_offer(self, agent_id: str, sdp: str) -> tuple[Leg, str]:
        caller = self.caller
        return await self._add_leg(agent_id, LegRole.AGENT, sdp, video_codec=caller.video_codec if caller else None)

    async def _add_leg(self, participant: str, role: LegRole, sdp: str, video_codec: str | None) -> tuple[Leg, str]:
        """A participant's offer. A second offer from the same participant (its network changed, its app or console
        reloaded) replaces its leg: the new leg is answered first (a bad offer leaves the old one as it was), then
        takes the old one's place in the scene, and the old one is closed without a word (its events would only
        confuse: the participant has moved on to its new peer connection). Offers of one participant are taken one
        at a time."""
        self._check_open()
        lock = self._locks.setdefault(participant, asyncio.Lock())
        async with lock:
            self._check_open()
            old = self.legs.get(participant)
            if old is not None and participant == CALLER and len(self.legs) == 1:
                video_codec = None  # alone in the call, the caller sets the call's codec afresh
            leg = Leg(f"{self.call_id}:{participant}", role, self.config)
            self._negotiating[participant] = leg  # its trickled candidates go to it
            if old is not None:
                old.hush()  # while the new one is negotiated, the old one's failure must not end the call
            try:
                answer = await leg.answer(sdp, video_codec=video_codec)
            except Exception:
                if old is not None:
                    old.unhush()
                raise
            finally:
                if self._negotiating.get(participant) is leg:
                    del self._negotiating[participant]
            if self.closed:
                await leg.close()
                raise ClosedError(f"the media of call {self.call_id} is closed")
            if old is not None and self.legs.get(participant) is old:
                self._unlink(participant)
                closing = asyncio.ensure_future(old.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                self.replaced[participant] = self.replaced.get(participant, 0) + 1
                log.info("call %s: %s's media leg replaced by a new offer", self.call_id, participant)
            self.legs[participant] = leg
            self.refresh()
            return leg, answer

    def _unlink(self, participant: str) -> None:
        """Undo the forwarding edges of a participant's leg while it is still there to resolve them."""
        for edge in [e for e in self._applied if participant in (e.source, e.sink)]:
            ends = self._endpoints(edge)
            if ends is not None:
                self._detach(*ends)
            self._applied.discard(edge)

    def set_scene(self, **changes: Any) -> None:
        for name, value in changes.items():
            if not hasattr(self.scene, name):
                raise AttributeError(name)
            setattr(self.scene, name, value)
        self.refresh()

    def refresh(self) -> None:
        """Make the forwarding match the scene: detach what must stop, then attach what must start."""
        if self.closed:
            return
        wanted = {e for e in edges(self.scene) if self._endpoints(e) is not None}
        for edge in self._applied - wanted:
            ends = self._endpoints(edge)
            if ends is not None:
                self._detach(*ends)
        for edge in wanted - self._applied:
            self._attach(*self._endpoints(edge))  # type: ignore[misc]
        self._applied = wanted
        if self._warmer is not None:
            self._warmer.set_active(bool(self.gated()))
        for observer in list(self._observers):
            observer(self)

    def observe(self, observer: Observer) -> None:
        """Tell `observer` this relay now and after each change of its legs or scene, until unobserve()."""
        if observer not in self._observers:
            self._observers.append(observer)
        observer(self)

    def unobserve(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def record(self, recording: Recording) -> None:
        """Record this call's media from now on (the recording's taps follow leg changes and the scene)."""
        self._check_open()
        if self.transcode_mode:
            raise InvalidState("calls relayed with relay_mode=transcode cannot be recorded", code="recording_unsupported")
        self.recording = recording
        self.observe(recording.observe)

    def take_recording(self) -> Recording | None:
        """Stop tapping this relay for its recording and hand the recording over (to be stopped, or to follow the
        call's next relay)."""
        recording, self.recording = self.recording, None
        if recording is not None:
            self.unobserve(recording.observe)
            recording.follow({}, set())
        return recording

    @property
    def transcode_mode(self) -> bool:
        return self.config.relay_mode == "transcode"

    @property
    def caller_video_codec(self) -> str | None:
        """The codec of the video the caller sends; None: the caller sends no video (or has no leg yet)."""
        producer = self._caller_video()
        return producer.codec or None if producer is not None else None

    def gated(self) -> set[str]:
        """Participants whose leg is up but kept out of the call (an agent who has not accepted yet)."""
        return gated(self.scene, set(self.legs))

    def _caller_video(self) -> Any:
        caller = self.caller
        return caller.producers.get("video") if caller is not None else None

    def _endpoints(self, edge: Edge) -> tuple[Any, Any] | None:
        source, sink = self.legs.get(edge.source), self.legs.get(edge.sink)
        if source is None or sink is None:
            return None
        if source.transcode:
            producer = source.remote_tracks.get(edge.source_slot)
        else:
            producer = source.producers.get(edge.source_slot)
        consumer = sink.consumers.get(edge.sink_slot)
        if producer is None or consumer is None:
            return None
        return producer, consumer

    def _attach(self, producer: Any, consumer: Any) -> None:
        if hasattr(producer, "attach"):
            producer.attach(consumer)
        else:  # transcode mode: a decoded track, fanned out by aiortc's MediaRelay
            consumer.set_source(self._media_relay().subscribe(producer, buffered=False))

    def _detach(self, producer: Any, consumer: Any) -> None:
        if hasattr(producer, "detach"):
            producer.detach(consumer)
        else:
            consumer.set_source(None)

    def _media_relay(self) -> Any:
        if self._decoded_relay is None:
            from aiortc.contrib.media import MediaRelay

            self._decoded_relay = MediaRelay()
        return self._decoded_relay

    def heard(self) -> set[str]:
        """Whose audio flows to someone now."""
        return {e.source for e in self._applied if e.sink_slot.startswith("audio")}

    def hears(self, listener: str) -> set[str]:
        """Whose audio actually flows to `listener` now."""
        return {e.source for e in self._applied if e.sink == listener and e.sink_slot.startswith("audio")}

    async def remove_agent(self, agent_id: str) -> None:
        leg = self.legs.get(agent_id)
        if leg is None:
            return
        self._unlink(agent_id)
        del self.legs[agent_id]
        self.refresh()
        await leg.close()

    def leg(self, participant: str) -> Leg | None:
        """The participant's newest leg (the one its offer is being answered for, if any)."""
        return self._negotiating.get(participant) or self.legs.get(participant)

    async def stats(self) -> dict[str, Any]:
        return {name: {**await leg.stats(), "recoveries": self.replaced.get(name, 0)}
                for name, leg in self.legs.items()}

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.take_recording()  # its owner (the plane) finalizes it
        if self._warmer is not None:
            await self._warmer.close()
        await asyncio.gather(*(leg.close() for leg in self.legs.values()), *self._closing, return_exceptions=True)
