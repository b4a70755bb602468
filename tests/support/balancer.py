"""A round-robin TCP load balancer in front of several gateway nodes, as nginx or HAProxy would be (no stickiness):
each new connection goes to the next node; a node that refuses the TCP connection is skipped (nginx's
`proxy_next_upstream error`). Used by the drain and node-registry tests."""

from __future__ import annotations

import asyncio
import itertools

from .tcpproxy import TcpRelay


class RoundRobin(TcpRelay):
    def __init__(self, ports: list[int], host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.ports = ports
        self.sent: dict[int, int] = {p: 0 for p in ports}  # connections relayed to each node
        self._next = itertools.cycle(range(len(ports)))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[next(self._next)]
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, port)
            except OSError:
                continue  # that node is gone: the next one
            self.sent[port] += 1
            self._splice(reader, writer, up_reader, up_writer)
            return
        writer.close()
