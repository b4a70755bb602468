from __future__ import annotations

import json

import pytest

from signaling import protocol as p


def parse(obj, adapter=p.caller_adapter, limit=65536):
    return p.parse(adapter, obj if isinstance(obj, str) else json.dumps(obj), limit)


def test_valid_caller_messages():
    msg = parse({"type": "call.start", "id": "1", "call_type": "screen",
                 "location": {"lat": 1, "lon": 2, "accuracy_m": 3, "timestamp": 4},
                 "context": {"screen": "home", "steps": ["a"], "crm": {"k": "v"}}})
    assert isinstance(msg, p.StartCall) and msg.location.source == "device"
    assert isinstance(parse({"type": "ice.candidate", "candidate": None}), p.IceCandidate)


@pytest.mark.parametrize("raw, code", [
    ("nope", "bad_json"),
    ("1", "bad_message"),
    ({"type": "x", "id": "1"}, "unknown_type"),
    ({"type": "call.accept", "id": "1", "call_id": "c"}, "unknown_type"),  # an agent message on the caller socket
    ({"type": "call.start", "id": "1"}, "invalid_message"),
    ({"type": "call.start", "id": "", "call_type": "voice"}, "invalid_message"),
    ({"type": "call.start", "id": "1", "call_type": "voice", "location": {"lat": 1, "lon": 2, "accuracy_m": 3,
                                                                           "timestamp": 4, "source": "gps-verified"}},
     "invalid_message"),
])
def test_errors(raw, code):
    with pytest.raises(p.ProtocolError) as info:
        parse(raw)
    assert info.value.code == code


def test_size_cap():
    with pytest.raises(p.ProtocolError) as info:
        parse({"type": "ping", "id": "1", "x": "y" * 100}, limit=50)
    assert info.value.code == "message_too_large" and "limit of 50" in info.value.reason


def test_agent_status_only_settable_values():
    assert parse({"type": "agent.status", "id": "1", "status": "away"}, p.agent_adapter).status == "away"
    with pytest.raises(p.ProtocolError):
        parse({"type": "agent.status", "id": "1", "status": "busy"}, p.agent_adapter)


def test_json_schema_covers_every_message():
    schema = json.dumps(p.json_schema())
    for name in ("call.start", "sdp.offer", "ice.candidate", "call.accept", "welcome", "queue.position",
                 "call.offered", "call.ended", "error"):
        assert name in schema
