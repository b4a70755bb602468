"""Who hears and sees whom in a call: a pure function from the call's scene to forwarding edges.

Participants are "caller" and agent/supervisor usernames. Slots name a leg's streams: "audio"/"video" are a
participant's main sections, "audio:1" a second audio section (a console offers one, for a consulted colleague or
a whispering supervisor; a caller widget offers one, for a barging supervisor). Nothing is mixed: a participant
who hears two others gets two streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

CALLER = "caller"


class SuperviseMode(StrEnum):
    MONITOR = "monitor"  # listen and watch, unheard
    WHISPER = "whisper"  # ... and speak to the agent only
    BARGE = "barge"  # ... and speak to both


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    source_slot: str
    sink: str
    sink_slot: str


@dataclass
class Scene:
    agent: str | None = None  # the agent talking with the caller
    held: bool = False  # caller on hold: nothing flows between caller and agent
    consult: str | None = None  # a colleague the agent talks to while the caller is on hold (warm transfer)
    supervisors: dict[str, SuperviseMode] = field(default_factory=dict)


def edges(scene: Scene) -> set[Edge]:
    """Every stream that should flow. A sink slot has one source at most: earlier rules win."""
    chosen: dict[tuple[str, str], Edge] = {}

    def flow(source: str, source_slot: str, sink: str, sink_slot: str) -> None:
        if source != sink:
            chosen.setdefault((sink, sink_slot), Edge(source, source_slot, sink, sink_slot))

    agent = scene.agent
    if agent is not None:
        if scene.consult is not None:
            colleague = scene.consult
            flow(agent, "audio", colleague, "audio")
            flow(colleague, "audio", agent, "audio:1")
            flow(CALLER, "video", colleague, "video")  # the colleague sees what the caller shows
            flow(CALLER, "video", agent, "video")
        elif not scene.held:
            flow(CALLER, "audio", agent, "audio")
            flow(CALLER, "video", agent, "video")
            flow(agent, "audio", CALLER, "audio")
            flow(agent, "video", CALLER, "video")
    for supervisor, mode in scene.supervisors.items():
        flow(CALLER, "audio", supervisor, "audio")
        flow(CALLER, "video", supervisor, "video")
        if agent is not None:
            flow(agent, "audio", supervisor, "audio:1")
            if mode in (SuperviseMode.WHISPER, SuperviseMode.BARGE):
                flow(supervisor, "audio", agent, "audio:1")
        if mode is SuperviseMode.BARGE:
            flow(supervisor, "audio", CALLER, "audio:1")
    return set(chosen.values())


def hears(scene: Scene, listener: str) -> set[str]:
    """Whose audio reaches `listener` (for logs, the wallboard and tests)."""
    return {e.source for e in edges(scene) if e.sink == listener and e.sink_slot.startswith("audio")}


def gated(scene: Scene, participants: set[str]) -> set[str]:
    """Participants with a leg whom the scene does not name yet: an agent whose console set up its media while the
    call rang at it. Nothing flows to or from them (see `edges`) until the scene names them (the accept)."""
    named = {CALLER, scene.agent, scene.consult, *scene.supervisors}
    return participants - named
