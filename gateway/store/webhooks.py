"""Webhooks: integrators' endpoints, signed deliveries retried with backoff, and a log of every attempt.

Signature header (documented in docs/api.md):

    Callin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Delivery never blocks call handling: the engine's event handler only puts the event on a bounded queue; a
worker task fans it out into per-destination queues; each attempt runs in its own task, through a `sender`
callable given by the server layer (signaling/outbound.py, which also refuses internal addresses at connect time).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select

from .. import strictjson
from ..calls import Call
from ..errors import NotFound
from ..models import now
from .db import Database
from .models import WebhookDeliveryRow, WebhookRow
from .records import Outcome, call_columns

log = structlog.get_logger("callin.webhooks")

EVENTS = ("call.queued", "call.offered", "call.answered", "call.ended", "call.abandoned", "call.callback_ready",
          "recording.ready", "transcript.ready")
SIGNATURE_HEADER = "Callin-Signature"

# (url, body, headers, timeout_s) -> HTTP status; raises DeliveryFailed (or a timeout) on network errors
Sender = Callable[[str, bytes, dict[str, str], float], Awaitable[int]]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does (the same code is in docs/api.md)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    stamp = parts.get("t", "")
    if not (stamp.isascii() and stamp.isdigit()):
        return False
    timestamp = int(stamp)
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    given = parts.get("v1", "")
    if not given.isascii():  # compare_digest raises on non-ASCII text: a forged header is just a mismatch
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())


def _public(row: WebhookRow) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "events": row.events, "created_at": row.created_at, "active": row.active}


SUBSCRIBERS_TTL_S = 5.0  # how soon a change made elsewhere (another node, `callin` on the command line) applies


class WebhookStore:
    def __init__(self, db: Database, subscribers_ttl_s: float = SUBSCRIBERS_TTL_S) -> None:
        self.db = db
        # Every call event asks who subscribes: read once per ttl (and after every change made here), not per event.
        self._ttl_s = subscribers_ttl_s
        self._active: list[tuple[str, str, str, list[str]]] | None = None
        self._read_at = 0.0

    async def create(self, url: str, events: list[str]) -> dict[str, Any]:
        """Returns the endpoint with its signing secret (shown only here)."""
        row = WebhookRow(id=secrets.token_hex(6), url=url, events=sorted(set(events)),
                         secret="whsec_" + secrets.token_urlsafe(32), created_at=now(), active=True)
        async with self.db.session() as session, session.begin():
            session.add(row)
        self._active = None
        return {**_public(row), "secret": row.secret}

    async def list(self) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            rows = (await session.scalars(select(WebhookRow).order_by(WebhookRow.created_at))).all()
        return [_public(r) for r in rows]

    async def delete(self, webhook_id: str) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(WebhookRow, webhook_id)
            if row is None:
                raise NotFound(f"no webhook {webhook_id}", code="unknown_webhook")
            await session.delete(row)
        self._active = None

    async def subscribers(self, event: str) -> list[tuple[str, str, str]]:
        if self._active is None or time.monotonic() - self._read_at > self._ttl_s:
            async with self.db.session() as session:
                rows = (await session.scalars(select(WebhookRow).where(WebhookRow.active.is_(True)))).all()
            self._active = [(r.id, r.url, r.secret, list(r.events)) for r in rows]
            self._read_at = time.monotonic()
        return [(id_, url, secret) for id_, url, secret, events in self._active if event in events]

    async def deliveries(self, webhook_id: str, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            if await session.get(WebhookRow, webhook_id) is None:
                raise NotFound(f"no webhook {webhook_id}", code="unknown_webhook")
            rows = (await session.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id)
                .order_by(WebhookDeliveryRow.id.desc()).limit(limit))).all()
        return [{"delivery_id": r.delivery_id, "event": r.event, "call_id": r.call_id, "attempt": r.attempt,
                 "at": r.at, "status_code": r.status_code, "ok": r.ok, "error": r.error, "duration_ms": r.duration_ms}
                for r in rows]

    async def exists(self, webhook_id: str) -> bool:
        async with self.db.session() as session:
            row = await session.get(WebhookRow, webhook_id)
        return row is not None and bool(row.active)

    async def log_attempt(self, **values: Any) -> None:
        async with self.db.session() as session, session.begin():
            session.add(WebhookDeliveryRow(**values))


class DeliveryFailed(Exception):
    """Raised by a sender for a failed request; `kind` is what the delivery log shows (no internal detail)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def destination(url: str) -> str:
    """The queue a delivery waits in: scheme://host:port (one slow receiver only delays its own deliveries)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port or (443 if parts.scheme == 'https' else 80)}"


@dataclass(slots=True)
class Delivery:
    webhook_id: str
    url: str
    secret: str
    event: str
    call_id: str | None
    body: bytes
    delivery_id: str
    attempt: int = 0  # attempts made so far


@dataclass(slots=True)
class _Lane:
    """One destination's waiting deliveries and how many of its attempts are in flight."""

    pending: deque[Delivery] = field(default_factory=deque)
    active: int = 0


