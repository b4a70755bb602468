"""What another node asks of a call's files (signaling/files.py, FileRequest) is validated before anything is done:
a malformed request gets a typed error back, never a crash."""

from __future__ import annotations

import json

import pytest

from signaling.files import file_executor


@pytest.mark.parametrize("raw", [
    "not json",
    json.dumps({"action": "delete", "call_id": "abc", "agent": "alice"}),  # no such action
    json.dumps({"action": "adopt", "call_id": "../etc", "attachment_id": "0" * 16, "agent": "alice"}),
    json.dumps({"action": "adopt", "call_id": "abc", "attachment_id": "xyz", "agent": "alice"}),
    json.dumps({"action": "snapshot", "call_id": "abc", "agent": "a" * 200}),
    json.dumps({"action": "snapshot", "call_id": "abc", "agent": "alice", "admin": True}),  # unknown field
])
async def test_malformed_requests_of_other_nodes_are_refused(raw):
    answer = json.loads(await file_executor({})(raw))  # never reaches the app: refused by validation
    assert answer == {"error": {"code": "invalid_message", "reason": "a file request from another node was malformed",
                                "status": 400, "retryable": False}}
