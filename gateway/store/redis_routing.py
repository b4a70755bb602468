"""Routing shared by several nodes, in Redis: waiting lines, agent presence with TTL heartbeats, and offers made
**exactly once** (issue 10, item 3).

Why Lua scripts (and not a dispatch leader or a lock): every node dispatches the calls it sees, at once, without
waiting for a leader to be elected or a lease to be handed over when a node dies. What must never happen — one call
offered to two agents, or one agent rung for two calls — is a single compare-and-set over the call and the agent
together, and a Redis script runs atomically: `claim` checks that the call is still waiting in its line, that the
agent is available, alive (its heartbeat key has not expired) and has the line's skills, and only then marks both
(call offered to the agent, agent ringing for the call, the call out of the line, the agent out of the idle set). Two
nodes racing for the same call or the same agent: one script runs first and wins, the other finds the state changed
and gets 0. Each change bumps the call's version (optimistic concurrency for the engine's other writes) and is
appended to a log stream, which the tests read back to prove the invariants.

Keys (under `prefix`, default `callin:`):
- `line:{queue}`   ZSET call id -> score (higher priority first, then older: -priority * 1e13 + created ms)
- `call:{id}`      HASH queue, priority, created_at, skills (space-separated), node, state, agent, version
- `agent:{name}`   HASH status, skills, node, idle_since, call
- `alive:{name}`   STRING with a TTL: the agent's console is attached to a node that heartbeats it
- `idle`           ZSET available agents -> idle since (longest idle first)
- `log`            STREAM of routing changes (capped)
- `home:{id}`      STRING the node instance that holds a call (its media and its engine state), with a TTL
- `claims`         ZSET agent -> deadline (ms, Redis clock) of a claim its node has not confirmed by a push yet
(Whether a node is alive is the node registry's to say: gateway/store/redis_nodes.py.)

The engine of each node uses the agent side of this (gateway/engine cluster wiring, signaling/cluster_calls.py):
`claim_agent` rings an agent for a call of this node exactly once across the cluster (the call side is the home
node's own state machine: one node owns a call), `push_presence` mirrors an agent's status from the node that holds
its console, refusing to overwrite an offer that node has not seen yet, and `unclaim` gives back an agent a claim
took for a call that went away meanwhile.

A claim does not outlive its claimer, nor its deadline: it records the claiming node instance (`home`) and a
deadline (its score in `claims`, ms on the Redis clock: the ring timeout plus a margin). A claim whose offer never reached the
agent's node (the claimer died between the claim and its offer, or the offer and everything after it were lost: pub/sub
is at most once) would otherwise ring the agent in the shared store for ever, and no node would offer it a call. So
the refusal of `push_presence` holds only while the claim is alive: once its deadline passed, or its claimer is dead
in the node registry (silent for longer than `claimer_dead_after_s`, found dead or stopped:
gateway/store/redis_nodes.py), the agent's node writes its status over it (logged `claim_dropped`), and the agent is
offered calls again. The agent's node learns of such a claim from its agents' heartbeat (`heartbeat` returns the
agents a stale claim rings: one script, one round trip a second, whatever the number of agents).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

PRIORITY_WEIGHT = 10_000_000_000_000  # 1e13 ms ≈ 317 years: priority always orders before time
LOG_MAX = 100_000
YIELD_LOOKAHEAD = 20  # earlier calls looked at per line before a claim (those the agent passed on are skipped)
CLAIM_HOLD_S = 60.0  # how long a claim whose offer its agent's node has not seen holds, unless told otherwise

# KEYS: call, line, agent, alive, idle, log   ARGV: call id, agent name, now, node
_CLAIM = """
local call, line, agent, alive, idle, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('HGET', call, 'state') ~= 'queued' then return 0 end
if not redis.call('ZSCORE', line, ARGV[1]) then return 0 end
if redis.call('HGET', agent, 'status') ~= 'available' then return 0 end
if redis.call('EXISTS', alive) == 0 then return 0 end
local need = redis.call('HGET', call, 'skills') or ''
local has = ' ' .. (redis.call('HGET', agent, 'skills') or '') .. ' '
for skill in string.gmatch(need, '%S+') do
  if not string.find(has, ' ' .. skill .. ' ', 1, true) then return 0 end
