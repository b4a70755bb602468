"""The bus between nodes, on Redis (issue 10, item 2): pub/sub for what may be lost, streams with consumer groups
for what may not.

- `publish` / `subscribe`: Redis pub/sub. A message reaches the nodes subscribed at that moment, at most once; a node
  that is down or reconnecting misses it. For signaling relayed to the node that holds a socket (it resends or the
  client resumes), presence changes, wallboard ticks.
- `append` / `consume`: a Redis stream read by a consumer group. Each message goes to one consumer of the group and
  stays pending until that consumer acknowledges it after its handler returned; a consumer that dies (kill -9,
  a lost machine) leaves its messages pending, and another consumer of the group claims them once they have been
  idle `claim_idle_s`. Delivery is at least once: a handler must be idempotent (records are upserts; webhooks carry
  an id the receiver dedupes). For call records and webhook deliveries that a node hands to the cluster.

Messages are JSON objects, at most `max_bytes` each (refused on the way in with a ValueError that says so); what a
consumer gets is parsed back, and a message that is not a JSON object is acknowledged and dropped with a log line
(never a crash loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

log = structlog.get_logger("callin.bus")

MAX_BYTES = 64 * 1024
Handler = Callable[[dict[str, Any]], Awaitable[None]]


def _encode(message: dict[str, Any], max_bytes: int) -> str:
    if not isinstance(message, dict):
        raise ValueError("a bus message is a JSON object")
    text = json.dumps(message, separators=(",", ":"))
    if len(text.encode()) > max_bytes:
        raise ValueError(f"bus message of {len(text.encode())} bytes is larger than the limit of {max_bytes}")
    return text


def _decode(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


class RedisBus:
    def __init__(self, redis: Redis, node: str, prefix: str = "callin:", max_bytes: int = MAX_BYTES) -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self.max_bytes = max_bytes
        self._tasks: set[asyncio.Task[None]] = set()

    # -- at most once ---------------------------------------------------------------------------------------------
    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send to the nodes subscribed now; returns how many received it."""
        return int(await self.redis.publish(self.prefix + channel, _encode(message, self.max_bytes)))

    async def subscribe(self, channel: str, handler: Handler) -> asyncio.Event:
        """Call `handler` for each message published on `channel` from now on; returns an event set once the
        subscription is in place (messages published before it are not seen)."""
        ready = asyncio.Event()

        async def run() -> None:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.prefix + channel)
                ready.set()
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    message = _decode(item.get("data"))
                    if message is None:
                        log.warning("bus.bad_message", channel=channel)
                        continue
                    await self._handle(handler, message, channel)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

        self._spawn(run())
        await ready.wait()
        return ready

    # -- at least once ------------------------------------------------------------------------------------------------
    async def append(self, stream: str, message: dict[str, Any], maxlen: int = 1_000_000) -> str:
        """Add to the stream (capped at about `maxlen` entries); returns the entry id."""
        entry = await self.redis.xadd(self.prefix + stream, {"m": _encode(message, self.max_bytes)},
                                      maxlen=maxlen, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def consume(self, stream: str, group: str, handler: Handler, *, consumer: str | None = None,
                      block_s: float = 1.0, claim_idle_s: float = 30.0, batch: int = 100) -> None:
        """Handle the stream's messages as one consumer of `group` (created at the stream's start if new): first
        what other consumers left pending for longer than `claim_idle_s` (they died), then new messages. A message
        is acknowledged once its handler returned; a handler that raises leaves it pending (tried again later)."""
        key, name = self.prefix + stream, consumer or self.node
        with contextlib.suppress(ResponseError):  # BUSYGROUP: the group exists already
            await self.redis.xgroup_create(key, group, id="0", mkstream=True)

        async def run() -> None:
            cursor = "0-0"
            while True:
                # What a dead consumer left behind, idle long enough.
                reply = await self.redis.xautoclaim(key, group, name, min_idle_time=int(claim_idle_s * 1000),
                                                    start_id=cursor, count=batch)
                cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
                for entry_id, fields in reply[1]:
                    await self._deliver(key, group, handler, entry_id, fields, stream)
                # New messages for this consumer.
                got = await self.redis.xreadgroup(group, name, {key: ">"}, count=batch,
                                                  block=int(block_s * 1000))
                for _stream, entries in got or ():
                    for entry_id, fields in entries:
                        await self._deliver(key, group, handler, entry_id, fields, stream)

        self._spawn(run())

    async def _deliver(self, key: str, group: str, handler: Handler, entry_id: Any, fields: Any, stream: str) -> None:
        if fields is None:  # trimmed away while pending
            await self.redis.xack(key, group, entry_id)
            return
        message = _decode(fields.get(b"m", fields.get("m")))
        if message is None:
            log.warning("bus.bad_message", stream=stream, entry=str(entry_id))
            await self.redis.xack(key, group, entry_id)
            return
        if await self._handle(handler, message, stream):
            await self.redis.xack(key, group, entry_id)

    @staticmethod
    async def _handle(handler: Handler, message: dict[str, Any], where: str) -> bool:
        try:
            await handler(message)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("bus.handler_failed", where=where)
            return False

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
