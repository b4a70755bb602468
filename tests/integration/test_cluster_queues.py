"""Two nodes on one database and one Redis (CALLIN_REDIS_URL): a queue created, changed or removed through the
admin API of one node is applied by the other within a moment, not at its next restart (issue 10, item 7). Real
`callin serve` processes, a real redis-server, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.support.api import Api
from tests.support.process import GatewayProcess


async def admin(base: str) -> Api:
    api = Api(base)
    status, body = await api.login("admin", "admin-demo")
    assert status == 200, body
    return api


async def until_queue(api: Api, name: str, check, timeout: float = 20) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await api.get(f"/api/v1/queues/{name}")
        if check(status, body):
            return body
        assert time.monotonic() < deadline, (status, body)
        await asyncio.sleep(0.2)


async def test_a_queue_changed_on_one_node_is_applied_by_the_other(database_url, redis_url, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = GatewayProcess(database_url, tmp_path / "a", node_name="node-a", redis_url=redis_url)
    b = GatewayProcess(database_url, tmp_path / "b", node_name="node-b", redis_url=redis_url, migrate_on_start="false")
    try:
        await a.start()
        await b.start()
        api_a, api_b = await admin(a.base_url), await admin(b.base_url)
        status, created = await api_a.post("/api/v1/queues", {"name": "vip", "display_name": "VIP line",
                                                              "skills": ["gold"]})
        assert status == 201, created
        seen = await until_queue(api_b, "vip", lambda s, body: s == 200)
        assert seen["config"]["display_name"] == "VIP line" and seen["config"]["skills"] == ["gold"]
        status, changed = await api_b.request("PUT", "/api/v1/queues/vip", json={"display_name": "VIP (gold)", "skills": ["gold"]})
        assert status == 200, changed
        await until_queue(api_a, "vip", lambda s, body: s == 200 and body["config"]["display_name"] == "VIP (gold)")
        status, _ = await api_a.request("DELETE", "/api/v1/queues/vip")
        assert status == 200
        await until_queue(api_b, "vip", lambda s, body: s == 404)
        await api_a.close()
        await api_b.close()
    finally:
        a.close()
        b.close()
