"""The node registry on Redis (issue 10, items 5 and 7): which nodes are alive, and their live counts.

Each node writes its entry every `beat_s`: a hash `nodes:<instance>` (name, the database lease id of this start,
started, last heartbeat, draining, calls, waiting, agents) that expires after `keep_s`, and its heartbeat as the
score of a sorted set `nodes`. A node whose heartbeat is older than `dead_after_s` is dead: the first node that sees
it moves it to the sorted set `nodes:dead` (ZREM says who saw it first) and has its records taken over
(gateway/store/nodes.py `reap(dead=...)`), without waiting for the database lease. A node that stops removes its
entry itself.

Counts summed over the live nodes are the cluster's (a dead node's counts drop out at once; its hash expires after
`keep_s`). Times are the nodes' wall clocks (keep them in sync with NTP, well under `dead_after_s`).

Commands per beat and node: one pipeline of HSET, PEXPIRE, ZADD, then ZRANGEBYSCORE (the dead check); listing the
nodes is ZRANGE plus one HGETALL per node, in one pipeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

DEAD_KEPT_S = 3600.0  # how long a dead node stays listed


@dataclass(frozen=True)
class NodeEntry:
    instance: str  # this process start (signaling/cluster.py INSTANCE)
    name: str  # the configured node name
    lease: str  # the database lease id of this start (gateway/store/nodes.py)
    started: float
    heartbeat: float
    draining: bool = False
    calls: int = 0  # offered or connected
    waiting: int = 0  # in line (callback requests included)
    agents: int = 0  # signed in (any status but offline)
    alive: bool = True

    @staticmethod
    def read(raw: dict[Any, Any], alive: bool) -> NodeEntry | None:
        def text(key: str) -> str:
            value = raw.get(key.encode(), raw.get(key, b""))
            return value.decode() if isinstance(value, bytes) else str(value)

        try:
            return NodeEntry(instance=text("instance"), name=text("name"), lease=text("lease"),
                             started=float(text("started")), heartbeat=float(text("heartbeat")),
                             draining=text("draining") == "1", calls=int(text("calls")), waiting=int(text("waiting")),
                             agents=int(text("agents")), alive=alive)
        except ValueError:
            return None  # expired meanwhile, or not ours

    def public(self) -> dict[str, Any]:
        return asdict(self)


class RedisNodeRegistry:
    def __init__(self, redis: Redis, *, dead_after_s: float, prefix: str = "callin:") -> None:
        self.redis = redis
        self.dead_after_s = dead_after_s
        self.keep_s = max(60.0, 10 * dead_after_s)
        self.prefix = prefix

    def _key(self, instance: str) -> str:
        return f"{self.prefix}nodes:{instance}"

    @property
    def _alive(self) -> str:
        return f"{self.prefix}nodes"

    @property
    def _dead(self) -> str:
        return f"{self.prefix}nodes:dead"

    async def beat(self, entry: NodeEntry) -> None:
        fields = {"instance": entry.instance, "name": entry.name, "lease": entry.lease, "started": repr(entry.started),
                  "heartbeat": repr(entry.heartbeat), "draining": "1" if entry.draining else "0",
                  "calls": entry.calls, "waiting": entry.waiting, "agents": entry.agents}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._key(entry.instance), mapping=fields)
            pipe.pexpire(self._key(entry.instance), int(self.keep_s * 1000))
            pipe.zadd(self._alive, {entry.instance: entry.heartbeat})
            await pipe.execute()

    async def leave(self, instance: str) -> None:
        """A node that stops: gone from the registry at once (its records are handed over or closed by itself)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self._alive, instance)
            pipe.delete(self._key(instance))
            await pipe.execute()

    async def claim_dead(self, now: float) -> list[NodeEntry]:
        """The nodes silent for longer than dead_after_s that this caller saw first (moved to the dead list)."""
        silent = await self.redis.zrangebyscore(self._alive, "-inf", now - self.dead_after_s)
        claimed: list[NodeEntry] = []
        for raw_instance in silent:
            instance = raw_instance.decode() if isinstance(raw_instance, bytes) else str(raw_instance)
            heard = await self.redis.zscore(self._alive, instance)
            if heard is None or not await self.redis.zrem(self._alive, instance):
                continue  # another node saw it first
            await self.redis.zadd(self._dead, {instance: heard})
            entry = NodeEntry.read(await self.redis.hgetall(self._key(instance)), alive=False)
            if entry is not None:
                claimed.append(entry)
        await self.redis.zremrangebyscore(self._dead, "-inf", now - DEAD_KEPT_S)
        return claimed

    async def nodes(self, now: float) -> list[NodeEntry]:
        """Every node listed: alive ones (heard of within dead_after_s) and the dead ones still kept."""
        alive = [m.decode() if isinstance(m, bytes) else str(m) for m in await self.redis.zrange(self._alive, 0, -1)]
        dead = [m.decode() if isinstance(m, bytes) else str(m) for m in await self.redis.zrange(self._dead, 0, -1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for instance in alive + dead:
                pipe.hgetall(self._key(instance))
            raws = await pipe.execute()
        out: list[NodeEntry] = []
        for index, raw in enumerate(raws):
            if not raw:
                continue
            entry = NodeEntry.read(raw, alive=index < len(alive))
            if entry is None:
                continue
            if entry.alive and now - entry.heartbeat > self.dead_after_s:
                entry = NodeEntry(**{**asdict(entry), "alive": False})
            out.append(entry)
        return sorted(out, key=lambda e: (not e.alive, e.name, e.started))


def totals(entries: list[NodeEntry]) -> dict[str, int]:
    """The cluster's counts: summed over the live nodes only."""
    live = [e for e in entries if e.alive]
    return {"nodes": len(live), "draining": sum(e.draining for e in live), "calls": sum(e.calls for e in live),
            "waiting": sum(e.waiting for e in live), "agents": sum(e.agents for e in live)}
