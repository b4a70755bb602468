"""The protocol's contract, generated from the models: the published JSON Schema says exactly what the server
accepts (null for an optional field, no coercion, the agent's call_id, the context's limits), the server -> client
part leaves room for new fields, and every bad frame gets one error whose reason is written for a person.

The valid message each case starts from is the first valid example of its type in docs/protocol.md (which
tests/unit/test_protocol_docs.py checks); the fields, their types and their optionality come from the models."""

from __future__ import annotations

import copy
import json
import re
import typing
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, TypeAdapter

from signaling import protocol as p
from tests.unit.test_protocol_docs import AGENT, CALLER, EXAMPLES, SCHEMA, SERVER, valid

ADAPTERS: dict[str, TypeAdapter[Any]] = {CALLER: p.caller_adapter, AGENT: p.agent_adapter}
VALIDATORS = {direction: jsonschema_rs.validator_for(SCHEMA[direction]) for direction in (CALLER, AGENT, SERVER)}
LIMIT = 65536


def models(direction: str) -> dict[str, type[BaseModel]]:
    """message type -> its model, from the adapter's union."""
    union = typing.get_args(ADAPTERS[direction]._type)[0]  # Annotated[Union[...], discriminator]
    found: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        for kind in typing.get_args(model.model_fields["type"].annotation):
            found[kind] = model
    return found


def base(direction: str, kind: str) -> dict[str, Any]:
    """The first example of the docs valid for this direction."""
    for _, message in EXAMPLES:
        if message["type"] == kind and valid(direction, message) is None:
            return copy.deepcopy(message)
    raise AssertionError(f"no valid example of {kind} for {direction}")


def outcome(direction: str, message: dict[str, Any]) -> tuple[str, Any]:
    """("ok", the parsed model) or ("error", its code); ProtocolError is the only exception parse may raise."""
    try:
        return "ok", p.parse(ADAPTERS[direction], json.dumps(message), LIMIT)
    except p.ProtocolError as exc:
        return "error", exc.code


