"""Webhooks: integrators' endpoints, signed deliveries retried with backoff, and a log of every attempt.

Signature header (documented in docs/api.md):

    Callin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

Delivery never blocks call handling: the engine's event handler only puts the event on a bounded queue; a
worker task sends it, each delivery in its own task, through a `sender` callable given by the server layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import select

from ..calls import Call
from ..errors import NotFound
from ..models import now
from .db import Database
from .models import WebhookDeliveryRow, WebhookRow
from .records import Outcome, call_columns

log = structlog.get_logger("callin.webhooks")

EVENTS = ("call.queued", "call.offered", "call.answered", "call.ended", "call.abandoned", "call.callback_ready")
SIGNATURE_HEADER = "Callin-Signature"

# (url, body, headers, timeout_s) -> HTTP status; raises on network errors
Sender = Callable[[str, bytes, dict[str, str], float], Awaitable[int]]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver does (the same code is in docs/api.md)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _public(row: WebhookRow) -> dict[str, Any]:
    return {"id": row.id, "url": row.url, "events": row.events, "created_at": row.created_at, "active": row.active}


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, url: str, events: list[str]) -> dict[str, Any]:
        """Returns the endpoint with its signing secret (shown only here)."""
        row = WebhookRow(id=secrets.token_hex(6), url=url, events=sorted(set(events)),
                         secret="whsec_" + secrets.token_urlsafe(32), created_at=now(), active=True)
        async with self.db.session() as session, session.begin():
            session.add(row)
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

    async def subscribers(self, event: str) -> list[tuple[str, str, str]]:
        async with self.db.session() as session:
            rows = (await session.scalars(select(WebhookRow).where(WebhookRow.active.is_(True)))).all()
        return [(r.id, r.url, r.secret) for r in rows if event in r.events]

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

    async def log_attempt(self, **values: Any) -> None:
        async with self.db.session() as session, session.begin():
            session.add(WebhookDeliveryRow(**values))


class WebhookDispatcher:
    MAX_CONCURRENT = 32

    def __init__(self, store: WebhookStore, sender: Sender, *, queue_size: int = 10_000, timeout_s: float = 5.0,
                 max_attempts: int = 5, retry_base_s: float = 2.0) -> None:
        self.store = store
        self.sender = sender
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.MAX_CONCURRENT)
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

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._deliveries] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._deliveries.clear()

    async def _run(self) -> None:
        while True:
            event, data = await self._queue.get()
            try:
                targets = await self.store.subscribers(event)
            except Exception:
                log.exception("webhooks.lookup_failed", hook_event=event)
                continue
            for webhook_id, url, secret in targets:
                body = json.dumps({"id": secrets.token_hex(8), "event": event, "created_at": now(), "data": data},
                                  separators=(",", ":"), default=str).encode()
                await self._slots.acquire()
                task = asyncio.ensure_future(self._deliver(webhook_id, url, secret, event, data.get("id"), body))
                self._deliveries.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._deliveries.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks.delivery_crashed", error=repr(task.exception()))

    async def _deliver(self, webhook_id: str, url: str, secret: str, event: str, call_id: str | None,
                       body: bytes) -> None:
        delivery_id = json.loads(body)["id"]
        for attempt in range(1, self.max_attempts + 1):
            timestamp = int(time.time())
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, timestamp, body),
                       "Callin-Event": event, "Callin-Delivery": delivery_id, "Callin-Attempt": str(attempt)}
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                status = await asyncio.wait_for(self.sender(url, body, headers, self.timeout_s), self.timeout_s + 1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            ok = status is not None and 200 <= status < 300
            duration = (time.monotonic() - started) * 1000
            with contextlib.suppress(Exception):
                await self.store.log_attempt(webhook_id=webhook_id, delivery_id=delivery_id, event=event,
                                             call_id=call_id, attempt=attempt, at=now(), status_code=status, ok=ok,
                                             error=error, duration_ms=duration)
            log.info("webhooks.attempt", webhook=webhook_id, hook_event=event, attempt=attempt, status=status, ok=ok)
            if ok:
                return
            if attempt < self.max_attempts:
                await asyncio.sleep(self.retry_base_s * 4 ** (attempt - 1))
        log.warning("webhooks.gave_up", webhook=webhook_id, hook_event=event, delivery=delivery_id)
