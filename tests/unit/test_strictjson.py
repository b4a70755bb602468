"""Strict JSON: NaN, Infinity, overflowing numbers, unpaired surrogates and deep nesting are refused with a reason."""

from __future__ import annotations

import math

import pytest

from gateway import strictjson
from gateway.models import CallContext, Location
from signaling import protocol as p


@pytest.mark.parametrize("raw, syntax", [
    ('{"a": NaN}', True),
    ('{"a": Infinity}', True),
    ('{"a": -Infinity}', True),
    ('[1e999]', True),
    ('[' * 10_000 + ']' * 10_000, True),
    ('{"a":' * 10_000 + '1' + '}' * 10_000, True),
    ('{"id": "\\ud800"}', False),
    ('{"\\udfff": 1}', False),
])
def test_refused(raw: str, syntax: bool) -> None:
    with pytest.raises(strictjson.StrictJSONError) as info:
        strictjson.loads(raw)
    assert info.value.syntax is syntax and info.value.reason


def test_accepted() -> None:
    assert strictjson.loads('{"a": [1.5, "\\ud83d\\ude00", null]}') == {"a": [1.5, "\U0001F600", None]}


def test_dumps_never_writes_non_finite_numbers() -> None:
    # a record stored before NaN was refused at the input still comes out as valid JSON
    assert strictjson.dumps({"x": math.nan, "y": [math.inf, {"z": -math.inf}], "ok": 1.5}) == \
        '{"x": null, "y": [null, {"z": null}], "ok": 1.5}'
    assert strictjson.dumps({"x": 1.0}) == '{"x": 1.0}'


@pytest.mark.parametrize("raw, code", [
    ('[' * 10_000 + ']' * 10_000, "bad_json"),
    ('{"type": "ping", "id": "\\ud800"}', "invalid_message"),
    ('{"type": "call.start", "id": "1", "call_type": "voice", "location": '
     '{"lat": 1, "lon": 1, "accuracy_m": 1, "timestamp": NaN}}', "bad_json"),
    ('{"type": "call.start", "id": "1", "call_type": "voice", "context": {"crm": {"x": -Infinity}}}', "bad_json"),
    ('{"type": "call.start", "id": "1", "call_type": "voice", "context": {"crm": {"x": 1e400}}}', "bad_json"),
])
def test_parse_gives_typed_errors(raw: str, code: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse(p.caller_adapter, raw, 1 << 20)
    assert info.value.code == code
    assert p.request_id(raw) in (None, "1")  # never raises, never echoes a surrogate


def test_value_objects_refuse_non_finite_numbers_built_in_python() -> None:
    with pytest.raises(ValueError):
        Location(lat=1, lon=1, accuracy_m=1, timestamp=math.nan)
    with pytest.raises(ValueError):
        CallContext(crm={"x": math.inf})
    with pytest.raises(ValueError):
        CallContext(screen="\ud800")


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-inf"])
def test_settings_refuse_non_finite_numbers(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import QueueConfig, Settings

    monkeypatch.setenv("CALLIN_SHUTDOWN_GRACE_S", value)
    with pytest.raises(ValueError, match="finite"):
        Settings()
    monkeypatch.delenv("CALLIN_SHUTDOWN_GRACE_S")
    with pytest.raises(ValueError, match="finite"):
        QueueConfig(name="q", max_wait_s=float(value))
    with pytest.raises(ValueError, match="finite"):
        Settings(queues=[{"name": "q", "callback_threshold_s": value}])
