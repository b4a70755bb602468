"""One waiting line for every node (issue 10, item 1): the calls waiting on each node, mirrored into Redis, give each
caller its place among the callers of the whole cluster, and let a node offering a call see whether an earlier
call of another node waits for the same agent.

Each node owns the calls homed on it (signaling/cluster_calls.py) and writes only what changed since its last pass,
in one script per pass (`sync`). Keys (under `prefix`, default `callin:`):
- `wait:{queue}`   ZSET call id -> line score (priority first, then arrival: gateway/store/redis_routing.line_score):
                   every waiting call of every node (ringing ones too): places in line and waiting counts
- `ready:{queue}`  ZSET the same scores, only the calls that may be offered now (queued, not ringing, caller
                   present, queue open): a claim of an agent for a later call yields to these (redis_routing
                   `claim_agent`)
- `declined:{id}`  SET agents that passed on that call (declined, rang out) and are not offered it again this round:
                   an earlier call an agent passed on does not hold that agent back from later ones
- `waitowner`      HASH call id -> owning node; `waitqueue` HASH call id -> its queue
- `waitnode:{node}` SET the call ids a node mirrors (what is dropped when it dies)

A call is written and dropped only by the node that owns it (a script checks the owner), so a node that hands a
caller over (drain, failover) never removes the entry its new home already wrote. A node found dead has its entries
dropped by the node that found it (`forget_node`), before its callers are restored elsewhere with their old arrival
time (so they keep their place).

Reading places is one pipelined round trip: a ZRANK per waiting call of this node, a ZCARD per queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

DECLINED_TTL_S = 3600

# KEYS: owner hash, queue hash, node set   ARGV: node, declined ttl ms, wait prefix, ready prefix, declined prefix,
# then per entry 5 values: op (put|drop), call id, queue, score, ready (1|0), declined agents (space-separated, "-"
# to leave the set as it is). The line keys are built here from the prefixes (one Redis, not a Redis Cluster).
_SYNC = """
local owner, where, mine = KEYS[1], KEYS[2], KEYS[3]
local node, ttl, wp, rp, dp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n = 0
for i = 6, #ARGV, 6 do
  local op, id, queue, score, offerable, passed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
                                                  ARGV[i + 5]
  local holder, old = redis.call('HGET', owner, id), redis.call('HGET', where, id)
  if op == 'put' then
    if old and old ~= queue then
      redis.call('ZREM', wp .. old, id)
      redis.call('ZREM', rp .. old, id)
    end
    if holder and holder ~= node then redis.call('SREM', KEYS[3]:sub(1, #KEYS[3] - #node) .. holder, id) end
    redis.call('HSET', owner, id, node)
    redis.call('HSET', where, id, queue)
    redis.call('SADD', mine, id)
    redis.call('ZADD', wp .. queue, score, id)
    if offerable == '1' then redis.call('ZADD', rp .. queue, score, id) else redis.call('ZREM', rp .. queue, id) end
    if passed ~= '-' then
      redis.call('DEL', dp .. id)
      for agent in string.gmatch(passed, '%S+') do redis.call('SADD', dp .. id, agent) end
      redis.call('PEXPIRE', dp .. id, ttl)
    end
    n = n + 1
  elseif holder == node then
    if old then
      redis.call('ZREM', wp .. old, id)
      redis.call('ZREM', rp .. old, id)
    end
    redis.call('DEL', dp .. id)
    redis.call('HDEL', owner, id)
    redis.call('HDEL', where, id)
    redis.call('SREM', mine, id)
    n = n + 1
  end
end
return n
"""

# KEYS: owner hash, queue hash, node set   ARGV: node, wait prefix, ready prefix, declined prefix
# A node is gone: every entry it still owns leaves the lines (entries that moved to another node stay).
_FORGET = """
local owner, where, mine = KEYS[1], KEYS[2], KEYS[3]
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', mine)) do
  if redis.call('HGET', owner, id) == ARGV[1] then
    local queue = redis.call('HGET', where, id)
    if queue then
      redis.call('ZREM', ARGV[2] .. queue, id)
      redis.call('ZREM', ARGV[3] .. queue, id)
    end
    redis.call('DEL', ARGV[4] .. id)
    redis.call('HDEL', owner, id)
    redis.call('HDEL', where, id)
    n = n + 1
  end
end
redis.call('DEL', mine)
return n
"""


@dataclass(frozen=True)
class LineEntry:
    """What a node says of one of its waiting calls."""

    call_id: str
    queue: str
    score: float
    offerable: bool
    declined: frozenset[str]


class RedisLine:
    """This node's side of the shared line (one per node process)."""

    def __init__(self, redis: Redis, node: str, prefix: str = "callin:") -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self._sync = redis.register_script(_SYNC)
        self._forget = redis.register_script(_FORGET)
        self._written: dict[str, LineEntry] = {}  # what this node last wrote, per call

    # -- keys ----------------------------------------------------------------------------------------------------
    def wait_key(self, queue: str) -> str:
        return f"{self.prefix}wait:{queue}"

    def ready_key(self, queue: str) -> str:
        return f"{self.prefix}ready:{queue}"

    def declined_prefix(self) -> str:
        return f"{self.prefix}declined:"

    # -- writing -------------------------------------------------------------------------------------------------
    async def sync(self, entries: Iterable[LineEntry]) -> int:
        """This node's waiting calls now: what changed since the last sync is written (new, moved, no longer
        offerable or offerable again, declined by someone), what left is dropped: one script. Returns how many
        entries it wrote."""
        current = {e.call_id: e for e in entries}
        args: list[Any] = []
        for call_id, entry in current.items():
            before = self._written.get(call_id)
            if before == entry:
                continue
            passed = " ".join(sorted(entry.declined)) if before is None or before.declined != entry.declined else "-"
            args += ["put", call_id, entry.queue, entry.score, "1" if entry.offerable else "0", passed]
        for call_id, before in self._written.items():
            if call_id not in current:
                args += ["drop", call_id, before.queue, 0, "0", "-"]
        if not args:
            return 0
        await self._sync(keys=self._index_keys(self.node),
                         args=[self.node, DECLINED_TTL_S * 1000, self.prefix + "wait:", self.prefix + "ready:",
                               self.declined_prefix(), *args])
        self._written = current
        return len(args) // 6

    def _index_keys(self, node: str) -> list[str]:
        return [self.prefix + "waitowner", self.prefix + "waitqueue", f"{self.prefix}waitnode:{node}"]

    async def leave(self) -> None:
        """This node stops: its waiting calls leave the shared line (their callers rejoin elsewhere)."""
        await self.forget_node(self.node)
        self._written = {}

    async def forget_node(self, node: str) -> int:
        """`node` is gone (dead, or stopped): the entries it still owns leave the lines."""
        return int(await self._forget(keys=self._index_keys(node),
                                      args=[node, self.prefix + "wait:", self.prefix + "ready:",
                                            self.declined_prefix()]))

    # -- reading -------------------------------------------------------------------------------------------------
    async def places(self, calls: Iterable[tuple[str, str]]) -> dict[str, tuple[int, int]]:
        """(position among every node's callers of its queue, that queue's length) of these (call id, queue);
        a call not (yet) in the shared line is left out."""
        wanted = list(calls)
        if not wanted:
            return {}
        queues = sorted({queue for _, queue in wanted})
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id, queue in wanted:
                pipe.zrank(self.wait_key(queue), call_id)
            for queue in queues:
                pipe.zcard(self.wait_key(queue))
            replies = await pipe.execute()
        lengths = dict(zip(queues, (int(n) for n in replies[len(wanted):])))
        return {call_id: (int(rank) + 1, lengths[queue])
                for (call_id, queue), rank in zip(wanted, replies) if rank is not None}

    async def owner(self, call_id: str) -> str | None:
        """The node that holds this waiting call now (None: it waits nowhere, or its node died and nobody has
        taken it over yet)."""
        node = await self.redis.hget(self.prefix + "waitowner", call_id)
        return None if node is None else (node.decode() if isinstance(node, bytes) else str(node))

    async def lengths(self, queues: Iterable[str]) -> dict[str, int]:
        """How many calls wait in each of these queues, over every node."""
        names = sorted(set(queues))
        if not names:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(self.wait_key(name))
            replies = await pipe.execute()
        return dict(zip(names, (int(r) for r in replies)))
