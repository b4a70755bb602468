"""A Relay per call: one leg per participant, and the forwarding edges its scene asks for."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ClosedError, InvalidState
from .leg import Leg, LegRole, MediaConfig
from .topology import CALLER, Edge, Scene, edges

log = logging.getLogger(__name__)


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
        self._check_open()
        if participant in self.legs:
            raise InvalidState("this participant's media is already set up", code="renegotiation")
        leg = Leg(f"{self.call_id}:{participant}", role, self.config)
        self.legs[participant] = leg
        try:
            answer = await leg.answer(sdp, video_codec=video_codec)
        except Exception:
            self.legs.pop(participant, None)
            raise
        self.refresh()
        return leg, answer

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

    def hears(self, listener: str) -> set[str]:
        """Whose audio actually flows to `listener` now."""
        return {e.source for e in self._applied if e.sink == listener and e.sink_slot.startswith("audio")}

    async def remove_agent(self, agent_id: str) -> None:
        leg = self.legs.get(agent_id)
        if leg is None:
            return
        # Undo the leg's edges while it is still there to resolve them, then let the scene decide the rest.
        for edge in [e for e in self._applied if agent_id in (e.source, e.sink)]:
            ends = self._endpoints(edge)
            if ends is not None:
                self._detach(*ends)
            self._applied.discard(edge)
        del self.legs[agent_id]
        self.refresh()
        await leg.close()

    def leg(self, participant: str) -> Leg | None:
        return self.legs.get(participant)

    async def stats(self) -> dict[str, Any]:
        return {name: await leg.stats() for name, leg in self.legs.items()}

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.gather(*(leg.close() for leg in self.legs.values()), return_exceptions=True)
