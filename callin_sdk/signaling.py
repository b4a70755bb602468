"""One WebSocket to the gateway: requests carry an `id` that the response echoes; everything else is an event.

A `Signaling` is used for one connection only: when it drops, the caller makes a new one and resumes the session
(callin_sdk/caller.py). It never reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from .errors import CallinError
from .messages import MAX_SERVER_MESSAGE_BYTES, ErrorMessage, ServerMessage, parse


class Signaling:
    """A connected socket: `request()` waits for the answer with the same id, `send()` does not; every other
    message goes to `on_event`; `on_close(code)` is called once when the socket is gone (not after `close()`)."""

    def __init__(self, url: str, *, on_event: Callable[[ServerMessage], None],
                 on_close: Callable[[int | None], None], on_bad_message: Callable[[CallinError], None]) -> None:
        self.url = url
        self._on_event = on_event
        self._on_close = on_close
        self._on_bad_message = on_bad_message
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[ServerMessage]] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(3)
        self._closing = False
        self.close_code: int | None = None

    @property
    def open(self) -> bool:
        return self._ws is not None and not self._ws.closed and not self._closing

    async def connect(self, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self._http = aiohttp.ClientSession()
        try:
            # The handshake must finish in time too (a gateway that accepts TCP and then says nothing).
            self._ws = await asyncio.wait_for(self._http.ws_connect(
                self.url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=MAX_SERVER_MESSAGE_BYTES, autoping=True), timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            await self._http.close()
            self._http = None
            raise CallinError("network_error", f"could not reach the gateway at {self.url}: {exc or 'timed out'}",
                              retryable=True) from None
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.ERROR:  # e.g. a frame over the size limit: the socket is done
                    self._on_bad_message(CallinError("bad_server_message", f"the connection failed: {msg.data}"))
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # the gateway only sends text frames; pings are answered by aiohttp
                try:
                    message = parse(msg.data)
                except CallinError as exc:
                    self._on_bad_message(exc)
                    continue
                waiting = self._pending.pop(message.id, None) if message.id is not None else None
                if waiting is not None and not waiting.done():
                    waiting.set_result(message)
                    continue
                self._on_event(message)
        except Exception as exc:  # a broken transport ends the reading like a close does
            self._on_bad_message(CallinError("network_error", f"the connection broke: {exc}", retryable=True))
        finally:
            if not self._ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._ws.close(), 2)
            self.close_code = self._ws.close_code
            self._fail_pending(CallinError("disconnected", retryable=True))
            if not self._closing:
                self._closing = True
                self._on_close(self.close_code)
            if self._http is not None:
                await self._http.close()

    def _fail_pending(self, error: CallinError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def send(self, message: dict[str, Any]) -> None:
        if not self.open:
            raise CallinError("disconnected", "not connected to the gateway", retryable=True)
        assert self._ws is not None
        await self._ws.send_str(json.dumps(message, separators=(",", ":")))

    async def request(self, message: dict[str, Any], timeout: float = 15.0) -> ServerMessage:
        """Send a request and wait for its answer; an `error` answer raises CallinError with the gateway's code."""
        message = {**message, "id": message.get("id") or self.next_id()}
        future: asyncio.Future[ServerMessage] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        try:
            await self.send(message)
            answer = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise CallinError("timeout", f"no answer to {message['type']} within {timeout:g} s",
                              retryable=True) from None
        finally:
            self._pending.pop(message["id"], None)
        if isinstance(answer, ErrorMessage):
            raise answer.error()
        return answer

    def abort(self) -> None:
        """Drop the connection without a close frame (the socket went silent): closing the HTTP session closes its
        TCP connection; the reader then ends and `on_close` follows."""
        if self._http is not None and not self._http.closed:
            asyncio.ensure_future(self._http.close())

    async def close(self, code: int = 1000) -> None:
        """Close on purpose: `on_close` is not called."""
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(code=code), 3)
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 3)
        if self._http is not None:
            await self._http.close()
        self._fail_pending(CallinError("disconnected", retryable=True))
