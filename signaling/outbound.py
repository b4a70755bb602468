"""Outbound HTTP for webhooks: an aiohttp client that connects only where the DestinationPolicy allows.

Two checks on every connection, so neither DNS rebinding nor an IP literal gets past:
- the resolver drops the addresses the policy refuses (a name left with none fails to resolve);
- the socket factory checks the exact address a socket is about to connect to (IP literals skip the resolver).
Errors reach the delivery log as a short kind (timeout, connection_failed, destination_not_allowed, ...),
never as the internal message, which only goes to the server log.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.destinations import DestinationBlocked, DestinationPolicy
from gateway.store.webhooks import DeliveryFailed, Sender

BLOCKED = "destination not allowed"


class PolicyResolver(AbstractResolver):
    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.address_allowed(r["host"])]
        if not allowed:
            raise DestinationBlocked(f"{BLOCKED}: {host} resolves only to refused addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def policy_socket_factory(policy: DestinationPolicy) -> Any:
    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, address = addr_info
        if not policy.address_allowed(str(address[0])):
            raise DestinationBlocked(f"{BLOCKED}: {address[0]}")
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        return sock
    return factory


def guarded_session(policy: DestinationPolicy) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), socket_factory=policy_socket_factory(policy),
                                     limit=0)
    return aiohttp.ClientSession(connector=connector, trust_env=False)


def _kind(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        # happy eyeballs joins the errors of several addresses into one OSError: look at the text too
        if isinstance(seen, DestinationBlocked) or isinstance(seen, OSError) and BLOCKED in str(seen):
            return "destination_not_allowed"
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)):
        return "timeout"
    if isinstance(exc, (ssl.SSLError, aiohttp.ClientSSLError)):
        return "tls_error"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns_failed"
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionError)):
        return "connection_failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    return "request_failed"


def webhook_sender(http: aiohttp.ClientSession, max_response_bytes: int = 64 * 1024) -> Sender:
    async def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        try:
            async with http.post(url, data=body, headers=headers, allow_redirects=False,
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                await response.content.read(max_response_bytes)  # the body is not used; read a little, then drop
                return response.status
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise DeliveryFailed(_kind(exc), repr(exc)[:500]) from exc
    return send
