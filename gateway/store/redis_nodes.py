"""The node registry on Redis (issue 10, items 5 and 7): which nodes are alive, and their live counts.

Keys (under `prefix`, default `callin:`):
- `nodes`       ZSET instance -> last heartbeat (UNIX seconds): the nodes taken for alive
- `nodes:dead`  ZSET instance -> last heartbeat: nodes found dead, listed for `DEAD_KEPT_S`
- `nodes:info`  HASH instance -> JSON {name, lease, started, heartbeat, draining, calls, waiting, agents, queues,
                lines, statuses}

Each node writes its field and its score every `beat_s` (one pipeline of HSET + ZADD). A node whose heartbeat is
older than `dead_after_s` is dead whatever it says: its counts no longer count (they are only summed over fresh
heartbeats), and the first node that sees it moves it to `nodes:dead` (ZREM answers 1 to one node only) and has its
records taken over (gateway/store/nodes.py `reap(dead=...)`) without waiting for the database lease. A node that
stops removes itself. Listing every node is three commands whatever their number (ZRANGE, ZRANGE, HGETALL).

Times are the nodes' wall clocks: keep them in sync (NTP), well under `dead_after_s`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

from redis.asyncio import Redis

from .nodes import NodeFenced

DEAD_KEPT_S = 3600.0  # how long a dead node stays listed

# A node's beat, unless it was found dead meanwhile (a process frozen, a machine paused, a partition longer than
# dead_after_s): then its callers have been taken over by another node and it must not come back to life.
_BEAT = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

T = TypeVar("T")
V = TypeVar("V")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
    # queue -> [staffed, ready]: its own agents with the queue's skills signed in, and of them the free ones plus its
    # calls of the queue ringing (summed over live nodes: the cluster's wait estimates, signaling/cluster_calls.py)
    queues: dict[str, list[int]] = field(default_factory=dict)
    # queue -> [callers waiting, when the longest-waiting of them arrived (UNIX s; 0: none)]: this node's line
    lines: dict[str, list[float]] = field(default_factory=dict)
    # agent status -> how many of this node's own agents (consoles here, not stand-ins) have it (offline left out)
    statuses: dict[str, int] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ("instance", "alive")},
                          separators=(",", ":"))

    @staticmethod
    def decode(instance: str, raw: Any, alive: bool) -> NodeEntry | None:
        try:
            data = json.loads(_text(raw))
            return NodeEntry(instance=instance, name=str(data["name"]), lease=str(data["lease"]),
                             started=float(data["started"]), heartbeat=float(data["heartbeat"]),
                             draining=bool(data["draining"]), calls=int(data["calls"]), waiting=int(data["waiting"]),
                             agents=int(data["agents"]), alive=alive,
                             queues={str(k): [int(v[0]), int(v[1])] for k, v in data.get("queues", {}).items()},
                             lines={str(k): [int(v[0]), float(v[1])] for k, v in data.get("lines", {}).items()},
                             statuses={str(k): int(v) for k, v in data.get("statuses", {}).items()})
        except (ValueError, KeyError, TypeError):
            return None  # not ours, or from another version

    def public(self) -> dict[str, Any]:
        return asdict(self)


class RedisNodeRegistry:
    def __init__(self, redis: Redis, *, dead_after_s: float, prefix: str = "callin:") -> None:
        self.redis = redis
        self.dead_after_s = dead_after_s
        self.alive_key = prefix + "nodes"
        self.dead_key = prefix + "nodes:dead"
        self.info_key = prefix + "nodes:info"
        self._beat = redis.register_script(_BEAT)

    async def beat(self, entry: NodeEntry) -> None:
        """Renews this node's entry; NodeFenced when the others found it dead meanwhile (it is not renewed)."""
        renewed = await self._beat(keys=[self.alive_key, self.dead_key, self.info_key],
                                   args=[entry.instance, entry.encode(), entry.heartbeat])
        if not int(renewed):
            raise NodeFenced(f"node {entry.name} ({entry.instance}) was found dead by another node while it was "
                             "silent; its calls were taken over")

    async def leave(self, instance: str) -> None:
        """A node that stops: gone from the registry at once (it handed over or closed its calls itself)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.alive_key, instance)
            pipe.hdel(self.info_key, instance)
            await pipe.execute()

    async def claim_dead(self, now: float) -> list[NodeEntry]:
        """The nodes silent for longer than dead_after_s that this caller saw first (moved to the dead list)."""
        silent = await self.redis.zrangebyscore(self.alive_key, "-inf", now - self.dead_after_s, withscores=True)
        claimed: list[NodeEntry] = []
        for raw_instance, heard in silent:
            instance = _text(raw_instance)
            if not await self.redis.zrem(self.alive_key, instance):
                continue  # another node saw it first (or it stopped meanwhile)
            await self.redis.zadd(self.dead_key, {instance: heard})
            entry = NodeEntry.decode(instance, await self.redis.hget(self.info_key, instance), alive=False)
            if entry is not None:
                claimed.append(entry)
        if silent:
            forgotten = [_text(m) for m in await self.redis.zrangebyscore(self.dead_key, "-inf", now - DEAD_KEPT_S)]
            if forgotten:
                await self.redis.zrem(self.dead_key, *forgotten)
                await self.redis.hdel(self.info_key, *forgotten)
        return claimed

    async def down(self, instances: Iterable[str], now: float) -> set[str]:
        """Which of these nodes are not alive: silent for longer than dead_after_s, found dead, or stopped (one
        ZMSCORE). The one liveness every part of a node uses (the signaling relay, the takeover of records)."""
        names = sorted(set(instances))
        if not names:
            return set()
        scores = await self.redis.zmscore(self.alive_key, names)
        return {name for name, heard in zip(names, scores) if heard is None or now - heard > self.dead_after_s}

    async def nodes(self, now: float) -> list[NodeEntry]:
        """Every node listed: alive ones (heard of within dead_after_s) first, then the dead ones still kept."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(self.alive_key, 0, -1)
            pipe.zrange(self.dead_key, 0, -1)
            pipe.hgetall(self.info_key)
            alive, dead, info = await pipe.execute()
        fields = {_text(k): v for k, v in info.items()}
        out: list[NodeEntry] = []
        for names, listed_alive in ((alive, True), (dead, False)):
            for raw in names:
                instance = _text(raw)
                entry = NodeEntry.decode(instance, fields.get(instance, b""), listed_alive)
                if entry is None:
                    continue
                if entry.alive and now - entry.heartbeat > self.dead_after_s:
                    entry = replace(entry, alive=False)  # silent: not found dead by anyone yet, but dead
                out.append(entry)
        return sorted(out, key=lambda e: (not e.alive, e.name, e.started))


