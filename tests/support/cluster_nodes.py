"""Starting `callin serve` nodes of a cluster test (tests/integration/test_cluster_*.py, the browser test):
`cluster()` starts nodes with the given settings and, at the end, closes what the test opened on them and the nodes;
`accept()` is an agent's console taking the call offered to it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from .process import GatewayProcess
from .waiting import until

T = TypeVar("T")


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


class Cluster:
    """The started nodes of a cluster test (node-a, node-b, ... in `nodes`), and what the test opened on them."""

    def __init__(self, nodes: list[GatewayProcess], stack: AsyncExitStack) -> None:
        self.nodes = nodes
        self._stack = stack

    def closes(self, thing: T) -> T:
        """`thing` (a socket, a client, an Api, a balancer: anything with an async close()) is closed at the end of
        the test, before the nodes; the last given first (see at_end). Returns it."""
        self.at_end(thing.close)  # type: ignore[attr-defined]
        return thing

    def at_end(self, step: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """`await step(*args)` at the end of the test, before the nodes are closed, in the reverse order of the steps
        and things to close given (each runs even when one before it failed)."""
        self._stack.push_async_callback(step, *args)


@asynccontextmanager
async def cluster(database_url: str, redis_url: str, tmp_path: Path, names: Sequence[str] = "ab", *,
                  redis_urls: dict[str, str] | None = None, **settings: Any) -> AsyncIterator[Cluster]:
    """Nodes node-<name> for each of `names` with the same settings (the first migrates the shared database; a node
    may have its own redis URL in `redis_urls`), started in turn. At the end, whether the test passed or not, what it
    gave to `Cluster.closes` is closed, then every node."""
    nodes = [node(database_url, (redis_urls or {}).get(name, redis_url), tmp_path, f"node-{name}", i == 0,
                  **settings) for i, name in enumerate(names)]
    try:
        async with AsyncExitStack() as stack:
            for gateway in nodes:
                await start(gateway)
            yield Cluster(nodes, stack)
    finally:
        for gateway in nodes:
            gateway.close()


async def accept(console: Any, caller: Any, call_id: str, timeout: float = 10) -> dict:
    """An agent's console (its socket) accepts the call offered to it, and the caller's socket is told the call was
    answered (that message is returned)."""
    accepted = await console.request({"type": "call.accept", "call_id": call_id})
    assert accepted["type"] == "call.accepted", accepted
    return await caller.wait("call.answered", timeout=timeout)
