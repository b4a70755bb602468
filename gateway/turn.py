"""Ephemeral TURN credentials (the "TURN REST API" scheme that coturn's `use-auth-secret` implements).

The gateway and the TURN server share a secret. For each session the gateway mints a username
`<expiry unix time>:<session key>` and a password `base64(HMAC-SHA1(secret, username))`; the TURN server recomputes
the password from the username and refuses it once the expiry has passed. Nothing is stored anywhere, clients never
see the secret, and a leaked credential dies with its TTL. A resume mints a fresh one (welcome carries it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from .config import IceServer, Settings

# turn:host[:port][?transport=udp|tcp] and turns:host[:port][?transport=tcp] (RFC 7065); an IPv6 host in brackets.
TURN_URL = re.compile(r"(?P<scheme>turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
                      r"(?:\?transport=(?P<transport>udp|tcp))?")


def check_turn_url(url: str) -> str:
    """A TURN URL clients can use, or ValueError saying what is wrong with it."""
    match = TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"not a TURN URL (turn:host[:port][?transport=udp|tcp] or turns:host[:port]): {url!r}")
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ValueError(f"TURN URL port out of range: {url!r}")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise ValueError(f"turns: runs over TLS, so over TCP (drop ?transport=udp): {url!r}")
    return url


def turn_password(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def mint_turn_server(secret: str, urls: list[str], session_key: str, ttl_s: float, now: float) -> IceServer:
    """One iceServers entry with credentials valid until now + ttl_s, for the session `session_key`."""
    username = f"{int(now + ttl_s)}:{session_key}"
    return IceServer(urls=list(urls), username=username, credential=turn_password(secret, username))


def ice_servers_for(settings: Settings, session_key: str, now: float) -> list[IceServer]:
    """What a client is told to use in its welcome: the static list (STUN, a TURN with fixed credentials) and, when a
    TURN secret is set, the TURN URLs with credentials minted for this session."""
    servers = list(settings.ice_servers)
    if settings.turn_secret is not None and settings.turn_urls:
        servers.append(mint_turn_server(settings.turn_secret.get_secret_value(), settings.turn_urls, session_key,
                                        settings.turn_credential_ttl_s, now))
    return servers
