"""The SDK's one error type: the gateway's stable error codes, plus a few of the SDK's own."""

from __future__ import annotations

from typing import Any

# Codes the SDK raises itself (the gateway's own codes are listed in docs/protocol.md).
SDK_CODES = {
    "network_error": "the gateway could not be reached",
    "disconnected": "the connection to the gateway was lost while a request waited for its answer",
    "timeout": "no answer from the gateway in time",
    "connection_lost": "the session could not be resumed in time",
    "bad_server_message": "the gateway sent a message the SDK could not read",
    "token_unavailable": "no caller token could be obtained",
    "queue_mismatch": "the gateway queued the call in another queue than the one asked for",
    "invalid_state": "the operation does not fit the caller's current state",
    "invalid_argument": "an argument is out of range",
    "media_error": "the local media could not be set up",
}


class CallinError(Exception):
    """An error with a stable `code` and a `reason` written for a person.

    `retryable` is True when the same request may succeed later unchanged; `detail` carries more facts for some
    codes (`resume_failed`: `{"why": ..., "call": {"call_id", "reason", "by"} | None}`).
    """

    def __init__(self, code: str, reason: str | None = None, *, retryable: bool = False,
                 detail: dict[str, Any] | None = None) -> None:
        self.code = code
        self.reason = reason or SDK_CODES.get(code, code)
        self.retryable = retryable
        self.detail = detail
        super().__init__(f"{code}: {self.reason}")
