"""create_app(settings) -> web.Application: the composition root."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from pydantic import SecretStr

from gateway.auth import AgentSessions, CallerTokenVerifier
from gateway.config import Settings
from gateway.store.attachments import AttachmentStore
from gateway.store.accounts import AccountStore
from gateway.store.apikeys import ApiKeyStore
from gateway.store.db import Database
from gateway.store.queues import QueueStore
from gateway.store.records import CallQueries, CallRecorder
from gateway.store.webhooks import WebhookDispatcher, WebhookStore
from gateway.switchboard import Switchboard

from .agent import agent_ws
from .api import api_routes
from .caller import caller_ws
from .keys import (
    ACCOUNTS,
    ATTACHMENTS,
    WALLBOARD,
    AGENT_SESSIONS,
    API_KEYS,
    CALLER_TOKENS,
    CALLS,
    LIVE_SOCKETS,
    DATABASE,
    METRICS,
    QUEUES,
    READY,
    RECORDER,
    SETTINGS,
    SWITCHBOARD,
    WEBHOOK_DISPATCHER,
    WEBHOOKS,
)
from .files import file_routes
from .shutdown import LiveSockets, graceful_stop
from .metrics import Metrics
from .wallboard import WallboardHub
from .rest import errors_middleware, routes

log = structlog.get_logger("callin.app")
MAX_BODY = 256 * 1024


def demo_settings(settings: Settings) -> Settings:
    """Demo mode needs a caller-token secret; make one up for this process if none is configured."""
    if settings.caller_token_secret is None and settings.caller_public_key() is None:
        return settings.model_copy(update={"caller_token_secret": SecretStr(secrets.token_urlsafe(32))})
    return settings


def create_app(settings: Settings) -> web.Application:
    if settings.demo:
        settings = demo_settings(settings)
    # JSON bodies are capped at 256 KiB in read_body; uploads (attachments) up to max_attachment_bytes.
    app = web.Application(middlewares=[errors_middleware],
                          client_max_size=max(MAX_BODY, settings.max_attachment_bytes + 4096))
    app[SETTINGS] = settings
    app[CALLER_TOKENS] = CallerTokenVerifier(settings)
    db = Database(settings.db_url)
    app[DATABASE] = db
    app[ACCOUNTS] = AccountStore(db, time_cost=settings.password_hash_time_cost,
                                 memory_kib=settings.password_hash_memory_kib)
    app[API_KEYS] = ApiKeyStore(db)
    app[RECORDER] = CallRecorder(db, settings.node_name)
    app[CALLS] = CallQueries(db)
    app[WEBHOOKS] = WebhookStore(db)
    app[QUEUES] = QueueStore(db)
    app[AGENT_SESSIONS] = AgentSessions(settings)
    app[METRICS] = Metrics()
    app[READY] = {"ready": False}
    app[ATTACHMENTS] = AttachmentStore(settings.data_dir / "attachments", settings.max_attachment_bytes)
    app.router.add_routes(routes)
    app.router.add_routes(api_routes)
    app.router.add_routes(file_routes)
    app.router.add_get("/ws/caller", caller_ws)
    app.router.add_get("/ws/agent", agent_ws)
    _static(app, settings.web_root, settings.demo)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_switchboard_ctx)
    app[LIVE_SOCKETS] = LiveSockets()
    app.on_shutdown.append(graceful_stop)
    return app


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Migrate, seed the demo accounts (demo mode only), start the recorder; stop it after the switchboard."""
    settings = app[SETTINGS]
    db = app[DATABASE]
    try:
        if settings.migrate_on_start:
            await db.upgrade()
        if settings.demo:
            await seed_demo_accounts(app[ACCOUNTS], settings)
        elif not await app[ACCOUNTS].list():
            log.warning("no_accounts", hint="create one with: callin user add USERNAME --role admin")
        closed = await app[RECORDER].start()
        if closed:
            log.warning("calls_interrupted", count=closed)
    except BaseException:
        await db.close()
        raise
    yield
    started = time.monotonic()
    await app[RECORDER].stop()  # after the switchboard's cleanup: the calls it ended are written
    await db.close()
    log.info("shutdown.records_flushed", seconds=round(time.monotonic() - started, 3))


async def seed_demo_accounts(accounts: AccountStore, settings: Settings) -> None:
    for demo in settings.demo_agents:
        if not await accounts.exists(demo.username):
            await accounts.add(demo.username, demo.password, role=demo.role, display_name=demo.display_name,
                               min_password=1, skills=demo.skills, capacity=demo.capacity)


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
    settings = app[SETTINGS]
    board = Switchboard(settings)
    for config in await app[QUEUES].list():  # queues changed through the admin API win over the settings file
        board.queues.put(config)
    app[SWITCHBOARD] = board
    app[METRICS].bind(board)
    app[RECORDER].attach(board)
    http = aiohttp.ClientSession()

    async def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        async with http.post(url, data=body, headers=headers, allow_redirects=False,
                             timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            return response.status

    dispatcher = WebhookDispatcher(app[WEBHOOKS], send, queue_size=settings.webhook_queue_size,
                                   timeout_s=settings.webhook_timeout_s, max_attempts=settings.webhook_max_attempts,
                                   retry_base_s=settings.webhook_retry_base_s)
    dispatcher.attach(board)
    dispatcher.start()
    app[WEBHOOK_DISPATCHER] = dispatcher
    wallboard = WallboardHub(board)
    wallboard.start()
    app[WALLBOARD] = wallboard
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False
    await wallboard.stop()
    await board.close()  # ends live calls: their records are written before the recorder stops
    await dispatcher.stop()
    await http.close()
