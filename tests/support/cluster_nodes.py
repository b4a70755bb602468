"""Starting `callin serve` nodes of a cluster test (tests/integration/test_cluster_calls.py, test_cluster_line.py,
the browser test)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .process import GatewayProcess
from .waiting import until


def node(database_url: str, redis_url: str, tmp_path: Path, name: str, first: bool, **settings) -> GatewayProcess:
    """A node of the cluster (not started): the first one migrates the shared database, the others do not."""
    (tmp_path / name).mkdir()
    extra = {} if first else {"migrate_on_start": "false"}
    return GatewayProcess(database_url, tmp_path / name, node_name=name, redis_url=redis_url, **extra, **settings)


def spread_agents(count: int) -> str:
    """CALLIN_DEMO_AGENTS: agents ag0..ag<count-1> (password ag<i>-pass, skill general), an admin, a supervisor."""
    agents = [{"username": f"ag{i}", "password": f"ag{i}-pass", "display_name": f"Agent {i}", "skills": ["general"]}
              for i in range(count)]
    agents.append({"username": "admin", "password": "admin-demo", "display_name": "Admin", "role": "admin"})
    agents.append({"username": "sam", "password": "sam-demo", "display_name": "Sam (demo supervisor)",
                   "role": "supervisor", "skills": ["general"]})
    return json.dumps(agents)


async def start(gateway: GatewayProcess) -> None:
    """Start a node; on this loaded test machine a first start (migrations, demo accounts) may take over a minute."""
    try:
        await gateway.start()
    except AssertionError as exc:
        if "did not become healthy" not in str(exc):
            raise
        await gateway.wait_healthy(timeout=120)


async def record_state(database_url: str, call_id: str, state: str, timeout: float = 15) -> None:
    """Wait until the call's record in the shared database has `state` (records are written behind the call)."""
    engine = create_async_engine(database_url)
    try:
        async def durable() -> bool:
            async with engine.connect() as conn:
                row = (await conn.execute(text("SELECT state FROM calls WHERE id = :id"), {"id": call_id})).first()
            return row is not None and row[0] == state

        await until(durable, timeout)
    finally:
        await engine.dispose()
