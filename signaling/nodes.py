"""The node registry in the server (issue 10, items 5 and 7): with `CALLIN_REDIS_URL`, each node writes its heartbeat
and live counts to Redis every `node_beat_s` (gateway/store/redis_nodes.py), takes over the callers of a node
silent for `node_dead_after_s` (its database lease may run much longer), reaps at once what a draining node hands
over (bus channel `nodes`), and publishes the cluster's summed counts as `callin_cluster_*` gauges in /metrics
(summed every GAUGES_EVERY_S).

`GET /api/v1/nodes` (admins) lists the nodes: name, started, last heartbeat, draining, calls, waiting, agents, and
the cluster totals. Without Redis it lists this node alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Gauge
from redis.asyncio import Redis

from gateway.store.redis_nodes import NodeEntry, RedisNodeRegistry, staff_totals, totals
from gateway.tasks import stop_task

from .access import require
from .cluster import BUS, INSTANCE
from .cluster_calls import CALL_RELAY
from .drain import DRAIN, NODES_CHANNEL
from .keys import METRICS, RECORDER, SETTINGS, SWITCHBOARD
from .rest import json_response

log = structlog.get_logger("callin.nodes")

REGISTRY: web.AppKey[RedisNodeRegistry] = web.AppKey("node_registry", RedisNodeRegistry)
STARTED: web.AppKey[float] = web.AppKey("node_started", float)

GAUGES_EVERY_S = 5.0  # how often the callin_cluster_* gauges are summed (a scrape is rarely more frequent)

node_routes = web.RouteTableDef()


def local_entry(app: web.Application, at: float) -> NodeEntry:
    """This node's counts now."""
    calls, waiting, agents = app[SWITCHBOARD].counts()
    drain = app.get(DRAIN)
    relay = app.get(CALL_RELAY)
    queues = {name: list(counts) for name, counts in relay.staff_counts().items()} if relay is not None else {}
    return NodeEntry(instance=app[INSTANCE], name=app[SETTINGS].node_name, lease=app[RECORDER].lease.id,
                     started=app[STARTED], heartbeat=at, draining=bool(drain and drain.draining), calls=calls,
                     waiting=waiting, agents=agents, queues=queues)


@node_routes.get("/api/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """The nodes of the cluster (admins): alive ones first, then the dead ones still remembered."""
    await require(request, roles={"admin"})
    now = time.time()
    registry = request.app.get(REGISTRY)
    entries = await registry.nodes(now) if registry is not None else [local_entry(request.app, now)]
    return json_response({"nodes": [e.public() for e in entries], "totals": totals(entries),
                          "dead_after_s": request.app[SETTINGS].node_dead_after_s, "at": now})


class ClusterGauges:
    def __init__(self, app: web.Application) -> None:
        r = app[METRICS].registry
        self.nodes = Gauge("callin_cluster_nodes", "Live nodes in the registry", registry=r)
        self.calls = Gauge("callin_cluster_calls", "Calls offered or connected, all live nodes", registry=r)
        self.waiting = Gauge("callin_cluster_waiting", "Calls waiting in line, all live nodes", registry=r)
        self.agents = Gauge("callin_cluster_agents", "Agents signed in, all live nodes", registry=r)

    def set(self, counts: dict[str, int]) -> None:
        self.nodes.set(counts["nodes"])
        self.calls.set(counts["calls"])
        self.waiting.set(counts["waiting"])
        self.agents.set(counts["agents"])


async def _beat_forever(app: web.Application, registry: RedisNodeRegistry, gauges: ClusterGauges) -> None:
    beat_s = app[SETTINGS].node_beat_s
    counted = 0.0  # when the cluster gauges were last summed
    while True:
        try:
            now = time.time()
            entry = local_entry(app, now)
            await registry.beat(entry)
            relay = app.get(CALL_RELAY)
            for dead in await registry.claim_dead(now) if not entry.draining else ():
                log.warning("nodes.dead", node=dead.name, instance=dead.instance,
                            silent_s=round(now - dead.heartbeat, 1), waiting=dead.waiting, calls=dead.calls)
                if relay is not None:  # out of the shared line before its callers are restored elsewhere
                    await relay.forget_node(dead.instance)
                app[RECORDER].reap_now(dead=[dead.lease])
            if relay is not None or time.monotonic() - counted >= GAUGES_EVERY_S:
                entries = await registry.nodes(now)  # one round trip (every beat with the relay: its estimates)
                if relay is not None:
                    relay.cluster_staff(staff_totals(entries))
                if time.monotonic() - counted >= GAUGES_EVERY_S:
                    gauges.set(totals(entries))
                    counted = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("nodes.beat_failed", exc_info=True)
        await asyncio.sleep(beat_s)


async def nodes_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context, after the cluster's (it needs the bus): the registry, with Redis."""
    app[STARTED] = time.time()
    settings = app[SETTINGS]
    if settings.redis_url is None:
        yield
        return
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    registry = RedisNodeRegistry(redis, dead_after_s=settings.node_dead_after_s)
    app[REGISTRY] = registry

    async def on_nodes(message: dict[str, Any]) -> None:
        if message.get("op") == "handed_over" and message.get("by") != app[INSTANCE]:
            app[RECORDER].reap_now()  # the callers it handed over are on their way here

    bus = app.get(BUS)
    if bus is not None:
        await bus.subscribe(NODES_CHANNEL, on_nodes)
    task = asyncio.ensure_future(_beat_forever(app, registry, ClusterGauges(app)))
    try:
        yield
    finally:
        await stop_task(task)
        with contextlib.suppress(Exception):
            await registry.leave(app[INSTANCE])
        await redis.aclose()
