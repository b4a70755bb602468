"""Hostile input on a real running gateway: NaN/Infinity, deep nesting and unpaired surrogates get typed errors on
both sockets and on REST, the socket stays usable, and nothing non-finite reaches a record or a response."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import WsClient

DEEP = "[" * 10_000 + "]" * 10_000


async def _error_then_still_alive(ws: WsClient, raw: str, code: str) -> dict:
    start = len(ws.messages)
    await ws.send(raw)
    error = await ws.wait(lambda m: m["type"] == "error", since=start)
    assert error["code"] == code, (raw[:80], error)
    assert error["reason"]
    pong = await ws.request({"type": "ping"})
    assert pong["type"] == "pong"  # the socket survived
    return error


async def test_deep_json_and_lone_surrogates_get_errors_on_both_sockets(gateway, caller_token):
    caller, call_id = await caller_socket(gateway.base_url, caller_token(sub="deep"))
    agent = await agent_socket(gateway.base_url, available=False)
    for ws in (caller, agent):
        await _error_then_still_alive(ws, DEEP, "bad_json")
        await _error_then_still_alive(ws, '{"type": "ping", "id": "\\ud800"}', "invalid_message")
        await _error_then_still_alive(ws, '{"type": "ping", "id": "' + "\\ud800" * 60 + '"}', "invalid_message")
        error = await _error_then_still_alive(ws, '{"type": "chat.send", "id": "s1", "text": "a\\udc00b"}',
                                              "invalid_message")
        assert error["id"] == "s1"
        assert ws.close_code is None
    assert gateway.board.calls[call_id].state.value == "queued"
    await caller.close()
    await agent.close()


async def test_deep_or_surrogate_hello_is_refused_with_an_error(gateway):
    for raw, code in ((DEEP, "bad_json"), ('{"type": "hello", "id": "\\ud800", "token": "x"}', "invalid_message")):
        ws = WsClient(gateway.base_url, "/ws/caller")
        await ws.connect()
        await ws.send(raw)
        error = await ws.wait("error")
        assert error["code"] == code and error["id"] is None
        await ws.close()
        assert ws.close_code == 4400
    assert len(gateway.board.sessions) == 0


@pytest.mark.parametrize("location, crm", [
    ('{"lat": 1, "lon": 2, "accuracy_m": 5, "timestamp": NaN}', '{}'),
    ('{"lat": 1, "lon": 2, "accuracy_m": 5, "timestamp": 1e999}', '{}'),
    ('null', '{"balance": Infinity}'),
    ('null', '{"balance": -Infinity}'),
])
async def test_non_finite_numbers_from_a_caller_are_refused(gateway, caller_token, location, crm):
    ws = WsClient(gateway.base_url, "/ws/caller")
    await ws.connect()
    assert (await ws.request({"type": "hello", "token": caller_token(sub="nan")}))["type"] == "welcome"
    raw = ('{"type": "call.start", "id": "n1", "call_type": "voice", "location": %s, "context": {"crm": %s}}'
           % (location, crm))
    error = await _error_then_still_alive(ws, raw, "bad_json")
    assert error["id"] == "n1" and "JSON" in error["reason"]
    assert not gateway.board.calls  # nothing was queued
    await ws.close()


async def test_rest_refuses_non_finite_numbers_in_queries_and_bodies(gateway):
    admin = Api(gateway.base_url)
    await admin.login("admin", "admin-demo")
    for value in ("nan", "NaN", "inf", "-Infinity"):
        status, body = await admin.get("/api/v1/stats", params={"since": value})
        assert status == 422 and body["code"] == "invalid_query" and body["reason"].startswith("since:"), body
        status, body = await admin.get("/api/v1/calls", params={"until": value})
        assert status == 422 and body["code"] == "invalid_query", body
    headers = {"Authorization": f"Bearer {admin.bearer}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        for raw in ('{"name": "evil", "max_wait_s": Infinity}', '{"name": "evil", "max_wait_s": NaN}',
                    '{"name": "evil", "max_wait_s": 1e999}', '{"name": "evil", "display_name": "\\ud800"}',
                    '{"name": "evil", "skills": ' + DEEP + '}'):
            async with http.post(gateway.base_url + "/api/v1/queues", data=raw, headers=headers) as r:
                body = json.loads(await r.text())  # strict: the error itself is valid JSON
                assert r.status == 422 and body["code"] == "invalid_body", (raw[:60], body)
    assert "evil" not in gateway.board.queues
    status, body = await admin.get("/api/v1/queues")
    assert status == 200 and all(q["name"] != "evil" for q in body["queues"])
    await admin.close()


def _strict(text: str):
    def refuse(name: str):
        raise AssertionError(f"{name} in a response")
    return json.loads(text, parse_constant=refuse)


async def test_a_record_stored_with_nan_before_the_fix_is_still_valid_json(gateway, caller_token):
    from gateway.store.models import CallRow
    from signaling.keys import DATABASE

    ws, call_id = await caller_socket(gateway.base_url, caller_token(sub="legacy"))
    await ws.request({"type": "call.hangup"})
    admin = Api(gateway.base_url)
    await admin.login("admin", "admin-demo")
    await admin.ended_record(call_id)
    async with gateway.app[DATABASE].session() as session, session.begin():  # as an older version stored it
        row = await session.get(CallRow, call_id)
        row.location = {"lat": 1.0, "lon": 2.0, "accuracy_m": 3.0, "timestamp": float("nan"), "source": "device"}
        row.context = {"screen": None, "steps": [], "crm": {"balance": float("inf")}}
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {admin.bearer}"}
        for path in (f"/api/v1/calls/{call_id}", "/api/v1/calls"):
            async with http.get(gateway.base_url + path, headers=headers) as r:
                assert r.status == 200
                body = _strict(await r.text())
        async with http.get(gateway.base_url + f"/api/v1/calls/{call_id}", headers=headers) as r:
            record = _strict(await r.text())
    assert record["location"]["timestamp"] is None and record["context"]["crm"]["balance"] is None
    assert any(c["id"] == call_id for c in body["calls"])
    await admin.close()
    await ws.close()


async def test_a_caller_token_with_non_finite_or_surrogate_claims_is_refused(gateway):
    import time as _time

    import jwt

    from tests.support.server import TEST_SECRET

    base = {"sub": "signed", "aud": "callin", "exp": int(_time.time()) + 600}
    for extra in ({"score": float("nan")}, {"score": float("inf")}, {"name": "\ud800"}):
        token = jwt.encode(base | extra, TEST_SECRET, algorithm="HS256")
        ws, reply = WsClient(gateway.base_url, "/ws/caller"), None
        await ws.connect()
        reply = await ws.request({"type": "hello", "token": token})
        assert reply["code"] == "invalid_token" and "claims" in reply["reason"], (extra, reply)
        await ws.close()
    assert len(gateway.board.sessions) == 0


async def test_a_queue_stored_with_infinity_before_the_fix_still_loads(tmp_path):
    from gateway.store.db import Database
    from gateway.store.models import QueueRow
    from gateway.store.queues import QueueStore

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}")
    await db.upgrade()
    async with db.session() as session, session.begin():
        session.add(QueueRow(name="legacy", config={"name": "legacy", "max_wait_s": float("inf")}, updated_at=1.0,
                             updated_by="admin"))
        session.add(QueueRow(name="broken", config={"name": "broken", "timezone": "Nowhere/Void"}, updated_at=1.0,
                             updated_by="admin"))
    configs = await QueueStore(db).list()
    await db.close()
    assert [(c.name, c.max_wait_s) for c in configs] == [("legacy", None)]  # the invalid one is left out, logged
