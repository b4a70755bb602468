"""HTTP hardening: security headers on the agent console, HSTS over HTTPS, the server's slow-client limits, and the
public origins a browser may come from (checked on the agent WebSocket and on cookie-signed writes)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.config import Settings

from .keys import SETTINGS

# The console loads only its own scripts and styles; media and stills are blob:/mediastream: URLs it makes itself;
# it may not be framed (clickjacking of the accept/hang-up buttons).
CONSOLE_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",  # one style="--swatch:…" attribute (pen colours); no <style> elements
    "img-src 'self' data: blob:",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower().rstrip("/")


def public_origins(settings: Settings) -> frozenset[str]:
    """The origins the console is served from, as configured: CALLIN_PUBLIC_URL (or, without it, the listening
    address, with localhost and 127.0.0.1 for local use) and CALLIN_ALLOWED_ORIGINS. Never the request's own Host
    header, which the client chooses."""
    origins = {origin_of(settings.base_url)} | {origin_of(o) for o in settings.allowed_origins}
    if not settings.public_url:
        for host in ("127.0.0.1", "localhost", "[::1]"):
            origins.add(f"{settings.scheme}://{host}:{settings.port}")
    return frozenset(origins)


def warn_without_public_url(settings: Settings, log: Any) -> None:
    """Listening beyond loopback without CALLIN_PUBLIC_URL: consoles opened through any other name are refused."""
    if not settings.public_url and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("public_url_unset", host=settings.host,
                    hint="set CALLIN_PUBLIC_URL to the URL agents open; the agent WebSocket accepts only the "
                         "configured origins: " + ", ".join(sorted(public_origins(settings))))


def origin_is_public(settings: Settings, origin: str) -> bool:
    return origin.strip().lower().rstrip("/") in public_origins(settings)


def is_https(request: web.BaseRequest, settings: Settings) -> bool:
    return settings.scheme == "https" or (settings.public_url or "").startswith("https:") or request.secure


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, including static files, errors and WebSocket handshakes."""
    settings = request.app[SETTINGS]
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/console/") or request.path.startswith("/static/console/"):
        headers.setdefault("Content-Security-Policy", CONSOLE_CSP)
        headers.setdefault("X-Frame-Options", "DENY")
    if settings.hsts_max_age_s > 0 and is_https(request, settings):
        headers.setdefault("Strict-Transport-Security", f"max-age={settings.hsts_max_age_s}")


def server_options(settings: Settings) -> dict[str, Any]:
    """Options for the aiohttp server (web.run_app / AppRunner): a client must send a complete request head within
    http_header_timeout_s of connecting or of its previous response, else the connection is closed (aiohttp's
    keep-alive timer also covers a connection whose request head has not arrived)."""
    return {"keepalive_timeout": settings.http_header_timeout_s}
