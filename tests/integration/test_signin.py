"""Sign-in under attack: throttled wrong passwords, a bound on concurrent hashes, an audit line per failure;
server-side sessions that sign-out, a password change and an admin end (live agent sockets closed)."""

from __future__ import annotations

import asyncio
import threading
import time

from structlog.testing import capture_logs

from gateway.errors import Unavailable, Unauthorized
from gateway.store.accounts import AccountStore
from gateway.store.db import Database
from signaling.keys import SIGNINS
from tests.support.api import Api
from tests.support.clients import WsClient, wait_until
from tests.support.server import running_gateway


async def _login(api: Api, username: str, password: str) -> tuple[int, dict, dict[str, str]]:
    async with api.http.post(api.base_url + "/api/v1/agent/login",
                             json={"username": username, "password": password}) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_wrong_passwords_are_throttled_per_account_and_address_and_audited():
    with capture_logs() as logs:
        async with running_gateway(signin_free_failures_per_account=5, signin_free_failures_per_address=8,
                                   signin_backoff_base_s=5) as gw:
            api = Api(gw.base_url)
            for _ in range(5):
                status, body, _ = await _login(api, "alice", "guess")
                assert status == 401 and body["code"] == "bad_credentials"
            # the account is blocked now: even the right password waits, and no hash is computed for it
            status, body, headers = await _login(api, "alice", "alice-demo")
            assert status == 429 and body["code"] == "too_many_attempts"
            assert body["reason"].startswith("too many wrong passwords; try again in ")
            assert 1 <= int(headers["Retry-After"]) <= 5
            deadline = time.monotonic() + 15
            while status == 429:  # the block ends after Retry-After seconds
                assert time.monotonic() < deadline and body["code"] == "too_many_attempts"
                await asyncio.sleep(0.5)
                status, body, _ = await _login(api, "alice", "alice-demo")
            assert status == 200  # and the success clears the counts
            status, body, _ = await _login(api, "alice", "guess")
            assert status == 401

            # one address guessing many accounts: blocked for every account
            for username in ("bob", "bob", "sam", "sam", "carol", "dave", "erin"):
                status, body, _ = await _login(api, username, "guess")
                assert status == 401, body
            status, body, headers = await _login(api, "admin", "admin-demo")
            assert status == 429 and body["code"] == "too_many_attempts" and "Retry-After" in headers
            await api.close()
    failures = [e for e in logs if e["event"] == "auth.sign_in_failed"]
    assert len(failures) == 5 + 1 + 7
    assert failures[0]["username"] == "alice" and failures[0]["address"] == "127.0.0.1"
    assert failures[-1]["address_failures"] == 8
    assert any(e["event"] == "auth.sign_in_throttled" and e["username"] == "admin" for e in logs)


