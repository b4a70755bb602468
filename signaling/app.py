"""create_app(settings) -> web.Application: the composition root."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from pydantic import SecretStr

from gateway.auth import CallerTokenVerifier
from gateway.config import Settings
from gateway.errors import NotFound
from gateway.models import CallState
from gateway.destinations import DestinationPolicy, parse_networks
from gateway.signin_throttle import SignInThrottle, ThrottleRule
from gateway.store.attachments import AttachmentLimits, AttachmentStore, DatabaseAttachments, DiskAttachments
from gateway.store.accounts import AccountStore
from gateway.store.apikeys import ApiKeyStore
from gateway.store.db import Database
from gateway.store.queues import QueueStore
from gateway.store.records import CallQueries, CallRecorder, RecorderSettings
from gateway.store.recordings import RecordingArchive, RecordingCatalog, RecordingSweeper
from gateway.store.signins import SignInStore
from gateway.store.transcripts import TranscriptStore
from gateway.store.webhooks import WebhookDispatcher, WebhookStore
from gateway.switchboard import Switchboard
from gateway.media import MediaConfig
from gateway.media.workers import WorkerPlane

from .agent import agent_ws
from .api import api_routes
from .caller import caller_ws
from .cluster import cluster_ctx
from .drain import DRAIN, Drain, drain_ctx
from .nodes import node_routes, nodes_ctx
from .keys import (
    ACCOUNTS,
    ATTACHMENTS,
    WALLBOARD,
    LIVE_SIGNINS,
    SIGNINS,
    API_KEYS,
    CALLER_TOKENS,
    CALLS,
    LIVE_SOCKETS,
    TURNSTILE,
    DATABASE,
    DESTINATIONS,
    METRICS,
    QUEUES,
    READY,
    RECORDINGS,
    RECORDER,
    SETTINGS,
    SIGNIN_THROTTLE,
    SWITCHBOARD,
    TRANSCRIPTS,
    WEBHOOK_DISPATCHER,
    WEBHOOKS,
)
from . import cors, fence
from .files import file_routes
from .hardening import security_headers, warn_without_public_url
from .shutdown import LiveSockets, graceful_stop
from .looplag import LoopLag
from .turnstile import Turnstile
from .metrics import Metrics
from .signins import LiveSignIns
from .outbound import guarded_session, webhook_sender
from .wallboard import WallboardHub
from .rest import errors_middleware, routes
from .recordings_api import download_url, recording_routes

log = structlog.get_logger("callin.app")
MAX_BODY = 256 * 1024


def demo_settings(settings: Settings) -> Settings:
    """Demo mode needs a caller-token secret; make one up for this process if none is configured."""
    if settings.caller_token_secret is None and settings.caller_public_key() is None:
        return settings.model_copy(update={"caller_token_secret": SecretStr(secrets.token_urlsafe(32))})
    return settings


def signin_throttle(settings: Settings) -> SignInThrottle:
    def rule(free: int) -> ThrottleRule:
        return ThrottleRule(free, settings.signin_backoff_base_s, settings.signin_backoff_max_s)
    return SignInThrottle(account=rule(settings.signin_free_failures_per_account),
                          address=rule(settings.signin_free_failures_per_address))


def create_app(settings: Settings) -> web.Application:
    if settings.demo:
        settings = demo_settings(settings)
    # JSON bodies are capped at 256 KiB in read_body; uploads (attachments) up to max_attachment_bytes.
    app = web.Application(middlewares=[errors_middleware],
                          client_max_size=max(MAX_BODY, settings.max_attachment_bytes + 4096))
    app[SETTINGS] = settings
    app.on_response_prepare.append(security_headers)
    cors.install(app)  # the caller-facing parts for the integrators' sites (CALLIN_EMBED_ORIGINS)
    warn_without_public_url(settings, log)
    app[CALLER_TOKENS] = CallerTokenVerifier(settings)
    db = Database(settings.db_url)
    app[DATABASE] = db
    app[ACCOUNTS] = AccountStore(db, time_cost=settings.password_hash_time_cost,
                                 memory_kib=settings.password_hash_memory_kib,
                                 concurrency=settings.password_hash_concurrency, queue=settings.password_hash_queue)
    app[SIGNIN_THROTTLE] = signin_throttle(settings)
    app[API_KEYS] = ApiKeyStore(db)
    app[RECORDER] = CallRecorder(db, settings.node_name, RecorderSettings(
        lease_s=settings.node_lease_s, heartbeat_s=settings.node_heartbeat_s, batch_max=settings.records_batch_max,
        durable_timeout_s=settings.records_durable_timeout_s, stop_timeout_s=settings.records_stop_timeout_s,
        restore_within_s=settings.restore_waiting_within_s))
    app[CALLS] = CallQueries(db)
    app[TRANSCRIPTS] = TranscriptStore(db, app[RECORDER])
    app[WEBHOOKS] = WebhookStore(db)
    app[DESTINATIONS] = DestinationPolicy(parse_networks(settings.webhook_allowed_networks))
    app[QUEUES] = QueueStore(db)
    app[RECORDINGS] = RecordingCatalog(db)
    app[SIGNINS] = SignInStore(db, ttl_s=settings.agent_session_ttl_s, max_s=settings.agent_session_max_s)
    app[LIVE_SIGNINS] = LiveSignIns(app[SIGNINS], settings.agent_session_check_s)
    app[METRICS] = Metrics()
    app[READY] = {"ready": False}
    files = DatabaseAttachments(db) if settings.attachments_in_database else DiskAttachments(settings.data_dir /
                                                                                             "attachments")
    app[ATTACHMENTS] = AttachmentStore(files, AttachmentLimits.from_settings(settings))
    app.router.add_routes(routes)
    app.router.add_routes(api_routes)
    app.router.add_routes(recording_routes)
    app.router.add_routes(file_routes)
    app.router.add_get("/ws/caller", caller_ws)
    app.router.add_get("/ws/agent", agent_ws)
    _static(app, settings.web_root, settings.demo)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_attachments_ctx)
    app.cleanup_ctx.append(_switchboard_ctx)
    app.cleanup_ctx.append(cluster_ctx)
    app[DRAIN] = Drain(app)  # SIGTERM drains (signaling/drain.py)
    app.cleanup_ctx.append(drain_ctx)
    app.cleanup_ctx.append(nodes_ctx)  # the node registry, with Redis (signaling/nodes.py)
    app.router.add_routes(node_routes)
    app[LIVE_SOCKETS] = LiveSockets()
    app[TURNSTILE] = Turnstile(settings.setups_per_loop_iteration)
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
        app[RECORDER].on_fenced(lambda reason: fence.stop_now(reason, "records"))
        closed = await app[RECORDER].start()
        app[METRICS].bind_records(app[RECORDER])
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


async def _attachments_ctx(app: web.Application) -> AsyncIterator[None]:
    """The files kept from before (for their quotas), and the sweeper that deletes them after the retention time."""
    store = app[ATTACHMENTS]
    await store.open()
    log.info("attachments.storage", backend="database" if store.shared else "disk")
    store.start()
    yield
    await store.stop()


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
    workers = settings.media_workers or 0
    plane = (WorkerPlane(MediaConfig.from_settings(settings), workers, settings.log_level, settings.log_format)
             if workers > 0 else None)
    board = Switchboard(settings, plane=plane)
    for config in await app[QUEUES].list():  # queues changed through the admin API win over the settings file
        board.queues.put(config)
    app[SWITCHBOARD] = board
    await board.start()
    app[METRICS].bind(board)
    app[METRICS].bind_transcripts(board, app[TRANSCRIPTS])
    app[RECORDER].attach(board)
    http = guarded_session(app[DESTINATIONS])  # webhooks reach only the addresses the policy allows
    dispatcher = WebhookDispatcher(app[WEBHOOKS], webhook_sender(http), queue_size=settings.webhook_queue_size,
                                   timeout_s=settings.webhook_timeout_s, max_attempts=settings.webhook_max_attempts,
                                   retry_base_s=settings.webhook_retry_base_s,
                                   per_destination_concurrency=settings.webhook_per_destination_concurrency,
                                   per_destination_queue=settings.webhook_per_destination_queue)
    dispatcher.attach(board)
    app[METRICS].bind_webhooks(dispatcher)
    app[RECORDER].on_interrupted(lambda record: dispatcher.publish_record("call.ended", record))
    app[TRANSCRIPTS].attach(board)
    app[TRANSCRIPTS].on_ready(lambda call, segments, complete: dispatcher.publish(
        "transcript.ready", call, transcript=segments, transcript_complete=complete))
    dispatcher.start()
    app[WEBHOOK_DISPATCHER] = dispatcher
    # Recordings: a finished one is filed (checksum, catalog, recording.ready); old ones are swept (retention).
    archive = RecordingArchive(app[RECORDINGS], board.recording_storage, dispatcher.publish_record,
                               download_url(settings.base_url))
    archive.attach(board)

    async def record_of(call_id: str) -> dict[str, Any] | None:
        try:
            return await app[CALLS].get(call_id)
        except NotFound:
            return None

    def live_here(call_id: str) -> bool:
        call = board.call(call_id)
        return call is not None and call.state is not CallState.ENDED

    archive.start_recovery(live_here, record_of)  # files a recording that a killed process left unfiled
    sweeper = RecordingSweeper(app[RECORDINGS], board.recording_storage, settings.recording_retention_days,
                               settings.recording_sweep_interval_s)
    sweeper.start()
    wallboard = WallboardHub(board)
    wallboard.start()
    app[WALLBOARD] = wallboard
    app[LIVE_SIGNINS].start()
    lag = LoopLag(app[METRICS].loop_lag.observe)
    lag.start()
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False
    await lag.stop()
    await app[LIVE_SIGNINS].stop()
    await wallboard.stop()
    await board.close()  # ends live calls: their records are written before the recorder stops
    await sweeper.stop()
    await archive.stop()  # the recordings of the calls just ended are filed (recording.ready queued)
    await app[TRANSCRIPTS].stop()  # the last transcripts stored and handed to the webhooks
    await dispatcher.stop()
    await http.close()
