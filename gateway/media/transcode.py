"""The decode/re-encode path (relay_mode="transcode"): what aiortc's own example server does."""

from __future__ import annotations

import asyncio

from aiortc import MediaStreamError, MediaStreamTrack
from av.frame import Frame


class SwitchTrack(MediaStreamTrack):
    """An outgoing track whose decoded source is set later (the other party may not have joined yet)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._changed = asyncio.Event()

    def set_codec(self, codec: str) -> None:  # the encoder is aiortc's: nothing to set
        return None

    def request_keyframe(self) -> None:  # aiortc's encoder answers PLI/FIR itself
        return None

    def set_source(self, track: MediaStreamTrack | None) -> None:
        self._source = track
        self._changed.set()

    async def recv(self) -> Frame:  # type: ignore[override]
        while self._source is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._changed.clear()
            await self._changed.wait()
        if self.readyState != "live":
            raise MediaStreamError
        return await self._source.recv()

    def stop(self) -> None:
        super().stop()
        self._changed.set()
