"""Where the gateway may send outbound HTTP (webhooks): public addresses only, unless an operator allows more.

Server-side request forgery is the risk: an admin or an integrator's API key registers a webhook URL, and the
gateway then connects from inside the network. So a destination is refused when any address it resolves to is
loopback, link-local (169.254.0.0/16: cloud metadata), private (RFC 1918, fc00::/7), shared (100.64.0.0/10),
multicast, reserved or unspecified, IPv4-mapped or not, unless it lies in `allowed_networks`.

The check runs twice: when the URL is registered (every resolved address) and again for the exact address of
every connection (see signaling/outbound.py), so a name that resolves to a public address at registration and to
127.0.0.1 later (DNS rebinding) is still refused. Decimal or octal IPv4 spellings (http://2130706433/) are
resolved by the system resolver like any name and so get the same check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import BadRequest

RESOLVE_TIMEOUT_S = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(BadRequest):
    code = "destination_not_allowed"
    status = 422


class DestinationBlocked(OSError):
    """Raised at connect time for an address the policy refuses (aiohttp reports it as a connection error)."""


def parse_networks(values: list[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()

    def address_allowed(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return False
        plain = _plain(address)
        if any(address in net or plain in net for net in self.allowed_networks):
            return True
        return plain.is_global and not plain.is_multicast and not address.is_multicast

    async def check_url(self, url: str) -> None:
        """Refuses (DestinationRefused, 422) a URL that is not plain http(s) or resolves to a refused address."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise DestinationRefused("the URL is not valid", code="invalid_url") from None
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise DestinationRefused("the URL must be http:// or https:// with a host", code="invalid_url")
        if parts.username is not None or parts.password is not None:
            raise DestinationRefused("credentials in the URL are not allowed; use the signature instead",
                                     code="invalid_url")
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
        except (OSError, UnicodeError, asyncio.TimeoutError):
            raise DestinationRefused(f"the host {host!r} does not resolve", code="destination_unresolvable") from None
        addresses = {str(info[4][0]) for info in infos}
        if not addresses or not all(self.address_allowed(a) for a in addresses):
            raise DestinationRefused(
                f"the host {host!r} resolves to an address webhooks may not reach (loopback, link-local, private or "
                "reserved); an operator can allow a network with CALLIN_WEBHOOK_ALLOWED_NETWORKS")
