"""What another node asks of a call's files (signaling/files.py, FileRequest: a forwarded request of kind "file") is
validated before anything is done: a malformed request gets a typed error back, never a crash."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from signaling.files import serve_file_request


@pytest.mark.parametrize("payload", [
    {"action": "delete", "call_id": "abc", "agent": "alice"},  # no such action
    {"action": "adopt", "call_id": "../etc", "attachment_id": "0" * 16, "agent": "alice"},
    {"action": "adopt", "call_id": "abc", "attachment_id": "xyz", "agent": "alice"},
    {"action": "snapshot", "call_id": "abc", "agent": "a" * 200},
    {"action": "snapshot", "call_id": "abc", "agent": "alice", "admin": True},  # unknown field
    {},
])
async def test_malformed_requests_of_other_nodes_are_refused(payload):
    with pytest.raises(GatewayError) as raised:
        await serve_file_request({})(payload)  # never reaches the app: refused by validation
    assert (raised.value.code, raised.value.reason, raised.value.status, raised.value.retryable) == (
        "invalid_message", "a file request from another node was malformed", 400, False)
