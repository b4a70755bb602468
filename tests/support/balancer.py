"""A round-robin TCP load balancer in front of several gateway nodes, as nginx or HAProxy would be (no stickiness):
each new connection goes to the next node; a node that refuses the TCP connection is skipped (nginx's
`proxy_next_upstream error`). Used by the drain and node-registry tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from .server import free_port


class RoundRobin:
    def __init__(self, ports: list[int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.ports = ports
        self.port = free_port()
        self.sent: dict[int, int] = {p: 0 for p in ports}  # connections relayed to each node
        self._next = itertools.cycle(range(len(ports)))
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[next(self._next)]
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, port)
            except OSError:
                continue  # that node is gone: the next one
            self.sent[port] += 1
            self._writers += [writer, up_writer]
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.ensure_future(self._pipe(source, sink))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(Exception):
            sink.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
