"""Timers that survive their node, in Redis (issue 10, item 2): the TimerRegistry of gateway/store/live.py for
several nodes.

A timer is data (gateway/engine/timers.py): a name `<group>:<kind>`, a due time and string arguments. Here it is kept
in Redis — a sorted set of names by due time and a hash of their arguments — so that when the node that set it dies,
any other node fires it. Every node runs a poller; a due timer is *claimed* by removing it from the sorted set
(ZREM answers 1 to exactly one node), and only the node that claimed it runs the handler registered for its kind
(every node registers the same handlers). So each timer fires once, on one node, whoever set it.

The Protocol is synchronous (the engine sets and cancels timers inside its commands): `set` and `cancel` update a
local index at once and hand the Redis write to one writer task, which applies writes in the order they were made.
Membership (`in`, `len`, `pending`) answers for the timers this node set, cancelled nowhere yet and not yet due (a
due timer has fired or is firing, on whichever node claimed it): the timers of a call are set by the node that owns
the call; that local index keeps a heap of due times, so a check costs the timers that fell due, not a walk over all.
`close()` stops this node's poller and leaves its timers in Redis for the node that takes its calls over.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ..engine.timers import check_set, split_name

log = structlog.get_logger("callin.timers")

Handler = Callable[..., None]
Write = Callable[[Any], Any]

# KEYS: due, args   ARGV: name   -> the arguments (JSON) if this call claimed the timer, else nil
_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local args = redis.call('HGET', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return args or '[]'
end
return false
"""


