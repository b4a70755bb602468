"""Accounts, sessions, API keys and roles: who may see and change what, and clear refusals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.store.signins import SignInStore
from signaling.keys import DATABASE
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import WsClient
from tests.support.server import running_gateway

ROOT = Path(__file__).resolve().parents[2]
AGENT_SECRET = "agent-secret-0123456789-abcdefghij"


async def _answered_call(base: str, token: str, username: str = "alice", password: str = "alice-demo") -> str:
    agent = await agent_socket(base, username, password)
    caller, call_id = await caller_socket(base, token)
    await agent.wait("call.offered")
    await agent.request({"type": "call.accept", "call_id": call_id})
    await caller.request({"type": "call.hangup"})
    await caller.close()
    await agent.close()
    return call_id


async def test_roles_wrap_up_and_api_keys(database_url, caller_token):
    async with running_gateway(database_url=database_url) as gw:
        base = gw.base_url
        admin, alice, bob = Api(base), Api(base), Api(base)
        await admin.login("admin", "admin-demo")
        await alice.login("alice", "alice-demo")
        await bob.login("bob", "bob-demo")
        call_id = await _answered_call(base, caller_token(sub="cust-7"))
        await admin.ended_record(call_id)

        # wrap-up: only the agent who took the call
        status, body = await bob.post(f"/api/v1/calls/{call_id}/wrap-up", {"disposition": "resolved"})
        assert status == 403 and body["code"] == "not_your_call"
        assert body["reason"] == "only the agent who took the call can wrap it up"
        status, body = await alice.post(f"/api/v1/calls/{call_id}/wrap-up", {"disposition": "card-unblocked",
                                                                              "notes": "customer verified by phone"})
        assert status == 200, body
        assert body["disposition"] == "card-unblocked" and body["notes"] == "customer verified by phone"
        assert body["wrapped_up_by"] == "alice" and body["events"][-1]["kind"] == "wrap_up"
        status, body = await alice.post(f"/api/v1/calls/{call_id}/wrap-up", {"disposition": "bad code!"})
        assert status == 422 and body["code"] == "invalid_body"
        status, body = await alice.post(f"/api/v1/calls/{call_id}/wrap-up", {"notes": "x" * 20_000})
        assert status == 422 and body["code"] == "invalid_body"

        # agents see their own calls only; staff see everything
        status, page = await alice.get("/api/v1/calls")
        assert [c["id"] for c in page["calls"]] == [call_id]
        status, page = await bob.get("/api/v1/calls")
        assert page["calls"] == []
        status, body = await bob.get(f"/api/v1/calls/{call_id}")
        assert status == 404 and body["code"] == "unknown_call"
        status, body = await bob.get("/api/v1/calls", params={"agent": "alice"})
        assert status == 403 and body["code"] == "forbidden"
        status, body = await bob.get("/api/v1/agents")
        assert status == 403 and body["code"] == "forbidden"

        # admin: users and API keys; agents cannot
        status, body = await bob.post("/api/v1/users", {"username": "eve", "password": "eve-password-1"})
        assert status == 403 and body["code"] == "forbidden"
        status, body = await admin.post("/api/v1/users", {"username": "carol", "password": "carol-password-1",
                                                          "role": "supervisor", "display_name": "Carol"})
        assert status == 201 and body["role"] == "supervisor"
        status, body = await admin.post("/api/v1/users", {"username": "carol", "password": "carol-password-1"})
        assert status == 409 and body["code"] == "user_exists"
        status, body = await admin.post("/api/v1/users", {"username": "dave", "password": "short"})
        assert status == 422 and body["code"] == "invalid_body"
        carol = Api(base)
        status, body = await carol.login("carol", "carol-password-1")
        assert status == 200 and body["agent"]["role"] == "supervisor"
        status, body = await carol.get("/api/v1/agents")
        assert status == 200 and {a["username"] for a in body["agents"]} >= {"alice", "bob", "carol"}

        status, body = await admin.post("/api/v1/api-keys", {"name": "crm"})
        assert status == 201 and body["key"].startswith("ck_")
        key, key_id = body["key"], body["id"]
        status, body = await admin.get("/api/v1/api-keys")
        assert [k["id"] for k in body["api_keys"]] == [key_id] and "key" not in body["api_keys"][0]
        integrator = Api(base, bearer=key)
        status, page = await integrator.get("/api/v1/calls")
        assert status == 200 and [c["id"] for c in page["calls"]] == [call_id]
        status, body = await integrator.get(f"/api/v1/calls/{call_id}")
        assert status == 200 and body["disposition"] == "card-unblocked"
        status, body = await integrator.get("/api/v1/queues")
        queue = body["queues"][0]
        assert status == 200 and {k: queue[k] for k in ("name", "length", "longest_wait_s")} == {
            "name": "default", "length": 0, "longest_wait_s": None}
        # an API key cannot wrap up, manage keys, or sign in to the console
        status, body = await integrator.post(f"/api/v1/calls/{call_id}/wrap-up", {"notes": "x"})
        assert status == 403 and body["code"] == "forbidden"
        status, body = await integrator.post("/api/v1/api-keys", {"name": "more"})
        assert status == 403
        status, body = await Api(base).login(key_id, key)
        assert status == 401 and body["code"] == "bad_credentials"
        ws = WsClient(base, "/ws/agent")
        await ws.connect()
        refused = await ws.request({"type": "hello", "token": key})
        assert refused["type"] == "error" and refused["code"] == "invalid_token"
        await ws.close()

        # revoked keys are refused; unknown keys too
        status, body = await admin.request("DELETE", f"/api/v1/api-keys/{key_id}")
        assert status == 200 and body["revoked"] is True
        status, body = await integrator.get("/api/v1/calls")
        assert status == 401 and body == {"code": "api_key_revoked", "reason": "this API key was revoked"}
        status, body = await Api(base, bearer=key[:-3] + "xyz").get("/api/v1/calls")
        assert status == 401 and body["code"] == "invalid_api_key"
        status, body = await Api(base).get("/api/v1/calls")
        assert status == 401 and body["code"] == "not_authenticated"
        for client in (admin, alice, bob, carol, integrator):
            await client.close()


async def test_sign_in_cookie_expiry_and_origin(tmp_path):
    async with running_gateway(agent_secret=AGENT_SECRET, allowed_origins=["https://console.example.com"]) as gw:
        base = gw.base_url
        api = Api(base)
        status, body = await api.login("alice", "wrong-password")
        assert status == 401 and body == {"code": "bad_credentials", "reason": "wrong username or password"}
        status, body = await api.login("mallory", "alice-demo")
        assert status == 401 and body["code"] == "bad_credentials"

        # sign-in sets an HttpOnly, SameSite session cookie; the hello may then omit the token
        async with api.http.post(base + "/api/v1/agent/login", json={"username": "alice", "password": "alice-demo"}) as r:
            assert r.status == 200
            cookie = r.cookies["callin_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
            token = (await r.json())["token"]
            assert cookie.value == token
        ws = await api.http.ws_connect(base.replace("http", "ws") + "/ws/agent",
                                       headers={"Origin": base})
        await ws.send_json({"type": "hello", "id": "1"})
        welcome = await ws.receive_json()
        assert welcome["type"] == "welcome" and welcome["agent"]["username"] == "alice"
        await ws.close()
        status, me = await api.get("/api/v1/calls", auth=False)  # the cookie alone signs REST requests in
        assert status == 200

        # a foreign Origin is refused before the upgrade (cross-site WebSocket hijacking)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await api.http.ws_connect(base.replace("http", "ws") + "/ws/agent", headers={"Origin": "https://evil.example"})
        assert info.value.status == 403
        async with api.http.get(base + "/ws/agent", headers={"Origin": "https://evil.example", "Connection": "Upgrade",
                                                             "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 403 and (await r.json())["code"] == "origin_not_allowed"
        ws = await api.http.ws_connect(base.replace("http", "ws") + "/ws/agent",
                                       headers={"Origin": "https://console.example.com"})
        await ws.close()
        # cookie-authenticated writes from a foreign origin are refused too (CSRF)
        status, body = await api.post("/api/v1/calls/x/wrap-up", {"notes": "n"}, auth=False,
                                      headers={"Origin": "https://evil.example"})
        assert status == 403 and body["code"] == "origin_not_allowed"

        # an expired session is refused with a clear error, on REST and on the WebSocket
        past = SignInStore(gw.app[DATABASE], ttl_s=60, max_s=3600, clock=lambda: time.time() - 7200)
        _, expired = await past.open("alice")  # a session whose last refresh was two hours ago
        status, body = await Api(base, bearer=expired).get("/api/v1/calls")
        assert status == 401 and body == {"code": "token_expired", "reason": "the agent session has expired; sign in again"}
        ws = WsClient(base, "/ws/agent")
        await ws.connect()
        refused = await ws.request({"type": "hello", "token": expired})
        assert refused["code"] == "token_expired"
        await ws.close()
        stale = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        stale.cookie_jar.update_cookies({"callin_session": expired}, aiohttp.helpers.URL(base))  # type: ignore[attr-defined]
        ws = await stale.ws_connect(base.replace("http", "ws") + "/ws/agent")
        await ws.send_json({"type": "hello", "id": "1"})
        assert (await ws.receive_json())["code"] == "token_expired"
        await ws.close()
        await stale.close()

        # sign-out clears the cookie
        status, body = await api.post("/api/v1/agent/logout", auth=False)
        assert status == 200
        status, body = await api.get("/api/v1/calls", auth=False)
        assert status == 401 and body["code"] == "not_authenticated"
        await api.close()


async def test_no_default_accounts_outside_demo_and_cli_user_add(tmp_path):
    env = dict(os.environ, CALLIN_DATA_DIR=str(tmp_path), CALLIN_PASSWORD_HASH_TIME_COST="1",
               CALLIN_PASSWORD_HASH_MEMORY_KIB="8192")
    env.pop("CALLIN_DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "user", "add", "root", "--role", "admin",
                          "--display-name", "Root", "--password-stdin"], input="root-password-1\n", cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "created admin root" in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "db", "current"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and re.search(r"revision (\w+) \(code head \1\)", out.stdout), out.stdout
    async with running_gateway(demo=False, data_dir=tmp_path) as gw:
        api = Api(gw.base_url)
        status, body = await api.login("alice", "alice-demo")
        assert status == 401
        status, body = await api.login("root", "root-password-1")
        assert status == 200 and body["agent"] == {"username": "root", "display_name": "Root", "role": "admin"}
        status, body = await api.get("/api/v1/users")
        assert [u["username"] for u in body["users"]] == ["root"]
        async with api.http.get(gw.base_url + "/api/v1/openapi.json") as r:
            doc = await r.json()
        for path in ("/api/v1/calls", "/api/v1/calls/{call_id}", "/api/v1/calls/{call_id}/wrap-up", "/api/v1/stats",
                     "/api/v1/api-keys", "/api/v1/webhooks", "/api/v1/agents", "/api/v1/queues"):
            assert path in doc["paths"], path
        assert {"bearer", "cookie"} <= set(doc["components"]["securitySchemes"])
        assert "WrapUpRequest" in doc["components"]["schemas"]
        await api.close()
