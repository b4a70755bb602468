"""Starting `callin serve` nodes of a cluster test (tests/integration/test_cluster_calls.py, the browser test)."""

from __future__ import annotations

from .process import GatewayProcess


async def start(gateway: GatewayProcess) -> None:
    """Start a node; on this loaded test machine a first start (migrations, demo accounts) may take over a minute."""
    try:
        await gateway.start()
    except AssertionError as exc:
        if "did not become healthy" not in str(exc):
            raise
        await gateway.wait_healthy(timeout=120)