def nested_model(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def optional_paths(direction: str) -> list[tuple[str, tuple[str, ...]]]:
    """(message type, path) of every optional field of every inbound message, and of the optional fields of the
    objects inside it (location, context) that the base example has."""
    cases = []
    for kind, model in models(direction).items():
        example = base(direction, kind)
        for name, info in model.model_fields.items():
            if not info.is_required():
                cases.append((kind, (name,)))
            inner = nested_model(info.annotation)
            if inner is not None and isinstance(example.get(name), dict):
                cases.extend((kind, (name, sub)) for sub, sub_info in inner.model_fields.items()
                             if not sub_info.is_required())
    return cases


def put(message: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def drop(message: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target.pop(path[-1], None)
    return changed


NULL_CASES = [(d, kind, path) for d in (CALLER, AGENT) for kind, path in optional_paths(d)]


def test_the_null_cases_cover_every_message_and_the_nested_objects():
    for direction in (CALLER, AGENT):
        kinds = {kind for d, kind, _ in NULL_CASES if d == direction}
        with_optional = {kind for kind, model in models(direction).items()
                         if any(not f.is_required() for f in model.model_fields.values())}
        assert kinds == with_optional
    paths = {path for _, kind, path in NULL_CASES if kind == "call.start"}
    assert {("location", "source"), ("context", "steps"), ("context", "crm"), ("context", "screen")} <= paths
    assert ("protocol",) in {path for _, kind, path in NULL_CASES if kind == "hello"}


@pytest.mark.parametrize("direction, kind, path", NULL_CASES,
                         ids=[f"{d.split('_')[0]}-{k}-{'.'.join(path)}" for d, k, path in NULL_CASES])
def test_null_is_the_same_as_absent(direction, kind, path):
    message = base(direction, kind)
    with_null, without = put(message, path, None), drop(message, path)
    assert outcome(direction, with_null) == outcome(direction, without)
    # and the schema says the same as the server, both ways
    for variant in (with_null, without):
        assert VALIDATORS[direction].is_valid(variant) == (outcome(direction, variant)[0] == "ok"), variant


def coerced_variants(value: Any) -> list[Any]:
    """Values of another JSON type that a lax reader would take for this one."""
    if isinstance(value, bool):
        return [1, 0, "true"]
    if isinstance(value, int):
        return [str(value), True]
    if isinstance(value, float):
        return [str(value)]
    if isinstance(value, str):
        return [1, True] if not value.isdigit() else [int(value)]
    return []


COERCION_CASES = [(d, kind, name, wrong) for d in (CALLER, AGENT) for kind in models(d)
                  for name, value in base(d, kind).items() if name != "type"
                  for wrong in coerced_variants(value)]
COERCION_CASES += [(CALLER, "call.start", ("location", "lat"), "52.5"), (CALLER, "call.start", ("location", "lat"), True)]


@pytest.mark.parametrize("direction, kind, name, wrong", COERCION_CASES,
                         ids=[f"{d.split('_')[0]}-{k}-{n}-{w!r}" for d, k, n, w in COERCION_CASES])
def test_no_type_coercion_server_and_schema_agree(direction, kind, name, wrong):
    message = put(base(direction, kind), name if isinstance(name, tuple) else (name,), wrong)
    assert outcome(direction, message) == ("error", "invalid_message"), message
    assert not VALIDATORS[direction].is_valid(message), message


def test_the_agent_names_the_call_in_every_message_about_one():
    agent_models = models(AGENT)
    with_call = [kind for kind, model in agent_models.items() if "call_id" in model.model_fields]
    assert {"sdp.offer", "ice.candidate", "call.hangup", "chat.send"} <= set(with_call)
    for kind in with_call:
        message = drop(base(AGENT, kind), ("call_id",))
        assert outcome(AGENT, message) == ("error", "invalid_message"), kind
        assert not VALIDATORS[AGENT].is_valid(message), kind
        assert outcome(AGENT, put(message, ("call_id",), None)) == ("error", "invalid_message"), kind
    # the caller may leave it out (its current call)
    for kind in ("sdp.offer", "ice.candidate", "call.hangup", "chat.send"):
        message = drop(base(CALLER, kind), ("call_id",))
        assert outcome(CALLER, message)[0] == "ok" and VALIDATORS[CALLER].is_valid(message), kind


CONTEXT_LIMITS = [
    ("steps", ["s"] * 51),
    ("steps", ["x" * 257]),
    ("steps", [1]),
    ("crm", {f"k{i}": "v" for i in range(65)}),
    ("crm", {"": "v"}),
    ("crm", {"k" * 65: "v"}),
    ("crm", {"k": "v" * 1025}),
    ("crm", {"k": {"nested": 1}}),
    ("crm", {"k": [1]}),
    ("screen", "x" * 257),
]


@pytest.mark.parametrize("field, value", CONTEXT_LIMITS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CONTEXT_LIMITS)])
def test_context_limits_are_in_the_schema_and_the_server(field, value):
    message = put(base(CALLER, "call.start"), ("context", field), value)
    assert outcome(CALLER, message) == ("error", "invalid_message")
    assert not VALIDATORS[CALLER].is_valid(message)
    edge = {"steps": ["s" * 256] * 50, "crm": {f"k{i}": "v" for i in range(63)} | {"k" * 64: "v" * 1024},
            "screen": "x" * 256}[field]
    ok = put(base(CALLER, "call.start"), ("context", field), edge)
    assert outcome(CALLER, ok)[0] == "ok" and VALIDATORS[CALLER].is_valid(ok)


def test_the_limits_announced_are_the_ones_checked():
    from gateway.config import Settings

    limits = p.limits_of(Settings(max_chat_chars=500, max_context_bytes=4096), 256)
    assert limits.max_chat_chars == 500 and limits.max_context_bytes == 4096
    steps = SCHEMA[CALLER]["$defs"]["CallContext"]["properties"]["steps"]["anyOf"][0]
    crm = SCHEMA[CALLER]["$defs"]["CallContext"]["properties"]["crm"]["anyOf"][0]
    assert steps["maxItems"] == limits.max_context_steps and steps["items"]["maxLength"] == limits.max_step_chars
    assert crm["maxProperties"] == limits.max_crm_fields
    assert crm["propertyNames"]["maxLength"] == limits.max_crm_key_chars
    assert {"maxLength": limits.max_crm_value_chars, "type": "string"} in crm["additionalProperties"]["anyOf"]


def _with_unknown_fields(value: Any) -> Any:
    """Every object inside gets a field nobody knows yet."""
    if isinstance(value, dict):
        return {**{k: _with_unknown_fields(v) for k, v in value.items()}, "added_later": "x"}
    if isinstance(value, list):
        return [_with_unknown_fields(v) for v in value]
    return value


SERVER_EXAMPLES = {message["type"]: message for _, message in EXAMPLES
                   if message["type"] in SCHEMA[SERVER]["discriminator"]["mapping"] and valid(SERVER, message) is None}


@pytest.mark.parametrize("kind", sorted(SERVER_EXAMPLES))
def test_server_messages_may_gain_fields_the_schema_allows_it(kind):
    message = SERVER_EXAMPLES[kind]
    future = _with_unknown_fields(message)
    future["type"] = kind
    errors = [e.message for e in VALIDATORS[SERVER].iter_errors(future)]
    assert not errors, errors
    # but it is typed: a card, a content or a chat line of the wrong shape is refused
    assert not VALIDATORS[SERVER].is_valid({**message, "call_id": 5}) or "call_id" not in message


def test_typed_objects_in_server_messages():
    defs = SCHEMA[SERVER]["$defs"]
    for name in ("CardOut", "CallerIdentity", "Location", "CallContext", "ContentOut", "ChatLineOut",
                 "AttachmentOut", "Limits", "WallboardWaitingOut"):
        assert defs[name]["type"] == "object" and defs[name]["properties"], name
    assert '"additionalProperties": false' not in json.dumps(SCHEMA[SERVER])
    card = defs["CardOut"]
    assert set(card["required"]) >= {"identity", "location", "context", "media_source"}


def test_client_messages_refuse_unknown_fields_in_the_schema_too():
    for direction in (CALLER, AGENT):
        for kind in models(direction):
            message = {**base(direction, kind), "added_later": 1}
            assert outcome(direction, message) == ("error", "invalid_message")
            assert not VALIDATORS[direction].is_valid(message), kind


# -------------------------------------------------------------------------- one error, and for a person
def human(reason: str) -> bool:
    """A reason a person can read: no pydantic internals, no Python reprs."""
    return bool(reason) and not re.search(r"\[type=|<|None|Enum\.|Input should|pydantic|errors\.pydantic|"
                                          r"validation error|\bdict\b|Field required|Value error", reason)


def bad_frames(direction: str) -> list[str]:
    """Frames wrong in one way or several, generated from each message's fields."""
    frames = ["{", "[]", "1", "null", '"hello"', "{}", '{"type": null}', '{"type": 5, "id": "r1"}',
              '{"type": "no.such.thing", "id": "r1"}', '{"type": ["ping"]}', '{"type": "ping", "id": null}',
              '{"type": "ping", "id": ""}', '{"type": "ping", "id": "' + "x" * 65 + '"}', '{"type": "ping", "id": 7}',
              '{"type": "ping", "id": "r1", "n": NaN}', '{"type": "ping", "id": "\\ud800"}']
    other = AGENT if direction == CALLER else CALLER
    frames += [json.dumps(base(other, kind)) for kind in models(other) if kind not in models(direction)]
    for kind, model in models(direction).items():
        message = base(direction, kind)
        for name, info in model.model_fields.items():
            if name == "type":
                continue
            if info.is_required():
                frames.append(json.dumps(drop(message, (name,))))
                frames.append(json.dumps(put(message, (name,), None)))
            for wrong in ({"an": "object"}, ["a list"], 12345678901234567890, -1, "x" * 3000, True):
                frames.append(json.dumps(put(message, (name,), wrong)))
        several = {**message, "unknown": 1, "id": "", **{n: 5 for n in model.model_fields if n not in ("type", "id")}}
        frames.append(json.dumps(several))
    return frames


FRAMES = [(d, frame) for d in (CALLER, AGENT) for frame in bad_frames(d)]


def test_every_bad_frame_gets_one_human_error():
    """Each frame either parses or raises one ProtocolError whose reason a person can read."""
    refused = 0
    for direction, frame in FRAMES:
        try:
            p.parse(ADAPTERS[direction], frame, LIMIT)
        except p.ProtocolError as exc:
            refused += 1
            assert human(exc.reason), (direction, frame[:200], exc.reason)
            assert len(exc.reason) < 600, exc.reason
    assert refused > 300


def test_a_frame_bad_in_several_ways_names_several_problems_in_one_reason():
    frame = {"type": "call.start", "id": "", "call_type": "hologram", "location": {"lat": "52", "lon": 1},
             "extra": True}
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(p.caller_adapter, json.dumps(frame), LIMIT)
    reason = caught.value.reason
    assert caught.value.code == "invalid_message"
    assert reason.startswith("call.start: ") and reason.count(";") == 2 and "more)" in reason, reason
    assert "id must not be empty" in reason and "call_type must be 'voice', 'video' or 'screen'" in reason


@pytest.mark.parametrize("frame, words", [
    ('{"id": "r1"}', 'a message needs a "type"'),
    ('{"type": null}', "type must be a string, not null"),
    ('{"type": "teleport"}', 'unknown message type "teleport"'),
    ('{"type": "call.accept", "id": "r1", "call_id": "c"}', "call.accept is a message of the agent socket"),
    ('{"type": "call.start", "id": "r1", "call_type": 1}', "call_type must be 'voice', 'video' or 'screen', not 1"),
    ('{"type": "hello", "id": "r1", "protocol": "1"}', "protocol must be an integer"),
    ('{"type": "ice.candidate", "candidate": "candidate:garbage"}', "candidate must be an RTCIceCandidate.candidate"),
    ('{"type": "ice.candidate", "candidate": "candidate:1 1 udp 1 10.0.0.1 -1 typ host"}', "(RFC 8839)"),
    ('{"type": "ice.candidate", "sdp_mid": "a b"}', "sdp_mid must be a media section's mid"),
    ('{"type": "call.start", "id": "r1", "call_type": "voice", "context": {"crm": {"": 1}}}',
     "context.crm (a key) must not be empty"),
    ('{"type": "call.start", "id": "r1", "call_type": "voice", "context": {"steps": ["a", 2]}}',
     "context.steps[1] must be a string"),
    ('{"type": "chat.send", "id": "r1"}', "chat.send: send text, an attachment, or both"),
    ('{"type": "media.source", "id": "r1", "source": "webcam"}', "source must be 'camera', 'screen' or 'none'"),
    ('{"type": "call.location", "id": "r1"}', "location is required"),
    ('{"type": "call.location", "id": "r1", "location": null}', "location must be an object"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 91, "lon": 0, "accuracy_m": 1, "timestamp": 1}}',
     "location.lat must be at most 90"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 0, "lon": -181, "accuracy_m": 1, "timestamp": 1}}',
     "location.lon must be at least -180"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 0, "lon": 0, "accuracy_m": -1, "timestamp": 1}}',
     "location.accuracy_m must be at least 0"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": "1", "lon": 0, "accuracy_m": 1, "timestamp": 1}}',
     "location.lat must be a number (not a string)"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 0, "lon": 0, "accuracy_m": 1}}',
     "location.timestamp is required"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 0, "lon": 0, "accuracy_m": 1, "timestamp": 1, '
     '"source": "gps"}}', "location.source must be 'device'"),
    ('{"type": "call.location", "id": "r1", "location": {"lat": 0, "lon": 0, "accuracy_m": 1, "timestamp": 1, '
     '"street": "Main St"}}', "location.street is not a field of call.location"),
    ('{"type": "call.location", "id": "r1", "call_id": "' + "c" * 65 + '", "location": {"lat": 0, "lon": 0, '
     '"accuracy_m": 1, "timestamp": 1}}', "call_id must have at most 64 characters"),
])
def test_reasons_say_what_is_wrong(frame, words):
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(p.caller_adapter, frame, LIMIT)
    assert words in caught.value.reason and human(caught.value.reason), caught.value.reason