class _LocalIndex:
    """The timers this node set and has not seen cancelled or due: name -> (due, args), with a heap of due times (so
    that dropping the due ones costs what they are, not a walk over every timer) and the names of each group.

    The heap keeps entries lazily: a timer set again or cancelled leaves its old entry, skipped when it comes up
    (its due time no longer matches) and swept out when stale entries outnumber the live ones."""

    def __init__(self) -> None:
        self._timers: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._heap: list[tuple[float, str]] = []
        self._groups: dict[str, set[str]] = {}

    def set(self, name: str, due: float, args: tuple[str, ...]) -> None:
        self.pop(name)
        self._timers[name] = (due, args)
        self._groups.setdefault(split_name(name)[0], set()).add(name)
        heapq.heappush(self._heap, (due, name))
        if len(self._heap) > 2 * len(self._timers) + 64:
            self._heap = [(due, name) for name, (due, _) in self._timers.items()]
            heapq.heapify(self._heap)

    def pop(self, name: str) -> tuple[float, tuple[str, ...]] | None:
        entry = self._timers.pop(name, None)
        if entry is not None:
            group = split_name(name)[0]
            names = self._groups[group]
            names.discard(name)
            if not names:
                del self._groups[group]
        return entry

    def live(self, now: float) -> dict[str, tuple[float, tuple[str, ...]]]:
        """The index without the timers due by `now` (fired or firing, here or on another node)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, name = heapq.heappop(heap)
            entry = self._timers.get(name)
            if entry is not None and entry[0] == due:
                self.pop(name)
        return self._timers

    def group(self, group: str, now: float) -> list[str]:
        self.live(now)
        return list(self._groups.get(group, ()))

    def clear(self) -> None:
        self._timers.clear()
        self._heap.clear()
        self._groups.clear()


class RedisTimers:
    def __init__(self, redis: Redis, after: Callable[[], None] | None = None, *, prefix: str = "callin:",
                 poll_s: float = 0.05, batch: int = 100) -> None:
        self.redis = redis
        self._after = after
        self._due_key = prefix + "timers:due"
        self._args_key = prefix + "timers:args"
        self._poll_s = poll_s
        self._batch = batch
        self._handlers: dict[str, Handler] = {}
        self._local = _LocalIndex()  # the timers set through this node
        self._writes: asyncio.Queue[tuple[str, str, float, str]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._claim = redis.register_script(_CLAIM)
        self._closed = False

    # -- the TimerRegistry Protocol --------------------------------------------------------------------------------
    def on(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for timers of kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def set(self, name: str, delay: float, *args: str) -> None:
        check_set(name, args, self._handlers)
        due = time.time() + delay
        self._local.set(name, due, args)
        self._write("set", name, due, json.dumps(list(args)))

    def cancel(self, name: str) -> bool:
        self._local.live(time.time())
        existed = self._local.pop(name) is not None
        self._write("cancel", name, 0.0, "")
        return existed

    def cancel_group(self, group: str) -> int:
        names = self._local.group(group, time.time())
        for name in names:
            self.cancel(name)
        return len(names)

    def cancel_prefix(self, prefix: str) -> int:
        names = [n for n in self._live() if n.startswith(prefix)]
        for name in names:
            self.cancel(name)
        return len(names)

    def pending(self, name: str) -> tuple[float, tuple[str, ...]] | None:
        """When timer `name` fires (wall clock) and its arguments, if this node set it and it is still pending."""
        return self._live().get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._live()

    def __len__(self) -> int:
        return len(self._live())

    def _live(self) -> dict[str, tuple[float, tuple[str, ...]]]:
        """The local index without the timers that are due (fired or firing, here or on another node)."""
        return self._local.live(time.time())

    def close(self) -> None:
        """Stop firing timers on this node; the timers stay in Redis (another node fires them)."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._local.clear()

    # -- Redis side --------------------------------------------------------------------------------------------------
    def _started(self) -> asyncio.Queue[tuple[str, str, float, str]]:
        if self._writes is None:
            self._writes = asyncio.Queue()
            self._tasks.append(asyncio.ensure_future(self._writer(self._writes)))
            self._tasks.append(asyncio.ensure_future(self._poller()))
        return self._writes

    def start(self) -> None:
        """Start polling (fire due timers, whoever set them) before this node sets any timer itself."""
        self._started()

    def _write(self, op: str, name: str, due: float, args: str) -> None:
        if not self._closed:
            self._started().put_nowait((op, name, due, args))

    async def flush(self) -> None:
        """Until every set and cancel made so far is in Redis."""
        if self._writes is not None:
            await self._writes.join()

    async def _writer(self, writes: asyncio.Queue[tuple[str, str, float, str]]) -> None:
        while True:
            op, name, due, args = await writes.get()
            try:
                while True:
                    try:
                        async with self.redis.pipeline(transaction=True) as pipe:
                            if op == "set":
                                pipe.zadd(self._due_key, {name: due})
                                pipe.hset(self._args_key, name, args)
                            else:
                                pipe.zrem(self._due_key, name)
                                pipe.hdel(self._args_key, name)
                            await pipe.execute()
                        break
                    except (OSError, RedisConnectionError) as exc:  # Redis away a moment: keep the order, retry
                        log.warning("timers.write_retry", timer=name, error=str(exc))
                        await asyncio.sleep(0.2)
            finally:
                writes.task_done()

    async def _poller(self) -> None:
        while True:
            try:
                fired = await self._fire_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timers.poll_failed")
                fired = 0
            if not fired:
                await asyncio.sleep(self._poll_s)

    async def _fire_due(self) -> int:
        names = await self.redis.zrangebyscore(self._due_key, "-inf", time.time(), start=0, num=self._batch)
        fired = 0
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else raw
            claimed = await self._claim(keys=[self._due_key, self._args_key], args=[name])
            if claimed is None:
                continue  # another node claimed it (or it was cancelled meanwhile)
            handler = self._handlers.get(split_name(name)[1])
            self._local.pop(name)
            if handler is None:
                log.error("timers.no_handler", timer=name)
                continue
            try:
                args = json.loads(claimed)
            except ValueError:
                log.error("timers.bad_arguments", timer=name)
                continue
            fired += 1
            try:
                handler(*args)
            except Exception:
                log.exception("timers.handler_failed", timer=name)
            if self._after is not None:
                with contextlib.suppress(Exception):
                    self._after()
        return fired
