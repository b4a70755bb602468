"""The client's address: the TCP peer, or, when that peer is a trusted reverse proxy (settings.trusted_proxies), the
nearest address in X-Forwarded-For that is not one of those proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(values: Sequence[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: web.Request, trusted: Sequence[IPNetwork]) -> str | None:
    peer = request.remote
    if peer is None or not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    for hop in reversed(hops):  # the rightmost hops were added by our own proxies
        if not hop:
            continue
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header: trust nothing in it
        if not _trusted(hop, trusted):
            return hop
    return peer
