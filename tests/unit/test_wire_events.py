"""Domain events to wire messages: one table entry per event class, each message valid and serialisable, and the
JSON exactly what the clients (web/caller, web/console, native apps) received before the table replaced the match
(since then, on purpose: cards, contents and chat lines are typed, and write every field, null for no value)."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from gateway import events as ev
from signaling import protocol as p
from signaling import ws
from signaling.wire_events import EVENT_CLASSES, WIRE_RULES, WireRule, WireTable, event_message, event_wire

CALL = "1182d9cfde73099c"
IDENTITY = {"subject": "cust-42", "name": "Dana", "email": None, "phone": None, "issuer": None, "claims": {},
            "verified": True, "expires_at": 1795471854}
CARD = {"call_id": CALL, "call_type": "video", "queue": "default", "priority": 0, "created_at": 1795468254.5,
        "identity": IDENTITY, "location": None, "context": {"screen": None, "steps": [], "crm": {}},
        "transferred_from": None, "history": [], "history_omitted": 0, "callback": False, "callback_phone": None,
        "media_source": "camera", "media_source_reason": None}

# (event, the exact JSON sent before seq is spliced in, the outbox slot). The texts were produced by the
# `match` in signaling/ws.py that the table replaced: no byte of the wire changed.
SAMPLES: list[tuple[object, str, str | None]] = [
    (ev.QueueUpdate(call_id=CALL, position=2, queue_length=3, estimated_wait_s=360),
     '{"type":"queue.position","call_id":"1182d9cfde73099c","position":2,"queue_length":3,"estimated_wait_s":360,'
     '"queue":"default"}', f"queue.position:{CALL}"),
    (ev.QueueUpdate(call_id="c2", position=1, queue_length=1, estimated_wait_s=None, queue="billing"),
     '{"type":"queue.position","call_id":"c2","position":1,"queue_length":1,"estimated_wait_s":null,'
     '"queue":"billing"}', "queue.position:c2"),
    (ev.CallOffered(call_id=CALL, card={**CARD, "consult": {"from": "alice", "from_name": "Alice"}},
                    ring_timeout_s=20.0),
     '{"type":"call.offered","call_id":"1182d9cfde73099c","card":{"call_id":"1182d9cfde73099c","call_type":"video",'
     '"queue":"default","priority":0,"created_at":1795468254.5,"identity":{"subject":"cust-42","name":"Dana",'
     '"email":null,"phone":null,"issuer":null,"claims":{},"verified":true,"expires_at":1795471854},"location":null,'
     '"context":{"screen":null,"steps":[],"crm":{}},"transferred_from":null,"history":[],"history_omitted":0,'
     '"callback":false,"callback_phone":null,"media_source":"camera","media_source_reason":null,"consult":{"from":"alice","from_name":"Alice"},"recording":null},'
     '"ring_timeout_s":20.0}', None),
    (ev.OfferWithdrawn(call_id=CALL, reason="ring_timeout"),
     '{"type":"call.offer_withdrawn","call_id":"1182d9cfde73099c","reason":"ring_timeout"}', None),
    (ev.CallAnswered(call_id=CALL, agent_name="Alice"),
     '{"type":"call.answered","call_id":"1182d9cfde73099c","agent_name":"Alice"}', None),
    (ev.CallEnded(call_id=CALL, reason="agent_hangup", by="agent", duration_s=184.2),
     '{"type":"call.ended","call_id":"1182d9cfde73099c","reason":"agent_hangup","by":"agent","duration_s":184.2}',
     None),
    (ev.CallEnded(call_id=CALL, reason="caller_hangup", by="caller"),
     '{"type":"call.ended","call_id":"1182d9cfde73099c","reason":"caller_hangup","by":"caller","duration_s":null}',
     None),
    (ev.AgentStatusChanged(status="busy", call_id=CALL),
     '{"type":"agent.status","status":"busy","reason":null,"call_id":"1182d9cfde73099c","id":null,'
     '"wrap_up_s":null}', None),
    (ev.AgentStatusChanged(status="wrap_up", call_id=CALL, wrap_up_s=30.0),
     '{"type":"agent.status","status":"wrap_up","reason":null,"call_id":"1182d9cfde73099c","id":null,'
     '"wrap_up_s":30.0}', None),
    (ev.AgentStatusChanged(status="available", reason="ring_timeout"),
     '{"type":"agent.status","status":"available","reason":"ring_timeout","call_id":null,"id":null,'
     '"wrap_up_s":null}', None),
    (ev.MediaState(call_id=CALL, leg="agent", state="connected"),
     '{"type":"media.state","call_id":"1182d9cfde73099c","leg":"agent","state":"connected"}', None),
    (ev.MediaVideo(call_id=CALL, leg="self", state="paused", reason="backlog"),
     '{"type":"media.video","call_id":"1182d9cfde73099c","leg":"self","state":"paused","reason":"backlog"}', None),
    (ev.CallHeld(call_id=CALL, held=True),
     '{"type":"call.held","call_id":"1182d9cfde73099c","held":true}', None),
    (ev.CallTransferring(call_id=CALL, mode="blind"),
     '{"type":"call.transferring","call_id":"1182d9cfde73099c","mode":"blind"}', None),
    (ev.CallTransferred(call_id=CALL, to="bob"),
     '{"type":"call.transferred","call_id":"1182d9cfde73099c","to":"bob"}', None),
    (ev.ConsultState(call_id=CALL, state="joined", colleague="bob"),
     '{"type":"consult.state","call_id":"1182d9cfde73099c","state":"joined","colleague":"bob"}', None),
    (ev.ContentPushed(call_id=CALL, content={"content_id": "a1b2c3d4e5f6", "kind": "text", "text": "Ref 42",
                                             "attachment": None, "by": "alice", "at": 1795468300.5,
                                             "status": "sent"}),
     '{"type":"content.pushed","call_id":"1182d9cfde73099c","content":{"content_id":"a1b2c3d4e5f6","kind":"text",'
     '"title":null,"url":null,"text":"Ref 42","attachment":null,"by":"alice","at":1795468300.5,"status":"sent"}}',
     None),
    (ev.ContentStatus(call_id=CALL, content_id="a1b2c3d4e5f6", status="opened"),
     '{"type":"content.status","call_id":"1182d9cfde73099c","content_id":"a1b2c3d4e5f6","status":"opened"}', None),
    (ev.ChatMessage(call_id=CALL, message={"message_id": "0c1d2e3f4a5b", "from": {"role": "caller", "name": "Dana"},
                                           "text": "hi", "attachment": None, "at": 1795468290.4}),
     '{"type":"chat.message","call_id":"1182d9cfde73099c","message":{"message_id":"0c1d2e3f4a5b",'
     '"from":{"role":"caller","name":"Dana","username":null},"text":"hi","attachment":null,"at":1795468290.4}}',
     None),
    (ev.MediaSourceChanged(call_id=CALL, source="screen"),
     '{"type":"media.source","call_id":"1182d9cfde73099c","leg":"caller","source":"screen","reason":null}', None),
    (ev.MediaSourceChanged(call_id=CALL, source="none", reason="camera_blocked"),
     '{"type":"media.source","call_id":"1182d9cfde73099c","leg":"caller","source":"none","reason":"camera_blocked"}',
     None),
    (ev.CallLocated(call_id=CALL, location={"lat": 52.52, "lon": 13.405, "accuracy_m": 12.5,
                                            "timestamp": 1790000000.0, "source": "device"}),
     '{"type":"call.location","call_id":"1182d9cfde73099c","location":{"lat":52.52,"lon":13.405,"accuracy_m":12.5,'
     '"timestamp":1790000000.0,"source":"device"}}', None),
    (ev.CallRinging(call_id=CALL, ringing=True, agent_name="Alice"),
     '{"type":"call.ringing","call_id":"1182d9cfde73099c","ringing":true,"agent_name":"Alice"}', None),
    (ev.CallRinging(call_id=CALL, ringing=False),
     '{"type":"call.ringing","call_id":"1182d9cfde73099c","ringing":false,"agent_name":null}', None),
    (ev.CallInterrupted(call_id=CALL, rejoined_call_id="9b1c0e4d27a85f63"),
     '{"type":"call.interrupted","call_id":"1182d9cfde73099c","rejoined_call_id":"9b1c0e4d27a85f63",'
     '"reason":"node_lost"}', None),
    (ev.CallBarge(call_id=CALL, active=True, name="Sam"),
     '{"type":"call.barge","call_id":"1182d9cfde73099c","active":true,"name":"Sam"}', None),
    (ev.TranscriptNotice(call_id=CALL, active=True, captions=False),
     '{"type":"transcript.notice","call_id":"1182d9cfde73099c","active":true,"captions":false}', None),
    (ev.Caption(call_id=CALL, speaker={"role": "caller", "name": "Dana"}, utterance=2, text="<b>hi</b> [card number]",
                final=True, start_s=1.5, end_s=2.25),
     '{"type":"caption","call_id":"1182d9cfde73099c","speaker":{"role":"caller","name":"Dana"},"utterance":2,'
     '"text":"<b>hi</b> [card number]","final":true,"start_s":1.5,"end_s":2.25}', None),
    (ev.QueueClosed(call_id=CALL, queue="billing", reason="after_hours", message="Closed.", callback_available=True,
                    message_allowed=False, opens_at=1795503600.0),
     '{"type":"queue.closed","call_id":"1182d9cfde73099c","queue":"billing","reason":"after_hours",'
     '"message":"Closed.","callback_available":true,"message_allowed":false,"opens_at":1795503600.0}', None),
    (ev.QueueClosed(call_id=CALL, queue="default", reason="no_agents", message="Nobody.", callback_available=False,
                    message_allowed=True),
     '{"type":"queue.closed","call_id":"1182d9cfde73099c","queue":"default","reason":"no_agents",'
     '"message":"Nobody.","callback_available":false,"message_allowed":true,"opens_at":null}', None),
    (ev.CallbackOffer(call_id=CALL, queue="default", estimated_wait_s=540),
     '{"type":"callback.offer","call_id":"1182d9cfde73099c","queue":"default","estimated_wait_s":540}', None),
    (ev.CallbackReady(call_id=CALL, agent_name="Alice", rejoin_within_s=120.0),
     '{"type":"callback.ready","call_id":"1182d9cfde73099c","agent_name":"Alice","rejoin_within_s":120.0}', None),
    (ev.ParticipantConnection(call_id=CALL, role="agent", name="Alice", connected=False),
     '{"type":"participant.reconnecting","call_id":"1182d9cfde73099c","role":"agent","name":"Alice","cause":"socket"}', None),
    (ev.ParticipantConnection(call_id=CALL, role="caller", name=None, connected=True),
     '{"type":"participant.reconnected","call_id":"1182d9cfde73099c","role":"caller","name":null,"cause":"socket"}',
     None),
    (ev.ParticipantConnection(call_id=CALL, role="caller", name="Dana", connected=False, cause="media"),
     '{"type":"participant.reconnecting","call_id":"1182d9cfde73099c","role":"caller","name":"Dana","cause":"media"}',
     None),
    (ev.RecordingChanged(call_id=CALL, state="asking", policy="always", consent="ask", by="system"),
     '{"type":"recording.state","call_id":"1182d9cfde73099c","state":"asking","policy":"always","consent":"ask",'
     '"by":"system"}', None),
]


def _event_dataclasses() -> set[type]:
    """Every frozen dataclass defined in gateway/events.py: the events (EventLog is a mutable log, not an event)."""
    return {cls for _, cls in inspect.getmembers(ev, inspect.isclass)
            if cls.__module__ == ev.__name__ and dataclasses.is_dataclass(cls)
            and cls.__dataclass_params__.frozen}  # type: ignore[attr-defined]


def test_every_event_class_has_exactly_one_entry():
    assert len(EVENT_CLASSES) == len(set(EVENT_CLASSES))
    assert set(WIRE_RULES) == set(EVENT_CLASSES)  # a dict: one entry per class at most
    assert _event_dataclasses() == set(EVENT_CLASSES)  # no event defined but left out of the Event union


def test_every_event_message_of_the_protocol_comes_from_the_table():
    """An EventOut model that no event produces would be documented and never sent."""
    assert {rule.model for rule in WIRE_RULES.values()} == set(p.EventOut.__subclasses__())


def test_every_event_class_has_a_sample():
    assert {type(event) for event, _, _ in SAMPLES} == set(EVENT_CLASSES)


@pytest.mark.parametrize("event, text, slot", SAMPLES,
                         ids=[f"{type(event).__name__}-{i}" for i, (event, _, _) in enumerate(SAMPLES)])
def test_each_event_becomes_the_same_wire_message_as_before(event, text, slot):
    message = event_message(event)
    assert isinstance(message, WIRE_RULES[type(event)].model)
    again = type(message).model_validate(message.model_dump())  # valid against its model, and round-trips
    assert again == message
    wire = event_wire(event)
    assert wire.text == text and wire.slot == slot
    data = json.loads(wire.text)
    parsed = p.server_adapter.validate_python(data)  # what a client validating with the schema's union would see
    assert type(parsed) is type(message) and parsed == message
    assert json.loads(wire.with_seq(7)) == {"seq": 7, **data}


def test_signaling_ws_keeps_the_names():
    assert ws.event_message is event_message and ws.event_wire is event_wire


def test_an_unknown_event_raises_type_error():
    @dataclasses.dataclass(frozen=True)
    class Stray:
        call_id: str

    with pytest.raises(TypeError, match="no message for"):
        event_message(Stray(call_id="c1"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no message for"):
        event_wire("queue.position")  # type: ignore[arg-type]


def test_a_subclass_is_not_silently_taken_for_its_parent():
    @dataclasses.dataclass(frozen=True, slots=True)
    class LouderCallHeld(ev.CallHeld):
        volume: int = 11

    with pytest.raises(TypeError):
        event_wire(LouderCallHeld(call_id="c1", held=True))  # type: ignore[arg-type]


def test_a_rule_that_would_drop_or_invent_a_field_is_refused_when_the_table_is_built():
    with pytest.raises(ValueError, match="has no field for \\['connected'\\]"):
        WireTable({ev.ParticipantConnection: WireRule(p.ParticipantOut)})
    with pytest.raises(ValueError, match="omit names fields it does not have"):
        WireTable({ev.CallHeld: WireRule(p.CallHeldOut, omit=frozenset({"muted"}))})
    with pytest.raises(ValueError, match="replace_by names no field"):
        WireTable({ev.CallHeld: WireRule(p.CallHeldOut, replace_by="queue")})
    with pytest.raises(ValueError, match="needs a fixed type"):
        WireTable({ev.ParticipantConnection: WireRule(p.ParticipantOut, omit=frozenset({"connected"}),
                                                      derive=lambda e: {"type": "participant.reconnected"},
                                                      replace_by="call_id")})


def test_a_message_the_model_refuses_is_not_sent():
    # the table validates as the match did: a value outside the model's choices raises instead of going out
    with pytest.raises(ValueError):
        event_wire(ev.MediaVideo(call_id=CALL, leg="caller", state="frozen", reason="backlog"))
