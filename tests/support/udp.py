"""UDP sockets that count what arrives: targets for candidates, to see whether the relay sends to them."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

STUN_MAGIC_COOKIE = 0x2112A442


def is_stun(data: bytes) -> bool:
    return len(data) >= 20 and data[0] < 2 and struct.unpack("!I", data[4:8])[0] == STUN_MAGIC_COOKIE


class UdpTrap(asyncio.DatagramProtocol):
    """A bound UDP socket that never answers and counts the datagrams (and STUN requests) reaching it."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.stun = 0
        self.sources: set[tuple[Any, ...]] = set()
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] = ("", 0)

    @classmethod
    async def open(cls, host: str) -> "UdpTrap":
        loop = asyncio.get_running_loop()
        transport, trap = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        trap.address = transport.get_extra_info("sockname")[:2]
        return trap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.datagrams += 1
        self.stun += is_stun(data)
        self.sources.add(addr)
        if len(self.received) < 1000:
            self.received.append(data)

    def responses(self) -> int:
        """STUN success responses received (answers to our own binding requests)."""
        return sum(1 for data in self.received if is_stun(data) and data[0] == 0x01 and data[1] == 0x01)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def candidate(self, priority: int = 2122260223, foundation: str = "9") -> str:
        host, port = self.address
        return f"candidate:{foundation} 1 udp {priority} {host} {port} typ host generation 0"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
