"""The node registry in the server (issue 10, items 5 and 7): with `CALLIN_REDIS_URL`, each node writes its heartbeat
and live counts to Redis every `node_beat_s` (gateway/store/redis_nodes.py), takes over the callers of a node
silent for `node_dead_after_s` (its database lease may run much longer), reaps at once what a draining node hands
over (bus channel `nodes`), and publishes the cluster's summed counts as `callin_cluster_*` gauges in /metrics
(summed every GAUGES_EVERY_S): nodes, calls, waiting, agents, and what an operator of several nodes watches per queue
(callers waiting, the longest wait, agents staffed and ready) and agents by status, all from the one read of the
registry (each node writes its own per-queue line and agent statuses with its beat), never a Redis read per scrape.

`GET /api/v1/nodes` (admins) lists the nodes: name, started, last heartbeat, draining, calls, waiting, agents, and
the cluster totals. Without Redis it lists this node alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from gateway.models import AgentStatus
from gateway.store.nodes import NodeFenced
from gateway.store.redis_nodes import (NodeEntry, RedisNodeRegistry, line_totals, staff_totals, status_totals,
                                       totals)
from gateway.tasks import stop_task

from . import fence
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
    board = app[SWITCHBOARD]
    calls, waiting, agents = board.counts()
    drain = app.get(DRAIN)
    relay = app.get(CALL_RELAY)
    queues = {name: list(counts) for name, counts in relay.staff_counts().items()} if relay is not None else {}
    lines = {name: [count, oldest] for name, (count, oldest) in board.waiting_lines().items()}
    if relay is not None:
        statuses = relay.status_counts()
    else:
        statuses = {s.value: n for s in AgentStatus if s is not AgentStatus.OFFLINE
                    and (n := board.agents_with_status(s))}
    return NodeEntry(instance=app[INSTANCE], name=app[SETTINGS].node_name, lease=app[RECORDER].lease.id,
                     started=app[STARTED], heartbeat=at, draining=bool(drain and drain.draining), calls=calls,
                     waiting=waiting, agents=agents, queues=queues, lines=lines, statuses=statuses)


@node_routes.get("/api/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """The nodes of the cluster (admins): alive ones first, then the dead ones still remembered."""
    await require(request, roles={"admin"})
    now = time.time()
    registry = request.app.get(REGISTRY)
    entries = await registry.nodes(now) if registry is not None else [local_entry(request.app, now)]
    return json_response({"nodes": [e.public() for e in entries], "totals": totals(entries),
                          "dead_after_s": request.app[SETTINGS].node_dead_after_s, "at": now})


class _ClusterLines(Collector):
    """Per queue and per agent status over the live nodes, as last summed (every GAUGES_EVERY_S); the longest wait
    is counted at the scrape from the longest-waiting caller's arrival, so it grows between two sums."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[int, float | None]] = {}
        self.staff: dict[str, tuple[int, int]] = {}
        self.statuses: dict[str, int] = {}
        self.summed = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not self.summed:
            return
        at = time.time()
        waiting = GaugeMetricFamily("callin_cluster_queue_waiting", "Callers waiting in the queue, all live nodes",
                                    labels=["queue"])
        longest = GaugeMetricFamily("callin_cluster_queue_longest_wait_seconds",
                                    "How long the longest-waiting caller of the queue has waited (since it arrived, "
                                    "kept across a restore on another node), all live nodes; 0 when none waits",
                                    labels=["queue"])
        for queue in sorted(set(self.lines) | set(self.staff)):
            count, oldest = self.lines.get(queue, (0, None))
            waiting.add_metric([queue], count)
            longest.add_metric([queue], max(0.0, at - oldest) if oldest is not None else 0.0)
        yield waiting
        yield longest
        staffed = GaugeMetricFamily("callin_cluster_queue_agents", "Agents with the queue's skills, all live nodes: "
                                    "signed in (staffed) and of them free or ringing (ready)", labels=["queue", "kind"])
        for queue, (signed_in, ready) in sorted(self.staff.items()):
            staffed.add_metric([queue, "staffed"], signed_in)
            staffed.add_metric([queue, "ready"], ready)
        yield staffed
        statuses = GaugeMetricFamily("callin_cluster_agents_by_status", "Agents signed in by status, all live nodes "
                                     "(each counted on the node of its console)", labels=["status"])
        for status in AgentStatus:
            if status is not AgentStatus.OFFLINE:
                statuses.add_metric([status.value], self.statuses.get(status.value, 0))
        yield statuses


class ClusterGauges:
    def __init__(self, app: web.Application) -> None:
        r = app[METRICS].registry
        self.nodes = Gauge("callin_cluster_nodes", "Live nodes in the registry", registry=r)
        self.calls = Gauge("callin_cluster_calls", "Calls offered or connected, all live nodes", registry=r)
        self.waiting = Gauge("callin_cluster_waiting", "Calls waiting in line, all live nodes", registry=r)
        self.agents = Gauge("callin_cluster_agents", "Agents signed in, all live nodes", registry=r)
        self.per_queue = _ClusterLines()
        r.register(self.per_queue)

    def set(self, entries: list[NodeEntry]) -> None:
        counts = totals(entries)
        self.nodes.set(counts["nodes"])
        self.calls.set(counts["calls"])
        self.waiting.set(counts["waiting"])
        self.agents.set(counts["agents"])
        self.per_queue.lines = line_totals(entries)
        self.per_queue.staff = staff_totals(entries)
        self.per_queue.statuses = status_totals(entries)
        self.per_queue.summed = True


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
                    gauges.set(entries)
                    counted = time.monotonic()
        except asyncio.CancelledError:
            raise
        except NodeFenced as exc:
            fence.stop_now(str(exc), "registry")
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