end
redis.call('HSET', call, 'state', 'offered', 'agent', ARGV[2])
local version = redis.call('HINCRBY', call, 'version', 1)
redis.call('HSET', agent, 'status', 'ringing', 'call', ARGV[1])
redis.call('ZREM', line, ARGV[1])
redis.call('ZREM', idle, ARGV[2])
redis.call('XADD', log, 'MAXLEN', '~', ARGV[5], '*', 'op', 'offer', 'call', ARGV[1], 'agent', ARGV[2], 'node', ARGV[4],
           'version', version)
return version
"""

# KEYS: call, line, agent, idle, log   ARGV: call id, agent name, now, node, status after, log max
# The ring ended without an answer (declined, timed out, the console went away): the call waits again at its old
# place (its score is kept in the call hash), the agent becomes `status after` (available, or away after ring-outs).
_RELEASE = """
local call, line, agent, idle, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('HGET', call, 'state') ~= 'offered' or redis.call('HGET', call, 'agent') ~= ARGV[2] then return 0 end
redis.call('HSET', call, 'state', 'queued', 'agent', '')
local version = redis.call('HINCRBY', call, 'version', 1)
redis.call('ZADD', line, redis.call('HGET', call, 'score'), ARGV[1])
redis.call('HSET', agent, 'status', ARGV[5], 'call', '')
if ARGV[5] == 'available' then
  redis.call('HSET', agent, 'idle_since', ARGV[3])
  redis.call('ZADD', idle, ARGV[3], ARGV[2])
end
redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], '*', 'op', 'release', 'call', ARGV[1], 'agent', ARGV[2], 'node', ARGV[4],
           'version', version)
return version
"""

# KEYS: call, agent, log   ARGV: call id, agent name, node, log max
_ACCEPT = """
local call, agent, log = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', call, 'state') ~= 'offered' or redis.call('HGET', call, 'agent') ~= ARGV[2] then return 0 end
redis.call('HSET', call, 'state', 'connected')
local version = redis.call('HINCRBY', call, 'version', 1)
redis.call('HSET', agent, 'status', 'busy')
redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], '*', 'op', 'accept', 'call', ARGV[1], 'agent', ARGV[2], 'node', ARGV[3],
           'version', version)
return version
"""

# KEYS: call, line, agent, idle, log   ARGV: call id, now, node, agent status after, log max, expected holder
# The call ended (whatever its state): out of its line, its agent (if any) freed. -1: the holder is not the one
# whose key was passed (it changed since it was read): read again and retry.
_END = """
local call, line, agent, idle, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local state = redis.call('HGET', call, 'state')
if not state or state == 'ended' then return 0 end
local holder = redis.call('HGET', call, 'agent')
if (holder or '') ~= ARGV[6] then return -1 end
redis.call('HSET', call, 'state', 'ended', 'agent', '')
local version = redis.call('HINCRBY', call, 'version', 1)
redis.call('ZREM', line, ARGV[1])
if holder and holder ~= '' and redis.call('HGET', agent, 'call') == ARGV[1] then
  redis.call('HSET', agent, 'status', ARGV[4], 'call', '')
  if ARGV[4] == 'available' then
    redis.call('HSET', agent, 'idle_since', ARGV[2])
    redis.call('ZADD', idle, ARGV[2], redis.call('HGET', agent, 'name'))
  end
end
redis.call('XADD', log, 'MAXLEN', '~', ARGV[5], '*', 'op', 'end', 'call', ARGV[1], 'agent', holder or '', 'node', ARGV[3],
           'version', version)
redis.call('PEXPIRE', call, 3600000)
return version
"""


# KEYS: agent, alive, idle, log, then the shared `ready:{queue}` lines this agent may serve (gateway/store/redis_line.py)
# ARGV: call id, agent name, needed skills (space-separated), home node, log max, the call's line score ('' : none),
#       the `declined:` key prefix, lookahead, how long the claim holds unseen (ms), the `claims` key
# Ring the agent for a call of node `home` if, at this instant, it is available, alive and skilled for it, and no
# earlier call of those lines (of any node) waits for it: one line over every node, a later call never overtakes an
# earlier one for the same agent (an earlier call the agent passed on does not count; at most YIELD_LOOKAHEAD are
# looked at per line). Returns the node that holds the agent's console (where the offer must be delivered), or 0.
_CLAIM_AGENT = """
local agent, alive, idle, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('HGET', agent, 'status') ~= 'available' then return 0 end
if redis.call('EXISTS', alive) == 0 then return 0 end
local has = ' ' .. (redis.call('HGET', agent, 'skills') or '') .. ' '
for skill in string.gmatch(ARGV[3], '%S+') do
  if not string.find(has, ' ' .. skill .. ' ', 1, true) then return 0 end
