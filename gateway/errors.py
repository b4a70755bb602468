"""A small error hierarchy with stable codes. Tests assert the code and the text."""

from __future__ import annotations


class GatewayError(Exception):
    """Base error. `code` is a stable machine string, `reason` is for humans."""

    code: str = "internal_error"
    status: int = 500
    retryable: bool = False

    def __init__(self, reason: str, *, code: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class BadRequest(GatewayError):
    code = "bad_request"
    status = 400


class Unauthorized(GatewayError):
    code = "unauthorized"
    status = 401


class Forbidden(GatewayError):
    code = "forbidden"
    status = 403


class NotFound(GatewayError):
    code = "not_found"
    status = 404


class InvalidState(GatewayError):
    """The request does not fit the current state of the call, leg or session."""

    code = "invalid_state"
    status = 409


class Unavailable(GatewayError):
    code = "unavailable"
    status = 503
    retryable = True


class MediaError(GatewayError):
    """SDP or media negotiation failed."""

    code = "media_error"
    status = 400


class ClosedError(InvalidState):
    """Use of an object after it was closed."""

    code = "closed"


class RateLimited(GatewayError):
    """Too many of something from one caller or address; `reason` says what and when to try again."""

    code = "rate_limited"
    status = 429
    retryable = True