def test_a_call_location_frame_over_the_size_limit_is_refused_before_it_is_read():
    padded = json.dumps({"type": "call.location", "id": "r1", "location": {
        "lat": 0, "lon": 0, "accuracy_m": 1, "timestamp": 1}}).replace("{", "{" + " " * 200, 1)
    with pytest.raises(p.ProtocolError) as caught:
        p.parse(p.caller_adapter, padded, 128)
    assert caught.value.code == "message_too_large"
    assert p.parse(p.caller_adapter, padded, LIMIT).location.lat == 0.0


@pytest.mark.parametrize("candidate, ok", [
    ("candidate:842163049 1 udp 1677729535 198.51.100.7 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0", True),
    ("candidate:1 1 UDP 2122260223 192.0.2.1 5000 typ host", True),
    ("candidate:1 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active", True),
    ("candidate:4f1b+/ 2 udp 1 4f1b2c7e-1d2c-4a5b-9c8d-1234567890ab.local 50000 typ host generation 0 ufrag a "
     "network-id 1", True),
    ("", True),
    ("candidate:garbage", False),
    ("a=candidate:1 1 udp 1 192.0.2.1 5000 typ host", False),
    ("candidate:1 1 udp 1 192.0.2.1 5000 type host", False),
    ("candidate:1 1 udp 1 192.0.2.1 5000 typ", False),
    ("candidate:1 1 udp 1 192.0.2.1 5000 typ host raddr", False),
    ("candidate:f$ 1 udp 1 192.0.2.1 5000 typ host", False),
    ("candidate:1 1234 udp 1 192.0.2.1 5000 typ host", False),
    ("candidate:1 1 udp 1 192.0.2.1 500000 typ host", False),
    ("candidate:1 1 udp 1 192.0.2.1 5000 typ host\r\n", False),
])
def test_candidate_grammar_in_the_server_and_the_schema(candidate, ok):
    message = {"type": "ice.candidate", "id": "r1", "candidate": candidate, "sdp_mid": "0"}
    assert (outcome(CALLER, message)[0] == "ok") is ok
    assert VALIDATORS[CALLER].is_valid(message) is ok
