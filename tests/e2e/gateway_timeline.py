"""What the gateway sees of a call's media setup, for the click-to-first-frame measurement's breakdown.

Measurement only: `install(report)` wraps a few methods of the in-process media plane (Leg.answer, the leg's peer
connection states, the caller's first packets, the first video packet sent to the agent) so that each step is
reported once per leg, as `report(call_id, step, at_ms)` with `at_ms` on the wall clock (time.time(), the clock
the browsers' performance.timeOrigin + performance.now() is on: one machine, so the two line up). Nothing in the
gateway depends on it. With media in worker processes (--media-workers N) the legs live elsewhere and only the
browsers' steps are measured.

Steps of the call: `call.start` (the engine started it: queued and dispatched), `call.durable` (its record is
committed: call.queued goes to the caller). Steps, per role (caller, agent): `<role>.offer` (its offer reached the media plane), `<role>.answer` (the answer is
ready), `<role>.ice` (ICE checks succeeded), `<role>.dtls` (DTLS done: the leg is connected); for the caller
`caller.rtp` (its first video packet) and `caller.keyframe` (the start of its first keyframe); for the agent
`agent.video` (the first video packet actually sent to the agent).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from gateway.engine.switchboard import Switchboard
from gateway.media.leg import Leg
from gateway.store.records import CallRecorder

Report = Callable[[str, str, float], None]


def _now_ms() -> float:
    return time.time() * 1000


def install(report: Report) -> None:
    """Wrap Leg's methods in this process (once: the measurement's gateway child calls it at start)."""
    answer = Leg.answer
    tap = Leg._tap
    bind = Leg._bind

    def once(leg: Leg, step: str) -> None:
        seen = leg.__dict__.setdefault("_timeline_seen", set())
        if step not in seen:
            seen.add(step)
            call_id = leg.id.rsplit(":", 1)[0]
            report(call_id, f"{leg.role.value}.{step}", _now_ms())

    @functools.wraps(answer)
    async def timed_answer(self: Leg, offer_sdp: str, **kwargs: Any) -> str:
        once(self, "offer")
        pc = self.pc

        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            if pc.iceConnectionState in ("checking",):
                once(self, "checking")
            if pc.iceConnectionState in ("connected", "completed"):
                once(self, "ice")

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState == "connected":
                once(self, "dtls")

        sdp = await answer(self, offer_sdp, **kwargs)
        once(self, "answer")
        return sdp

    @functools.wraps(tap)
    def timed_tap(self: Leg, transceiver: Any, slot: str) -> None:
        tap(self, transceiver, slot)
        producer = self.producers.get(slot)
        if producer is None or transceiver.kind != "video" or slot != "video":
            return
        on_packet = producer.on_packet

        def timed_on_packet(packet: Any) -> None:
            once(self, "rtp")
            keyframes = producer.keyframes
            on_packet(packet)
            if producer.keyframes > keyframes:
                once(self, "keyframe")

        producer.on_packet = timed_on_packet  # type: ignore[method-assign]

    @functools.wraps(bind)
    def timed_bind(self: Leg, transceiver: Any) -> None:
        bind(self, transceiver)
        consumer = self.consumers.get(self._slots.get(transceiver, ""))
        if consumer is None or getattr(consumer, "kind", None) != "video" or not hasattr(consumer, "forward"):
            return
        forward = consumer.forward

        def timed_forward(packet: Any, keyframe_start: bool) -> None:
            sent = consumer.stats.frames_out
            forward(packet, keyframe_start)
            if consumer.stats.frames_out > sent:
                once(self, "video")

        consumer.forward = timed_forward

    start_call = Switchboard.start_call
    durable = CallRecorder.durable

    @functools.wraps(start_call)
    def timed_start_call(self: Switchboard, *args: Any, **kwargs: Any) -> Any:
        call = start_call(self, *args, **kwargs)
        report(call.id, "call.start", _now_ms())
        return call

    @functools.wraps(durable)
    async def timed_durable(self: CallRecorder, call_id: str) -> None:
        await durable(self, call_id)
        report(call_id, "call.durable", _now_ms())

    Switchboard.start_call = timed_start_call  # type: ignore[method-assign]
    CallRecorder.durable = timed_durable  # type: ignore[method-assign]
    Leg.answer = timed_answer  # type: ignore[method-assign]
    Leg._tap = timed_tap  # type: ignore[method-assign]
    Leg._bind = timed_bind  # type: ignore[method-assign]