class WebhookDispatcher:
    """Per-destination queues: each destination (scheme://host:port) has its own bounded queue and at most
    `per_destination_concurrency` attempts in flight, so a silent receiver delays only its own deliveries. An
    attempt holds its slot for at most `timeout_s`; a failed attempt gives the slot back and waits for its retry
    on a timer. Deleting a webhook drops its queued deliveries and retries and cancels its attempts in flight."""

    def __init__(self, store: WebhookStore, sender: Sender, *, queue_size: int = 10_000, timeout_s: float = 5.0,
                 max_attempts: int = 5, retry_base_s: float = 2.0, per_destination_concurrency: int = 4,
                 per_destination_queue: int = 1000) -> None:
        self.store = store
        self.sender = sender
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.concurrency = per_destination_concurrency
        self.lane_size = per_destination_queue
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._lanes: dict[str, _Lane] = {}
        self._inflight: dict[asyncio.Task[None], Delivery] = {}
        self._retries: dict[int, tuple[asyncio.TimerHandle, Delivery]] = {}
        self._stopped = False
        self.dropped = 0

    def attach(self, board: Any) -> None:
        board.on("call.queued", lambda call: self.publish("call.queued", call))
        board.on("call.offered", lambda call, agent: self.publish("call.offered", call, agent=agent))
        board.on("call.answered", lambda call: self.publish("call.answered", call))
        board.on("call.callback_ready", lambda call: self.publish("call.callback_ready", call,
                                                                  subject=call.identity.subject))

        def ended(call: Call) -> None:
            self.publish("call.ended", call)
            if call_columns(call)["outcome"] == Outcome.ABANDONED.value:
                self.publish("call.abandoned", call)

        board.on("call.ended", ended)

    def publish(self, event: str, call: Call, **extra: Any) -> None:
        data = call_columns(call)
        data.pop("node", None)
        data.update(extra)
        self.publish_record(event, data)

    def publish_record(self, event: str, data: dict[str, Any]) -> None:
        """An event about a call known by its record only (a call a crashed node left open, closed as interrupted)."""
        call = data.get("id")
        try:
            self._queue.put_nowait((event, data))
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("webhooks.queue_full", hook_event=event, call_id=call, dropped=self.dropped)

    # -- what the metrics read
    def backlog(self) -> int:
        """Deliveries not finished: events not yet fanned out, queued, waiting for a retry, or in flight."""
        return (self._queue.qsize() + sum(len(lane.pending) for lane in self._lanes.values())
                + len(self._retries) + len(self._inflight))

    def start(self) -> None:
        self._stopped = False
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopped = True
        for handle, _ in self._retries.values():
            handle.cancel()
        self._retries.clear()
        self._lanes.clear()
        tasks = [t for t in [self._task, *self._inflight] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._inflight.clear()

    def cancel_webhook(self, webhook_id: str) -> int:
        """The webhook was deleted: drop its queued deliveries and retries, cancel its attempts in flight."""
        cancelled = 0
        for lane in self._lanes.values():
            keep = deque(d for d in lane.pending if d.webhook_id != webhook_id)
            cancelled += len(lane.pending) - len(keep)
            lane.pending = keep
        for key, (handle, delivery) in list(self._retries.items()):
            if delivery.webhook_id == webhook_id:
                handle.cancel()
                del self._retries[key]
                cancelled += 1
        for task, delivery in list(self._inflight.items()):
            if delivery.webhook_id == webhook_id:
                task.cancel()
                cancelled += 1
        if cancelled:
            log.info("webhooks.cancelled", webhook=webhook_id, deliveries=cancelled)
        return cancelled

    async def _run(self) -> None:
        while True:
            event, data = await self._queue.get()
            try:
                targets = await self.store.subscribers(event)
            except Exception:
                log.exception("webhooks.lookup_failed", hook_event=event)
                continue
            for webhook_id, url, secret in targets:
                delivery_id = secrets.token_hex(8)
                body = strictjson.dumps({"id": delivery_id, "event": event, "created_at": now(), "data": data},
                                  separators=(",", ":"), default=str).encode()
                self._enqueue(Delivery(webhook_id, url, secret, event, data.get("id"), body, delivery_id))

    def _enqueue(self, delivery: Delivery) -> None:
        if self._stopped:
            return
        key = destination(delivery.url)
        lane = self._lanes.setdefault(key, _Lane())
        if len(lane.pending) >= self.lane_size:
            self.dropped += 1
            log.error("webhooks.destination_queue_full", destination=key, webhook=delivery.webhook_id,
                      hook_event=delivery.event, dropped=self.dropped)
            return
        lane.pending.append(delivery)
        self._pump(key)

    def _pump(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            return
        while lane.active < self.concurrency and lane.pending and not self._stopped:
            delivery = lane.pending.popleft()
            lane.active += 1
            task = asyncio.ensure_future(self._attempt(delivery))
            self._inflight[task] = delivery
            task.add_done_callback(lambda t, key=key: self._attempt_done(t, key))
        if lane.active == 0 and not lane.pending:
            del self._lanes[key]

    def _attempt_done(self, task: asyncio.Task[None], key: str) -> None:
        self._inflight.pop(task, None)
        lane = self._lanes.get(key)
        if lane is not None:
            lane.active -= 1
            self._pump(key)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks.delivery_crashed", error=repr(task.exception()))

    def _retry_later(self, delivery: Delivery) -> None:
        delay = self.retry_base_s * 4 ** (delivery.attempt - 1)
        key = id(delivery)

        def due() -> None:
            self._retries.pop(key, None)
            self._enqueue(delivery)

        self._retries[key] = (asyncio.get_running_loop().call_later(delay, due), delivery)

    async def _attempt(self, delivery: Delivery) -> None:
        """One attempt; a failure schedules the next one (the slot is given back meanwhile)."""
        if delivery.attempt > 0 and not await self.store.exists(delivery.webhook_id):
            return  # deleted meanwhile (possibly through another node)
        delivery.attempt += 1
        attempt = delivery.attempt
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
                   "Callin-Event": delivery.event, "Callin-Delivery": delivery.delivery_id,
                   "Callin-Attempt": str(attempt)}
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status = await asyncio.wait_for(self.sender(delivery.url, delivery.body, headers, self.timeout_s),
                                            self.timeout_s + 1)
        except asyncio.CancelledError:
            raise
        except DeliveryFailed as exc:
            error = exc.kind
            log.info("webhooks.attempt_failed", webhook=delivery.webhook_id, kind=exc.kind, detail=exc.detail)
        except (asyncio.TimeoutError, TimeoutError):
            error = "timeout"
        except Exception as exc:
            error = "request_failed"
            log.info("webhooks.attempt_failed", webhook=delivery.webhook_id, detail=repr(exc)[:500])
        ok = status is not None and 200 <= status < 300
        duration = (time.monotonic() - started) * 1000
        with contextlib.suppress(Exception):
            await self.store.log_attempt(webhook_id=delivery.webhook_id, delivery_id=delivery.delivery_id,
                                         event=delivery.event, call_id=delivery.call_id, attempt=attempt, at=now(),
                                         status_code=status, ok=ok, error=error, duration_ms=duration)
        log.info("webhooks.attempt", webhook=delivery.webhook_id, hook_event=delivery.event, attempt=attempt,
                 status=status, ok=ok)
        if ok:
            return
        if attempt < self.max_attempts:
            self._retry_later(delivery)
        else:
            log.warning("webhooks.gave_up", webhook=delivery.webhook_id, hook_event=delivery.event,
                        delivery=delivery.delivery_id)
