"""Embedding the caller widget in an integrator's site (another origin): CORS for the caller-facing parts only.

What a page on an allowed origin (Settings.embed_origins) may use across origins:

    GET/HEAD /static/caller/<file>                        the widget's ES modules (a module script is a CORS fetch)
    POST     /api/v1/calls/{call_id}/attachments           a caller's file upload (Authorization: Bearer <caller JWT>)
    GET      /api/v1/calls/{call_id}/attachments/{id}      a call's file: pictures the agent pushed, chat files
    POST     /api/v1/demo/token                            demo mode only: the demo's stand-in for a backend
    WS       /ws/caller                                    checked in signaling/caller.py (a browser sends Origin)

Responses on those paths echo an allowed Origin in Access-Control-Allow-Origin (with Vary: Origin); preflights
(OPTIONS with Access-Control-Request-Method) are answered here. Credentials (cookies) are never allowed across
origins: a caller authenticates with its token. Everything else (the console, the agent socket, sign-in, the REST
management API, metrics) never carries CORS headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.config import Settings

from .hardening import public_origins
from .keys import SETTINGS

CALLER_PATHS = re.compile(
    r"^/(?:static/caller/[^/]+|api/v1/calls/[^/]+/attachments(?:/[^/]+)?|api/v1/demo/token)$")
ALLOW_METHODS = ("GET", "HEAD", "POST")
ALLOW_HEADERS = ("authorization", "content-type")
MAX_AGE_S = 600
EXPOSE_HEADERS = "Content-Disposition"


def _split(origin: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, explicit port) of an origin, or None when it is not scheme://host[:port]."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port


@dataclass(frozen=True, slots=True)
class EmbedOrigins:
    """Which browser origins may use the caller-facing parts: the gateway's own public origins, always, and the
    integrators' origins of the settings (exact, 'scheme://*.domain' for subdomains, or '*')."""

    own: frozenset[str]
    exact: frozenset[str]
    subdomains: tuple[tuple[str, str, int | None], ...]  # (scheme, ".domain", port)
    any: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> "EmbedOrigins":
        return cls.of(public_origins(settings), settings.embedding_origins)

    @classmethod
    def of(cls, own: Iterable[str], embed: Iterable[str]) -> "EmbedOrigins":
        """`embed` as Settings normalises it (gateway.config.normalise_origin)."""
        embed = list(embed)
        exact: set[str] = set()
        subdomains: list[tuple[str, str, int | None]] = []
        for origin in embed:
            split = _split(origin) if origin != "*" else None
            if split is not None and split[1].startswith("*."):
                subdomains.append((split[0], split[1][1:], split[2]))
            elif origin != "*":
                exact.add(origin)
        return cls(frozenset(own), frozenset(exact), tuple(subdomains), "*" in embed)

    def allows(self, origin: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if self.any or origin in self.own or origin in self.exact:
            return True
        split = _split(origin)
        if split is None:
            return False
        scheme, host, port = split
        return any(scheme == want and port == want_port and host.endswith(suffix) and len(host) > len(suffix)
                   for want, suffix, want_port in self.subdomains)


EMBED_ORIGINS = web.AppKey("embed_origins", EmbedOrigins)


def is_caller_facing(path: str) -> bool:
    return CALLER_PATHS.match(path) is not None


def origin_allowed(request: web.BaseRequest) -> bool:
    """For the caller socket: no Origin (a native app, a server) is allowed; a browser's must be on the list."""
    origin = request.headers.get("Origin")
    return origin is None or request.app[EMBED_ORIGINS].allows(origin)


def refusal(origin: str | None, what: str) -> dict[str, Any]:
    return {"code": "origin_not_allowed",
            "reason": f"origin {origin!r} may not use {what}; the gateway's operator lists the sites that embed the "
                      "widget in CALLIN_EMBED_ORIGINS"}


@web.middleware
async def cors_preflight(request: web.Request, handler: Any) -> web.StreamResponse:
    """OPTIONS preflights of the caller-facing paths (the router has no OPTIONS routes: it would answer 405)."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers \
            or not is_caller_facing(request.path):
        return await handler(request)
    origin = request.headers.get("Origin")
    method = request.headers["Access-Control-Request-Method"].strip().upper()
    asked = [h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",") if h.strip()]
    if origin is None or not request.app[EMBED_ORIGINS].allows(origin):
        return web.json_response(refusal(origin, "the caller API"), status=403, headers={"Vary": "Origin"})
    if method not in ALLOW_METHODS:
        return web.json_response({"code": "method_not_allowed",
                                  "reason": f"{method} is not allowed across origins here (only "
                                            f"{', '.join(ALLOW_METHODS)})"}, status=403, headers={"Vary": "Origin"})
    extra = [h for h in asked if h not in ALLOW_HEADERS]
    if extra:
        return web.json_response({"code": "header_not_allowed",
                                  "reason": f"the header(s) {', '.join(extra)} are not allowed across origins here "
                                            f"(only {', '.join(ALLOW_HEADERS)})"}, status=403, headers={"Vary": "Origin"})
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
        "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
        "Access-Control-Max-Age": str(MAX_AGE_S),
        "Vary": "Origin",
    })


async def cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: every response of a caller-facing path (files, errors, 304s) gets Vary: Origin, and an
    allowed Origin is echoed back. Credentials are never allowed (no Access-Control-Allow-Credentials)."""
    if not is_caller_facing(request.path) or "Access-Control-Allow-Origin" in response.headers:
        return
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return  # a preflight: cors_preflight answered it, and a refused one must stay without CORS headers
    origin = request.headers.get("Origin")
    if origin is not None and request.app[EMBED_ORIGINS].allows(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS


def install(app: web.Application) -> None:
    app[EMBED_ORIGINS] = EmbedOrigins.from_settings(app[SETTINGS])
    app.middlewares.insert(0, cors_preflight)
    app.on_response_prepare.append(cors_headers)


def refuse_upgrade(request: web.BaseRequest) -> web.HTTPForbidden:
    """The caller socket's refusal of a browser Origin that is not on the list (before the upgrade)."""
    return web.HTTPForbidden(text=json.dumps(refusal(request.headers.get("Origin"), "the caller socket")),
                             content_type="application/json")
