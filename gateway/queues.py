"""Queues: their configuration (gateway.config.QueueConfig), opening hours, priority rules and the directory of
queues that the admin API changes at run time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from .config import WEEKDAYS, QueueConfig, parse_span
from .errors import BadRequest, InvalidState, NotFound
from .models import CallerIdentity

DEFAULT_QUEUE = "default"


class ClosedReason(StrEnum):
    AFTER_HOURS = "after_hours"  # outside the opening hours, or a holiday
    NO_AGENTS = "no_agents"  # open, but no agent with the queue's skills is staffed
    MAX_WAIT = "max_wait"  # the caller has waited longer than the queue's max_wait_s


@dataclass(frozen=True, slots=True)
class Schedule:
    """Opening hours of one queue in its time zone."""

    zone: ZoneInfo
    spans: dict[int, list[tuple[int, int]]]  # weekday (0 = Monday) -> [(start minute, end minute)]
    holidays: frozenset[date]
    always_open: bool

    @classmethod
    def of(cls, config: QueueConfig) -> "Schedule":
        spans = {WEEKDAYS.index(day): [parse_span(s) for s in items] for day, items in config.hours.items()}
        return cls(ZoneInfo(config.timezone), spans, frozenset(config.holidays), not config.hours)

    def is_open(self, at: float) -> bool:
        local = datetime.fromtimestamp(at, self.zone)
        if local.date() in self.holidays:
            return False
        if self.always_open:
            return True
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.spans.get(local.weekday(), []))

    def next_opening(self, at: float, horizon_days: int = 14) -> float | None:
        """When the queue opens next (UNIX seconds), or None if it is open now or never opens within the horizon."""
        if self.is_open(at):
            return None
        local = datetime.fromtimestamp(at, self.zone)
        for offset in range(horizon_days + 1):
            day = (local + timedelta(days=offset)).date()
            if day in self.holidays:
                continue
            starts = [0] if self.always_open else sorted(s for s, _ in self.spans.get(day.weekday(), []))
            for start in starts:
                moment = datetime(day.year, day.month, day.day, start // 60, start % 60, tzinfo=self.zone)
                if moment.timestamp() > at:
                    return moment.timestamp()
        return None


@dataclass(frozen=True, slots=True)
class Queue:
    config: QueueConfig
    schedule: Schedule

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def skills(self) -> frozenset[str]:
        return frozenset(self.config.skills)

    def is_open(self, at: float) -> bool:
        return self.schedule.is_open(at)

    def priority_for(self, identity: CallerIdentity) -> int:
        """The token's own `priority` claim (an integer), raised by the first matching rule of the queue."""
        claimed = identity.claims.get("priority", 0)
        priority = claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else 0
        for rule in self.config.priority_rules:
            if rule.claim in identity.claims and identity.claims[rule.claim] == rule.equals \
                    and type(identity.claims[rule.claim]) is type(rule.equals):
                priority = max(priority, rule.priority)
        return max(-100, min(100, priority))


class QueueDirectory:
    """The queues by name. The queue "default" always exists (it can be changed, not removed)."""

    def __init__(self, configs: list[QueueConfig]) -> None:
        self._queues: dict[str, Queue] = {}
        for config in configs:
            self._queues[config.name] = Queue(config, Schedule.of(config))
        if DEFAULT_QUEUE not in self._queues:
            self.put(QueueConfig(name=DEFAULT_QUEUE, display_name="Default"))

    def get(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise NotFound(f"no queue {name!r}", code="unknown_queue")
        return queue

    def __contains__(self, name: object) -> bool:
        return name in self._queues

    def all(self) -> list[Queue]:
        return list(self._queues.values())

    def put(self, config: QueueConfig) -> Queue:
        queue = Queue(config, Schedule.of(config))
        self._queues[config.name] = queue
        return queue

    def remove(self, name: str, waiting: int) -> None:
        if name == DEFAULT_QUEUE:
            raise BadRequest("the default queue cannot be removed", code="default_queue")
        self.get(name)
        if waiting:
            raise InvalidState(f"{waiting} calls are waiting in the queue {name!r}", code="queue_not_empty")
        del self._queues[name]

    def for_caller(self, identity: CallerIdentity) -> Queue:
        """The queue named by the token's `queue` claim, else the default queue."""
        name = identity.claims.get("queue", DEFAULT_QUEUE)
        if not isinstance(name, str):
            raise BadRequest("the token's queue claim must be a string", code="unknown_queue")
        return self.get(name)
