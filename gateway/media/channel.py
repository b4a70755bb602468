"""The local channel between the engine and a media worker process: length-prefixed frames over a socket pair.

A frame is a 4-byte big-endian length and a pickled Python value. The channel joins a process and its own child
over an inherited socket pair (nothing else can connect to it), which is why pickle is acceptable here and nowhere
else: it carries requests, replies and leg events between two halves of one program.

Messages:
  engine -> worker  {"op": name, "id": n | None, "args": [...], "kwargs": {...}}   (id None: no reply wanted)
  worker -> engine  {"id": n, "ok": True, "result": value}
                    {"id": n, "ok": False, "error": ErrorInfo}
                    {"event": LegEvent}
                    {"transcript": TranscriptSegment}
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from ..errors import GatewayError

MAX_FRAME = 32 * 1024 * 1024  # a still picture is the largest thing sent (a JPEG of a few hundred KiB)
_HEADER = struct.Struct(">I")


class ChannelClosed(ConnectionError):
    """The other end has gone (the worker exited, or the engine did)."""


def frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME:
        raise ValueError(f"a channel frame of {len(body)} bytes is over the {MAX_FRAME} limit")
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise ChannelClosed(f"a channel frame of {size} bytes is over the limit: the stream is corrupt")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc) or "the channel closed") from None
    return pickle.loads(body)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A GatewayError, as data: rebuilt on the other side with the same class (when it is one of ours), code,
    reason and retryable flag; anything else becomes an internal error."""

    module: str
    name: str
    reason: str
    code: str
    retryable: bool
    status: int

    @classmethod
    def of(cls, exc: BaseException) -> "ErrorInfo":
        if isinstance(exc, GatewayError):
            kind = type(exc)
            return cls(kind.__module__, kind.__qualname__, exc.reason, exc.code, exc.retryable, exc.status)
        return cls("gateway.errors", "GatewayError", f"media worker error: {type(exc).__name__}", "internal_error",
                   False, 500)

    def rebuild(self) -> GatewayError:
        kind: Any = GatewayError
        if self.module.startswith("gateway."):
            try:
                found = getattr(importlib.import_module(self.module), self.name, None)
            except ImportError:
                found = None
            if isinstance(found, type) and issubclass(found, GatewayError):
                kind = found
        error = kind.__new__(kind)
        Exception.__init__(error, self.reason)
        error.reason, error.code, error.retryable = self.reason, self.code, self.retryable
        if error.status != self.status:
            error.status = self.status
        return error
