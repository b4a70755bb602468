"""create_app(settings) -> web.Application: the composition root."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
from aiohttp import web

from gateway.auth import AgentDirectory, AgentSessions, CallerTokenVerifier
from gateway.config import Settings
from gateway.switchboard import Switchboard

from .agent import agent_ws
from .caller import caller_ws
from .keys import AGENT_DIRECTORY, AGENT_SESSIONS, CALLER_TOKENS, METRICS, READY, SETTINGS, SWITCHBOARD
from .metrics import Metrics
from .rest import errors_middleware, routes

log = structlog.get_logger("callin.app")
MAX_BODY = 256 * 1024


def demo_settings(settings: Settings) -> Settings:
    """Demo mode needs a caller-token secret; make one up for this process if none is configured."""
    if settings.caller_token_secret is None and settings.caller_public_key() is None:
        return settings.model_copy(update={"caller_token_secret": secrets.token_urlsafe(32)})
    return settings


def create_app(settings: Settings) -> web.Application:
    if settings.demo:
        settings = demo_settings(settings)
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[CALLER_TOKENS] = CallerTokenVerifier(settings)
    directory = AgentDirectory(settings)
    app[AGENT_DIRECTORY] = directory
    app[AGENT_SESSIONS] = AgentSessions(settings, directory)
    app[METRICS] = Metrics()
    app[READY] = {"ready": False}
    app.router.add_routes(routes)
    app.router.add_get("/ws/caller", caller_ws)
    app.router.add_get("/ws/agent", agent_ws)
    _static(app, settings.web_root, settings.demo)
    app.cleanup_ctx.append(_switchboard_ctx)
    return app


def _static(app: web.Application, root: Path, demo: bool) -> None:
    if not root.is_dir():
        log.warning("web_root_missing", path=str(root))
        return

    def page(path: Path) -> web.RequestHandler:  # type: ignore[type-arg]
        async def handler(request: web.Request) -> web.FileResponse:
            return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
        return handler

    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/demo/" if demo else "/console/")

    app.router.add_get("/", index)
    app.router.add_get("/console/", page(root / "console" / "index.html"))
    app.router.add_get("/caller/", page(root / "caller" / "index.html"))
    if demo:
        app.router.add_get("/demo/", page(root / "caller" / "demo.html"))
    app.router.add_static("/static/", root, show_index=False, append_version=False)


async def _switchboard_ctx(app: web.Application) -> AsyncIterator[None]:
    board = Switchboard(app[SETTINGS])
    app[SWITCHBOARD] = board
    app[METRICS].bind(board)
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False
    await board.close()
