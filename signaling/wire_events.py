"""Domain events to wire messages: one table, one entry per event class of gateway/events.py.

An entry names the pydantic model of the event's message. The event's fields go to the message's fields of the
same name, except those listed in `omit`; `derive` computes the fields that have no same-named source (the message
type of participant.reconnecting/reconnected, say). `replace_by` names the event field that identifies a
replaceable message: a newer one with the same type and value replaces the pending one in a socket's outbox
(a caller's queue position). A new event is one entry here, plus its section in docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, get_args

from gateway import events as ev
from gateway.events import Event

from . import protocol as p
from .outbox import Wire


@dataclass(frozen=True, slots=True)
class WireRule:
    """How one event class becomes its wire message."""

    model: type[p.EventOut]
    omit: frozenset[str] = frozenset()  # event fields that are not sent (used by `derive` instead)
    derive: Callable[[Any], Mapping[str, Any]] | None = None  # fields computed from the event
    replace_by: str | None = None  # event field: a newer message with the same value replaces the pending one


def _participant(event: ev.ParticipantConnection) -> dict[str, Any]:
    return {"type": "participant.reconnected" if event.connected else "participant.reconnecting"}


WIRE_RULES: Mapping[type, WireRule] = MappingProxyType({
    ev.QueueUpdate: WireRule(p.QueuePosition, replace_by="call_id"),
    ev.CallOffered: WireRule(p.CallOfferedOut),
    ev.OfferWithdrawn: WireRule(p.OfferWithdrawnOut),
    ev.CallAnswered: WireRule(p.CallAnsweredOut),
    ev.CallEnded: WireRule(p.CallEndedOut),
    ev.AgentStatusChanged: WireRule(p.AgentStatusOut),
    ev.MediaState: WireRule(p.MediaStateOut),
    ev.MediaVideo: WireRule(p.MediaVideoOut),
    ev.CallHeld: WireRule(p.CallHeldOut),
    ev.CallTransferring: WireRule(p.CallTransferringOut),
    ev.CallTransferred: WireRule(p.CallTransferredOut),
    ev.ConsultState: WireRule(p.ConsultStateOut),
    ev.ContentPushed: WireRule(p.ContentPushedOut),
    ev.ContentStatus: WireRule(p.ContentStatusOut),
    ev.ChatMessage: WireRule(p.ChatMessageOut),
    ev.QueueClosed: WireRule(p.QueueClosedOut),
    ev.CallbackOffer: WireRule(p.CallbackOfferOut),
    ev.CallbackReady: WireRule(p.CallbackReadyOut),
    ev.MediaSourceChanged: WireRule(p.MediaSourceOut),
    ev.CallLocated: WireRule(p.CallLocationOut),
    ev.CallRinging: WireRule(p.CallRingingOut),
    ev.CallInterrupted: WireRule(p.CallInterruptedOut),
    ev.CallBarge: WireRule(p.CallBargeOut),
    ev.RecordingChanged: WireRule(p.RecordingStateOut),
    ev.TranscriptNotice: WireRule(p.TranscriptNoticeOut),
    ev.Caption: WireRule(p.CaptionOut),
    ev.ParticipantConnection: WireRule(p.ParticipantOut, omit=frozenset({"connected"}), derive=_participant),
})


class _Compiled:
    """A rule made ready for the hot path: the field names to copy and the slot, checked and worked out once."""

    __slots__ = ("model", "copied", "derive", "slot")

    def __init__(self, event_class: type, rule: WireRule) -> None:
        names = [f.name for f in dataclasses.fields(event_class)]
        unknown = set(rule.omit) - set(names)
        if unknown:
            raise ValueError(f"{event_class.__name__}: omit names fields it does not have: {sorted(unknown)}")
        self.copied = tuple(n for n in names if n not in rule.omit)
        missing = [n for n in self.copied if n not in rule.model.model_fields]
        if missing:
            raise ValueError(f"{event_class.__name__}: {rule.model.__name__} has no field for {missing}; "
                             "omit them or derive the message's fields")
        self.model = rule.model
        self.derive = rule.derive
        self.slot: tuple[str, str] | None = None  # (message type, event field)
        if rule.replace_by is not None:
            if rule.replace_by not in names:
                raise ValueError(f"{event_class.__name__}: replace_by names no field: {rule.replace_by}")
            default = rule.model.model_fields["type"].default
            if not isinstance(default, str):
                raise ValueError(f"{rule.model.__name__}: a replaceable message needs a fixed type")
            self.slot = (default, rule.replace_by)

    def message(self, event: Any) -> p.EventOut:
        fields = {name: getattr(event, name) for name in self.copied}
        if self.derive is not None:
            fields.update(self.derive(event))
        return self.model(**fields)

    def slot_of(self, event: Any) -> str | None:
        return None if self.slot is None else f"{self.slot[0]}:{getattr(event, self.slot[1])}"


class WireTable:
    """The compiled table: `message(event)` is the event's pydantic message, `wire(event)` its JSON, serialised once
    (without `seq`, which each recipient's session splices in)."""

    def __init__(self, rules: Mapping[type, WireRule]) -> None:
        self._rules = {cls: _Compiled(cls, rule) for cls, rule in rules.items()}

    def __contains__(self, event_class: object) -> bool:
        return event_class in self._rules

    def _rule(self, event: Event) -> _Compiled:
        rule = self._rules.get(type(event))
        if rule is None:
            raise TypeError(f"no message for {event!r}")
        return rule

    def message(self, event: Event) -> p.EventOut:
        return self._rule(event).message(event)

    def slot(self, event: Event) -> str | None:
        """The outbox slot of the event's message: None unless a newer one replaces it while pending."""
        return self._rule(event).slot_of(event)

    def wire(self, event: Event) -> Wire:
        rule = self._rule(event)
        return Wire(rule.message(event).model_dump_json(exclude={"seq"}), rule.slot_of(event))


@dataclass(frozen=True, slots=True)
class Relayed:
    """An event's message serialised by another node (the home of a call, for an agent whose console is here:
    signaling/cluster_calls.py): delivered to the local session as it is, numbered in that session's sequence."""

    text: str
    slot: str | None = None


EVENT_CLASSES: tuple[type, ...] = get_args(Event)
WIRE_TABLE = WireTable(WIRE_RULES)


def event_message(event: Event) -> p.EventOut:
    """The event's wire message (TypeError for an object that is not a known event)."""
    return WIRE_TABLE.message(event)


def event_wire(event: Event) -> Wire:
    """The event's message, serialised; a queue position replaces the same call's pending position."""
    if isinstance(event, Relayed):
        return Wire(event.text, event.slot)
    return WIRE_TABLE.wire(event)
