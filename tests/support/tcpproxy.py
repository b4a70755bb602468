"""TCP relays in front of gateway nodes, for tests: `TcpProxy` in front of one node, which a test can cut (the
connections reset, no WebSocket close frame) or darken (the connections stay open but nothing passes: a network
that vanished); `RoundRobin` (tests/support/balancer.py) in front of several."""

from __future__ import annotations

import asyncio
import contextlib

from .server import free_port


class TcpRelay:
    """Accepts connections on a free loopback port and splices each to an upstream that `_accept` picks."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.dark = False
        self._server: asyncio.base_events.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    def _splice(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        self._pairs.append((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if self.dark:
                    continue  # swallowed: neither side hears anything any more
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(Exception):
            sink.close()

    def cut(self) -> None:
        """Reset every relayed connection on both sides at once (no close frame reaches anyone)."""
        for client, upstream in self._pairs:
            for writer in (client, upstream):
                writer.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()


class TcpProxy(TcpRelay):
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.target_port = target_port
        self.accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        self._splice(reader, writer, up_reader, up_writer)
