"""The answer of a callback take run on another node (signaling/cluster_calls.py): the typed error raised there is
raised here with its code, status and retryability, and a malformed answer is refused, not trusted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.errors import GatewayError, InvalidState, NotFound, Unavailable
from signaling.cluster_calls import Inbound, _answer


def test_the_home_s_typed_error_is_raised_here_as_it_was():
    with pytest.raises(InvalidState) as ringing:
        _answer({"error": {"code": "callback_ringing", "reason": "rings already", "status": 409, "retryable": False}})
    assert ringing.value.code == "callback_ringing" and ringing.value.status == 409 and not ringing.value.retryable
    with pytest.raises(NotFound):
        _answer({"error": {"code": "unknown_call", "reason": "x", "status": 404}})
    with pytest.raises(Unavailable) as busy:
        _answer({"error": {"code": "agent_busy", "reason": "x", "status": 503, "retryable": True}})
    assert busy.value.retryable
    with pytest.raises(GatewayError) as odd:  # an unknown status: the base error, code kept (bounded)
        _answer({"error": {"code": "c" * 500, "reason": "r" * 5000, "status": "418"}})
    assert odd.value.status == 500 and len(odd.value.code) == 64 and len(odd.value.reason) == 500


def test_a_call_id_is_the_only_success_and_anything_else_is_refused():
    assert _answer({"call_id": "abc"}) == "abc"
    for bad in ({}, {"call_id": 5}, {"error": "text"}):
        with pytest.raises(Unavailable) as refused:
            _answer(bad)
        assert refused.value.code == "node_unreachable"


def test_a_take_message_is_validated_and_size_limited():
    message = Inbound.model_validate({"op": "take", "corr": "c1", "from": "node-b", "call": "0123456789abcdef",
                                      "account": {"username": "bob", "display_name": "Bob", "role": "agent"}})
    assert message.call == "0123456789abcdef" and message.sender == "node-b"
    with pytest.raises(ValidationError):
        Inbound.model_validate({"op": "take", "call": "x" * 65})
    with pytest.raises(ValidationError):
        Inbound.model_validate({"op": "steal", "call": "x"})
