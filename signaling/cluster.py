"""What nodes that share one database tell each other over Redis (`CALLIN_REDIS_URL`; issue 10, item 7): so far,
queue configuration changes. A queue created, changed or removed through the admin API of one node is in the
database at once; the bus tells every other node, which reads it back and applies it (routing, hours, skills and
the wallboard follow it within a moment, not at its next restart).

And one line across the nodes: a call is offered to an available agent of any node, exactly once, and the agent's
signaling reaches the call's home node (signaling/cluster_calls.py).

Without `CALLIN_REDIS_URL` nothing here runs: one node needs no bus, and the engine dispatches in-process.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from gateway.errors import GatewayError
from gateway.store.redis_bus import RedisBus
from gateway.store.redis_nodes import RedisNodeRegistry
from gateway.store.redis_routing import RedisRouting

from .agent import relayed_executor
from .cluster_calls import CALL_RELAY, CallRelay
from .call_views import serve_forwarded_view
from .files import serve_file_request
from .keys import QUEUES, SETTINGS, SWITCHBOARD
from .recording_control import serve_forwarded

log = structlog.get_logger("callin.cluster")

BUS: web.AppKey["RedisBus"] = web.AppKey("bus")
INSTANCE: web.AppKey[str] = web.AppKey("cluster_instance")
QUEUES_CHANNEL = "queues"


class QueueChanged(BaseModel):
    """On the `queues` channel: a queue was saved (`put`) or removed (`delete`) by node instance `by`."""

    op: str = Field(pattern="^(put|delete)$")
    name: str = Field(min_length=1, max_length=64)
    by: str = Field(min_length=1, max_length=64)


async def tell_queue_changed(app: web.Application, op: str, name: str) -> None:
    """After a change through this node's admin API: the other nodes apply it too (no-op without Redis)."""
    bus = app.get(BUS)
    if bus is None:
        return
    try:
        await bus.publish(QUEUES_CHANNEL, QueueChanged(op=op, name=name, by=app[INSTANCE]).model_dump())
    except Exception:  # the change is saved; other nodes read it at their next start
        log.warning("cluster.publish_failed", channel=QUEUES_CHANNEL, queue=name, exc_info=True)


async def _apply_queue_change(app: web.Application, raw: dict[str, Any]) -> None:
    try:
        change = QueueChanged.model_validate(raw)
    except ValidationError:
        log.warning("cluster.bad_message", channel=QUEUES_CHANNEL)
        return
    if change.by == app[INSTANCE]:
        return  # our own change, applied already
    board = app[SWITCHBOARD]
    if change.op == "delete":
        try:
            board.remove_queue(change.name)
        except GatewayError as exc:  # callers wait in it here: it stays until they are gone (and a restart)
            log.warning("cluster.queue_kept", queue=change.name, reason=exc.reason)
            return
        log.info("cluster.queue_removed", queue=change.name, by=change.by)
        return
    config = next((c for c in await app[QUEUES].list() if c.name == change.name), None)
    if config is None:
        return  # removed again meanwhile
    board.put_queue(config)
    log.info("cluster.queue_applied", queue=change.name, by=change.by)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context, after the switchboard's: the bus to the other nodes, if CALLIN_REDIS_URL is set."""
    settings = app[SETTINGS]
    app[INSTANCE] = f"{settings.node_name}-{secrets.token_hex(4)}"[:64]
    if settings.redis_url is None:
        yield
        return
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    bus = RedisBus(redis, app[INSTANCE])

    async def on_queue(message: dict[str, Any]) -> None:
        await _apply_queue_change(app, message)

    await bus.subscribe(QUEUES_CHANNEL, on_queue)
    app[BUS] = bus
    registry = RedisNodeRegistry(redis, dead_after_s=settings.node_dead_after_s)
    routing = RedisRouting(redis, app[INSTANCE], claimer_dead_after_s=settings.node_dead_after_s)
    relay = CallRelay(app[SWITCHBOARD], routing, bus, app[INSTANCE], relayed_executor(app),
                      settings.max_message_bytes, registry)
    relay.register_request("recording", serve_forwarded(app[SWITCHBOARD]))
    relay.register_request("call_view", serve_forwarded_view(app))  # REST views of live calls
    relay.register_request("file", serve_file_request(app))  # uploads and snapshots asked through other nodes
    await relay.start()
    app[CALL_RELAY] = relay
    log.info("cluster.joined", instance=app[INSTANCE])
    try:
        yield
    finally:
        await relay.close()
        await bus.close()
        await redis.aclose()
