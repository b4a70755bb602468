"""A Relay per call: the caller's leg and the agents' legs, and which producer feeds which consumer."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ClosedError, InvalidState
from .leg import Leg, LegRole, MediaConfig

log = logging.getLogger(__name__)


class Relay:
    """Forwards the caller's encoded tracks to the agent's leg and the agent's back, without transcoding."""

    def __init__(self, call_id: str, config: MediaConfig) -> None:
        self.call_id = call_id
        self.config = config
        self.caller: Leg | None = None
        self.agents: dict[str, Leg] = {}
        self.closed = False
        self._decoded_relay: Any = None

    def _media_relay(self) -> Any:
        if self._decoded_relay is None:
            from aiortc.contrib.media import MediaRelay

            self._decoded_relay = MediaRelay()
        return self._decoded_relay

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"the media of call {self.call_id} is closed")

    async def caller_offer(self, sdp: str) -> tuple[Leg, str]:
        self._check_open()
        if self.caller is not None:
            raise InvalidState("the caller's media is already set up", code="renegotiation")
        leg = Leg(f"{self.call_id}:caller", LegRole.CALLER, self.config)
        self.caller = leg
        try:
            answer = await leg.answer(sdp)
        except Exception:
            self.caller = None
            raise
        for agent_leg in self.agents.values():
            self._link(leg, agent_leg)
            self._link(agent_leg, leg)
        return leg, answer

    async def agent_offer(self, agent_id: str, sdp: str) -> tuple[Leg, str]:
        self._check_open()
        if agent_id in self.agents:
            raise InvalidState("this agent's media is already set up", code="renegotiation")
        video_codec = self.caller.video_codec if self.caller is not None else None
        leg = Leg(f"{self.call_id}:agent:{agent_id}", LegRole.AGENT, self.config)
        self.agents[agent_id] = leg
        try:
            answer = await leg.answer(sdp, video_codec=video_codec)
        except Exception:
            self.agents.pop(agent_id, None)
            raise
        if self.caller is not None:
            self._link(self.caller, leg)
            self._link(leg, self.caller)
        return leg, answer

    def _link(self, source: Leg, sink: Leg) -> None:
        if source.transcode:
            for kind, track in source.remote_tracks.items():
                consumer = sink.consumers.get(kind)
                if consumer is not None:
                    consumer.set_source(self._media_relay().subscribe(track, buffered=False))
            return
        for kind, producer in source.producers.items():
            consumer = sink.consumers.get(kind)
            if consumer is None:
                continue
            producer.attach(consumer)

    async def remove_agent(self, agent_id: str) -> None:
        leg = self.agents.pop(agent_id, None)
        if leg is None:
            return
        for producer in leg.producers.values():
            producer.close()
        if self.caller is not None:
            for kind, consumer in leg.consumers.items():
                producer = self.caller.producers.get(kind)
                if producer is not None:
                    producer.detach(consumer)
        await leg.close()

    def leg(self, participant: str) -> Leg | None:
        return self.caller if participant == "caller" else self.agents.get(participant)

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if self.caller is not None:
            result["caller"] = await self.caller.stats()
        for agent_id, leg in self.agents.items():
            result[f"agent:{agent_id}"] = await leg.stats()
        return result

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        legs = ([self.caller] if self.caller else []) + list(self.agents.values())
        await asyncio.gather(*(leg.close() for leg in legs), return_exceptions=True)