class _CountingHasher:
    """Wraps the real argon2 hasher to record how many hashes run at once."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()
        self.gate = threading.Event()  # hashes wait for it: nothing finishes before every request was let in or not

    def _count(self, name: str, *args: str) -> object:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.gate.wait(10)
            return getattr(self.real, name)(*args)
        finally:
            with self.lock:
                self.running -= 1

    def verify(self, *args: str) -> object:
        return self._count("verify", *args)

    def hash(self, *args: str) -> object:
        return self._count("hash", *args)


async def test_concurrent_password_hashes_are_bounded(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}")
    await db.upgrade()
    store = AccountStore(db, time_cost=1, memory_kib=8192, concurrency=2, queue=4)
    await store.add("alice", "alice-password-1")
    counting = _CountingHasher(store._hasher)
    store._hasher = counting  # type: ignore[assignment]
    refused: list[Unavailable] = []

    async def check() -> None:
        try:
            await store.check_password("alice", "wrong-password")
        except Unavailable as exc:
            refused.append(exc)
            raise

    running = asyncio.gather(*(check() for _ in range(12)), return_exceptions=True)
    # 2 hash, 4 wait their turn, the other 6 are refused at once; then the hashes may finish.
    await wait_until(lambda: len(refused) >= 6, 10)
    counting.gate.set()
    results = await running
    assert counting.most == 2
    busy = [r for r in results if isinstance(r, Unavailable)]
    assert len(busy) == 12 - 2 - 4 and busy[0].code == "sign_in_busy" and busy[0].status == 503
    assert all(isinstance(r, Unauthorized) for r in results if r not in busy)
    assert (await store.check_password("alice", "alice-password-1")).username == "alice"
    await db.close()


async def _agent_ws(base: str, token: str | None = None, cookie: str | None = None) -> WsClient:
    ws = WsClient(base, "/ws/agent")
    await ws.connect(headers={"Cookie": f"callin_session={cookie}"} if cookie else None)
    hello: dict = {"type": "hello"}
    if token:
        hello["token"] = token
    welcome = await ws.request(hello)
    assert welcome["type"] == "welcome", welcome
    return ws


async def _ended(ws: WsClient) -> None:
    """The socket was told its session ended and was closed as unauthorized."""
    error = await ws.wait(lambda m: m.get("type") == "error" and m.get("code") == "session_revoked", timeout=5)
    assert error["reason"] == "this session was ended; sign in again"
    await wait_until(lambda: ws.close_code is not None, 5)
    assert ws.close_code == 4401


async def test_sign_out_password_change_and_admin_end_sessions_and_their_sockets():
    async with running_gateway() as gw:
        base = gw.base_url
        # sign-out: the token stops working as Bearer, as cookie, in a new hello, and its live socket closes
        api = Api(base)
        status, body = await api.login("alice", "alice-demo")
        token = body["token"]
        assert status == 200 and token.startswith("as_") and body["expires_in"] == gw.settings.agent_session_ttl_s
        ws = await _agent_ws(base, token=token)
        status, body = await api.post("/api/v1/agent/logout")
        assert status == 200
        await _ended(ws)
        status, body = await Api(base, bearer=token).get("/api/v1/calls")
        assert status == 401 and body == {"code": "session_revoked", "reason": "this session was ended; sign in again"}
        status, body = await api.get("/api/v1/calls", auth=False, headers={"Cookie": f"callin_session={token}"})
        assert status == 401 and body["code"] == "session_revoked"
        late = WsClient(base, "/ws/agent")
        await late.connect()
        refused = await late.request({"type": "hello", "token": token})
        assert refused["type"] == "error" and refused["code"] == "session_revoked"
        for client in (ws, late):
            await client.close()

        # a browser sign-in: the token stays in the HttpOnly cookie, none in the body
        browser = Api(base)
        status, body = await browser.request("POST", "/api/v1/agent/login", auth=False, json={
            "username": "alice", "password": "alice-demo", "cookie_only": True})
        assert status == 200 and body["token"] is None
        status, me = await browser.get("/api/v1/agent/session", auth=False)
        assert status == 200 and me["agent"]["username"] == "alice" and 0 < me["expires_in"] <= me["ends_in"]
        status, refreshed = await browser.post("/api/v1/agent/refresh", auth=False, headers={"Origin": base})
        assert status == 200 and refreshed["session_id"] == me["session_id"]
        browser_cookie = next(c.value for c in browser.http.cookie_jar if c.key == "callin_session")
        browser_ws = await _agent_ws(base, cookie=browser_cookie)

        # a password change ends every other session of the account (and its sockets), not the one changing it
        other = Api(base)
        await other.login("alice", "alice-demo")
        status, body = await other.request("PUT", "/api/v1/agent/password", json={
            "current_password": "wrong", "new_password": "alice-new-password"})
        assert status == 401 and body["code"] == "bad_credentials"
        status, body = await other.request("PUT", "/api/v1/agent/password", json={
            "current_password": "alice-demo", "new_password": "alice-new-password"})
        assert status == 200 and body == {"changed": True, "sessions_ended": 1}
        await _ended(browser_ws)
        status, body = await browser.get("/api/v1/agent/session", auth=False)
        assert status == 401 and body["code"] == "session_revoked"
        status, body = await other.get("/api/v1/agent/session")
        assert status == 200
        assert (await Api(base).login("alice", "alice-demo"))[0] == 401
        await browser_ws.close()

        # an admin ends all of an account's sessions
        admin = Api(base)
        await admin.login("admin", "admin-demo")
        other_ws = await _agent_ws(base, token=other.bearer)
        status, listed = await admin.get("/api/v1/users/alice/sessions")
        assert status == 200 and len(listed["sessions"]) == 1 and "secret" not in str(listed)
        status, body = await other.get("/api/v1/users/alice/sessions")
        assert status == 403
        status, body = await admin.request("DELETE", "/api/v1/users/alice/sessions")
        assert status == 200 and body == {"username": "alice", "sessions_ended": 1}
        await _ended(other_ws)
        status, body = await other.get("/api/v1/calls")
        assert status == 401 and body["code"] == "session_revoked"
        await other_ws.close()
        for client in (api, browser, other, admin):
            await client.close()


async def test_sockets_close_when_a_session_ends_elsewhere():
    """A session ended through another node (here: straight in the database) closes this node's sockets at the
    next check."""
    async with running_gateway(agent_session_check_s=0.2) as gw:
        api = Api(gw.base_url)
        status, body = await api.login("bob", "bob-demo")
        ws = await _agent_ws(gw.base_url, token=body["token"])
        signin = await gw.app[SIGNINS].verify(body["token"])
        await gw.app[SIGNINS].revoke(signin.id, "elsewhere")
        await _ended(ws)
        await ws.close()
        await api.close()