def _fold(entries: list[NodeEntry], table: Callable[[NodeEntry], dict[str, V]], empty: T,
          add: Callable[[T, V], T]) -> dict[str, T]:
    """key -> the values of one per-node table (`table` of each entry) added up over the live nodes, from `empty`."""
    summed: dict[str, T] = {}
    for entry in entries:
        if entry.alive:
            for key, value in table(entry).items():
                summed[key] = add(summed.get(key, empty), value)
    return summed


def staff_totals(entries: list[NodeEntry]) -> dict[str, tuple[int, int]]:
    """queue -> (staffed, ready) summed over the live nodes."""
    return _fold(entries, lambda e: e.queues, (0, 0), lambda s, v: (s[0] + v[0], s[1] + v[1]))


def _add_line(summed: tuple[int, float | None], line: list[float]) -> tuple[int, float | None]:
    count, oldest = line
    arrived = oldest if count and oldest > 0 else None
    first = min((t for t in (summed[1], arrived) if t is not None), default=None)
    return summed[0] + int(count), first


def line_totals(entries: list[NodeEntry]) -> dict[str, tuple[int, float | None]]:
    """queue -> (callers waiting, when the longest-waiting of them arrived, or None) over the live nodes."""
    return _fold(entries, lambda e: e.lines, (0, None), _add_line)


def status_totals(entries: list[NodeEntry]) -> dict[str, int]:
    """agent status -> agents with it over the live nodes (each agent counted on the node of its console)."""
    return _fold(entries, lambda e: e.statuses, 0, operator.add)


def totals(entries: list[NodeEntry]) -> dict[str, int]:
    """The cluster's counts: summed over the live nodes only (a dead node's counts drop out at once)."""
    live = [e for e in entries if e.alive]
    return {"nodes": len(live), "draining": sum(e.draining for e in live), "calls": sum(e.calls for e in live),
            "waiting": sum(e.waiting for e in live), "agents": sum(e.agents for e in live)}
