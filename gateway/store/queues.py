"""Queue configurations changed through the admin API, kept in the database so they survive a restart.

At start-up they are laid over the settings file's queues (a stored queue replaces the configured one of the
same name). Deleting a stored queue that the settings file also defines brings the file's version back at the next
start; the default queue always exists.
"""

from __future__ import annotations

import structlog
from pydantic import ValidationError
from sqlalchemy import select

from .. import strictjson
from ..config import QueueConfig
from ..models import now
from .db import Database
from .models import QueueRow

log = structlog.get_logger("callin.queues")


class QueueStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[QueueConfig]:
        async with self.db.session() as session:
            rows = (await session.scalars(select(QueueRow).order_by(QueueRow.name))).all()
        configs = []
        for row in rows:
            data = strictjson.finite(row.config)  # Infinity stored by an older version: "no limit"
            if data != row.config:
                log.warning("queues.non_finite_numbers_dropped", queue=row.name)
            try:
                configs.append(QueueConfig.model_validate(data))
            except ValidationError as exc:
                log.warning("queues.stored_config_invalid", queue=row.name, error=str(exc).splitlines()[0])
        return configs

    async def save(self, config: QueueConfig, by: str | None) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(QueueRow, config.name)
            data = config.model_dump(mode="json")
            if row is None:
                session.add(QueueRow(name=config.name, config=data, updated_at=now(), updated_by=by))
            else:
                row.config = data
                row.updated_at = now()
                row.updated_by = by

    async def delete(self, name: str) -> None:
        async with self.db.session() as session, session.begin():
            row = await session.get(QueueRow, name)
            if row is not None:
                await session.delete(row)