end
if ARGV[6] ~= '' then
  for i = 5, #KEYS do
    for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[6], 'LIMIT', 0, ARGV[8])) do
      if other ~= ARGV[1] and redis.call('SISMEMBER', ARGV[7] .. other, ARGV[2]) == 0 then return 0 end
    end
  end
end
local clock = redis.call('TIME')
local until_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[9])
redis.call('HSET', agent, 'status', 'ringing', 'call', ARGV[1], 'home', ARGV[4])
redis.call('ZADD', ARGV[10], until_ms, ARGV[2])
redis.call('ZREM', idle, ARGV[2])
redis.call('XADD', log, 'MAXLEN', '~', ARGV[5], '*', 'op', 'offer', 'call', ARGV[1], 'agent', ARGV[2], 'node', ARGV[4])
return redis.call('HGET', agent, 'node') or 0
"""

# KEYS: the node registry's live nodes, claims   ARGV: key prefix, node, ttl (ms), now (wall clock), dead after ('' :
#       not looked at), then the agents' names
# This node still holds these agents' consoles: their `alive:` keys renewed. Returns those of them that a stale claim
# rings (one whose offer this node has not confirmed by a push, past its deadline or of a dead claimer): this node
# pushes their status again, which writes over that claim (_PRESENCE checks it again, atomically). One ZMSCORE for
# every agent: only those with a pending claim are looked at further.
_HEARTBEAT = """
local names = {}
for i = 6, #ARGV do
  names[#names + 1] = ARGV[i]
  redis.call('SET', ARGV[1] .. 'alive:' .. ARGV[i], ARGV[2], 'PX', ARGV[3])
end
local stale = {}
if #names == 0 then return stale end
local pending = redis.call('ZMSCORE', KEYS[2], unpack(names))
local now_ms = nil
for i, name in ipairs(names) do
  local until_ms = tonumber(pending[i] or '')
  if until_ms then
    local agent = ARGV[1] .. 'agent:' .. name
    local fields = redis.call('HMGET', agent, 'status', 'home')
    if fields[1] ~= 'ringing' then
      redis.call('ZREM', KEYS[2], name)  -- left over: the claim was given back or written over meanwhile
    else
      if not now_ms then
        local clock = redis.call('TIME')
        now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
      end
      if now_ms > until_ms then
        stale[#stale + 1] = name
      elseif ARGV[5] ~= '' then
        local home = fields[2] or ''
        local heard = home ~= '' and redis.call('ZSCORE', KEYS[1], home) or nil
        if home ~= '' and (not heard or tonumber(ARGV[4]) - tonumber(heard) > tonumber(ARGV[5])) then
          stale[#stale + 1] = name
        end
      end
    end
  end
end
return stale
"""

# KEYS: agent, idle, log, claims   ARGV: agent name, call id, now, node, log max
# A claim whose call went away before it was offered: the agent is available again (only if that claim still holds).
_UNCLAIM = """
local agent, idle, log = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', agent, 'status') ~= 'ringing' or redis.call('HGET', agent, 'call') ~= ARGV[2] then return 0 end
redis.call('HSET', agent, 'status', 'available', 'call', '', 'idle_since', ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', idle, ARGV[3], ARGV[1])
redis.call('XADD', log, 'MAXLEN', '~', ARGV[5], '*', 'op', 'unclaim', 'call', ARGV[2], 'agent', ARGV[1], 'node', ARGV[4])
return 1
"""

# KEYS: agent, idle, log, the node registry's live nodes (gateway/store/redis_nodes.py), claims
# ARGV: name, status, call, seen, skills, node, idle since, display name, role, capacity, log max, now (this node's
#       wall clock, as the registry's heartbeats), dead after (s; '': the claimer's liveness is not looked at)
# The node that holds the agent's console says its status. Refused (0) while a claim rings the agent for a call that
# node has not seen offered yet (`seen`: the last call it saw offered to the agent): the offer is on its way, and the
# status that follows it will be pushed again. Unless that claim is stale: past its deadline, or its claimer (`home`)
# is dead in the registry (not heard of within `dead after`): its offer will never come; written over it (2).
_PRESENCE = """
local agent, idle, log, nodes, claims = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local status, call = redis.call('HGET', agent, 'status'), redis.call('HGET', agent, 'call') or ''
local written = 1
if status == 'ringing' and call ~= '' and call ~= ARGV[4] and call ~= ARGV[3] then
  local why = nil
  local until_ms = tonumber(redis.call('ZSCORE', claims, ARGV[1]) or '')
  local clock = redis.call('TIME')
  if until_ms and tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > until_ms then
    why = 'expired'
  elseif ARGV[13] ~= '' then
    local home = redis.call('HGET', agent, 'home') or ''
    local heard = home ~= '' and redis.call('ZSCORE', nodes, home) or nil
    if home ~= '' and (not heard or tonumber(ARGV[12]) - tonumber(heard) > tonumber(ARGV[13])) then
      why = 'claimer_dead'
    end
  end
  if not why then return 0 end
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[11], '*', 'op', 'claim_dropped', 'call', call, 'agent', ARGV[1],
             'node', ARGV[6], 'claimer', redis.call('HGET', agent, 'home') or '', 'reason', why)
  written = 2
end
redis.call('HSET', agent, 'name', ARGV[1], 'status', ARGV[2], 'call', ARGV[3], 'skills', ARGV[5], 'node', ARGV[6],
           'idle_since', ARGV[7], 'display_name', ARGV[8], 'role', ARGV[9], 'capacity', ARGV[10])
if status == 'ringing' then redis.call('ZREM', claims, ARGV[1]) end  -- a claim, if any: confirmed or written over
if ARGV[2] == 'available' then
  redis.call('ZADD', idle, ARGV[7], ARGV[1])
else
  redis.call('ZREM', idle, ARGV[1])
end
if status ~= ARGV[2] then
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[11], '*', 'op', 'status', 'agent', ARGV[1], 'status', ARGV[2],
             'call', ARGV[3], 'node', ARGV[6])
end
return written
"""


@dataclass(frozen=True)
class Waiting:
    call_id: str
    queue: str
    skills: frozenset[str]


@dataclass(frozen=True)
class Available:
    username: str
    skills: frozenset[str]


def line_score(priority: int, created_at: float) -> float:
    return -priority * PRIORITY_WEIGHT + int(created_at * 1000)


class RedisRouting:
    """Waiting lines, presence and offers shared by every node on one Redis (one instance per node process)."""

    def __init__(self, redis: Redis, node: str, prefix: str = "callin:", log_max: int = LOG_MAX,
                 claimer_dead_after_s: float | None = None) -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self.log_max = log_max
        # A claim of a node silent this long in the registry (`{prefix}nodes`) no longer holds an agent (None: only
        # its deadline ends it; the server passes CALLIN_NODE_DEAD_AFTER_S)
        self.claimer_dead_after_s = claimer_dead_after_s
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._accept = redis.register_script(_ACCEPT)
        self._end = redis.register_script(_END)
        self._claim_agent = redis.register_script(_CLAIM_AGENT)
        self._unclaim = redis.register_script(_UNCLAIM)
        self._presence = redis.register_script(_PRESENCE)
        self._heartbeat = redis.register_script(_HEARTBEAT)

    # -- keys ----------------------------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def call_key(self, call_id: str) -> str:
        return self._k("call", call_id)

    def line_key(self, queue: str) -> str:
        return self._k("line", queue)

    def agent_key(self, username: str) -> str:
        return self._k("agent", username)

    def alive_key(self, username: str) -> str:
        return self._k("alive", username)

    @property
    def idle_key(self) -> str:
        return self._k("idle")

    @property
    def log_key(self) -> str:
        return self._k("log")

    @property
    def claims_key(self) -> str:
        return self._k("claims")

    # -- waiting lines -----------------------------------------------------------------------------------------------
    async def join(self, call_id: str, queue: str, priority: int, created_at: float, skills: Iterable[str]) -> None:
        """A new call waits in `queue` (its place: priority, then age), owned by this node."""
        score = line_score(priority, created_at)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.call_key(call_id), mapping={
                "queue": queue, "priority": priority, "created_at": created_at, "skills": " ".join(sorted(skills)),
                "node": self.node, "state": "queued", "agent": "", "version": 0, "score": score})
            pipe.zadd(self.line_key(queue), {call_id: score})
            pipe.sadd(self._k("lines"), queue)
            await pipe.execute()

    async def waiting(self, limit: int = 1000) -> list[Waiting]:
        """The calls waiting in every line, in answer order across lines (priority, then age)."""
        queues = sorted(await self.redis.smembers(self._k("lines")))
        found: list[tuple[float, str, str]] = []
        for queue in queues:
            name = queue.decode() if isinstance(queue, bytes) else queue
            for member, score in await self.redis.zrange(self.line_key(name), 0, limit - 1, withscores=True):
                found.append((score, member.decode() if isinstance(member, bytes) else member, name))
        found.sort()
        calls: list[Waiting] = []
        for _score, call_id, queue in found[:limit]:
            skills = await self.redis.hget(self.call_key(call_id), "skills")
            calls.append(Waiting(call_id, queue, frozenset(_text(skills).split())))
        return calls

    async def position(self, call_id: str, queue: str) -> int | None:
        rank = await self.redis.zrank(self.line_key(queue), call_id)
        return None if rank is None else rank + 1

    # -- presence ----------------------------------------------------------------------------------------------------
    async def agent_online(self, username: str, skills: Iterable[str], ttl_s: float) -> None:
        """An agent's console attached to this node (away until it says it is available)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.agent_key(username), mapping={
                "name": username, "status": "away", "skills": " ".join(sorted(skills)), "node": self.node,
                "call": "", "idle_since": 0})
            pipe.set(self.alive_key(username), self.node, px=int(ttl_s * 1000))
            await pipe.execute()

    async def heartbeat(self, usernames: Iterable[str], ttl_s: float, now: float | None = None) -> list[str]:
        """This node still holds these agents' consoles (missed heartbeats: they are no longer offered calls). One
        round trip. Returns those of them rung by a stale claim (past its deadline, or its claimer dead): push their
        status again (push_presence writes over that claim)."""
        names = list(usernames)
        if not names:
            return []
        dead_after = "" if self.claimer_dead_after_s is None else self.claimer_dead_after_s
        stale = await self._heartbeat(keys=[self._k("nodes"), self.claims_key], args=[
            self.prefix, self.node, max(1, int(ttl_s * 1000)), time.time() if now is None else now, dead_after,
            *names])
        return [_text(name) for name in stale]

    async def set_available(self, username: str, now: float) -> bool:
        """An idle agent (not ringing, not in a call) becomes available; False if it holds a call."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self.agent_key(username))
                    status = _text(await pipe.hget(self.agent_key(username), "status"))
                    if status in ("ringing", "busy"):
                        await pipe.reset()
                        return False
                    pipe.multi()
                    pipe.hset(self.agent_key(username), mapping={"status": "available", "idle_since": now})
                    pipe.zadd(self.idle_key, {username: now})
                    await pipe.execute()
                    return True
                except WatchError:  # the agent changed meanwhile: read it again
                    continue

    async def available(self) -> list[Available]:
        """Available agents whose console is alive, longest idle first."""
        names = [_text(n) for n in await self.redis.zrange(self.idle_key, 0, -1)]
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self.alive_key(name))
                pipe.hget(self.agent_key(name), "skills")
            replies = await pipe.execute()
        return [Available(name, frozenset(_text(replies[2 * i + 1]).split()))
                for i, name in enumerate(names) if replies[2 * i]]

    # -- offers: each one a single atomic script ---------------------------------------------------------------------
    async def claim(self, call_id: str, queue: str, username: str, now: float) -> int:
        """Offer the call to the agent if, at this instant, the call waits in its line and the agent is available,
        alive and skilled for it; returns the call's new version, or 0 (someone else got there first)."""
        keys = [self.call_key(call_id), self.line_key(queue), self.agent_key(username), self.alive_key(username),
                self.idle_key, self.log_key]
        return int(await self._claim(keys=keys, args=[call_id, username, now, self.node, self.log_max]))

    async def release(self, call_id: str, queue: str, username: str, now: float, status_after: str = "available") -> int:
        """The ring ended unanswered: the call waits again at its place; the agent becomes `status_after`."""
        keys = [self.call_key(call_id), self.line_key(queue), self.agent_key(username), self.idle_key, self.log_key]
        return int(await self._release(keys=keys, args=[call_id, username, now, self.node, status_after,
                                                         self.log_max]))

    async def accept(self, call_id: str, username: str) -> int:
        keys = [self.call_key(call_id), self.agent_key(username), self.log_key]
        return int(await self._accept(keys=keys, args=[call_id, username, self.node, self.log_max]))

    async def end(self, call_id: str, now: float, agent_after: str = "available") -> int:
        """The call ended: out of its line, its agent (if it held it) becomes `agent_after`."""
        call = self.call_key(call_id)
        while True:
            queue, holder = (_text(v) for v in await self.redis.hmget(call, ["queue", "agent"]))
            keys = [call, self.line_key(queue or "_"), self.agent_key(holder or "_"), self.idle_key, self.log_key]
            done = int(await self._end(keys=keys, args=[call_id, now, self.node, agent_after, self.log_max, holder]))
            if done != -1:
                return done

    async def call_state(self, call_id: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.call_key(call_id))).items()}

    async def agent_state(self, username: str) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (await self.redis.hgetall(self.agent_key(username))).items()}

    async def dispatch(self, now: float) -> list[tuple[str, str]]:
        """One dispatch pass of this node: waiting calls in answer order, each to the longest-idle skilled agent;
        every offer is a claim (so passes of several nodes at once never offer twice). Returns what it offered."""
        offered: list[tuple[str, str]] = []
        agents = await self.available()
        for call in await self.waiting():
            if not agents:
                break
            for agent in agents:
                if call.skills <= agent.skills and await self.claim(call.call_id, call.queue, agent.username, now):
                    offered.append((call.call_id, agent.username))
                    agents.remove(agent)
                    break
        return offered

    # -- the engine's side: calls stay with their home node, agents are shared -------------------------------------
    async def claim_agent(self, call_id: str, username: str, skills: Iterable[str], *, score: float | None = None,
                          before: Iterable[str] = (), hold_s: float = CLAIM_HOLD_S) -> str | None:
        """Ring `username` for a call of this node if it is available, alive and has `skills`, atomically (no other
        node can ring it meanwhile); returns the node that holds its console, or None. With the call's line `score`
        and the shared ready lines (`before`, gateway/store/redis_line.py) of the queues this agent serves: None also
        when an earlier call of one of them, of any node, waits for this agent (its home offers it instead). The
        claim holds `hold_s` at most while the agent's node has not seen its offer (or until this node is dead)."""
        keys = [self.agent_key(username), self.alive_key(username), self.idle_key, self.log_key, *before]
        node = await self._claim_agent(keys=keys, args=[
            call_id, username, " ".join(sorted(skills)), self.node, self.log_max, "" if score is None else score,
            self.prefix + "declined:", YIELD_LOOKAHEAD, max(1, int(hold_s * 1000)), self.claims_key])
        return None if node in (0, b"0", None, b"", "") else _text(node)

    async def unclaim(self, call_id: str, username: str, now: float) -> bool:
        keys = [self.agent_key(username), self.idle_key, self.log_key, self.claims_key]
        return bool(await self._unclaim(keys=keys, args=[username, call_id, now, self.node, self.log_max]))

    async def push_presence(self, username: str, status: str, call_id: str, seen: str, skills: Iterable[str],
                            idle_since: float, display_name: str, role: str, capacity: int,
                            now: float | None = None) -> int:
        """This node holds the agent's console: its status is `status`. 0 (refused): an offer it has not seen yet
        rings the agent (push again once it arrived); 1: written; 2: written over a stale claim (past its deadline,
        or its claimer dead in the node registry: the offer will never come)."""
        keys = [self.agent_key(username), self.idle_key, self.log_key, self._k("nodes"), self.claims_key]
        dead_after = "" if self.claimer_dead_after_s is None else self.claimer_dead_after_s
        return int(await self._presence(keys=keys, args=[
            username, status, call_id, seen, " ".join(sorted(skills)), self.node, idle_since, display_name, role,
            capacity, self.log_max, time.time() if now is None else now, dead_after]))

    async def set_home(self, call_id: str, ttl_s: float) -> None:
        await self.redis.set(self._k("home", call_id), self.node, px=int(ttl_s * 1000))

    async def home_of(self, call_id: str) -> str | None:
        node = await self.redis.get(self._k("home", call_id))
        return None if node is None else _text(node)

    async def log(self) -> list[dict[str, str]]:
        """The routing changes, oldest first (the stream is capped at log_max)."""
        return [{_text(k): _text(v) for k, v in fields.items()} | {"id": _text(entry_id)}
                for entry_id, fields in await self.redis.xrange(self.log_key)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
