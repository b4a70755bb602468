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
from tests.support.api import Api
from tests.support.server import running_gateway


async def _login(api: Api, username: str, password: str) -> tuple[int, dict, dict[str, str]]:
    async with api.http.post(api.base_url + "/api/v1/agent/login",
                             json={"username": username, "password": password}) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_wrong_passwords_are_throttled_per_account_and_address_and_audited():
    with capture_logs() as logs:
        async with running_gateway(signin_free_failures_per_account=5, signin_free_failures_per_address=8,
                                   signin_backoff_base_s=2) as gw:
            api = Api(gw.base_url)
            for _ in range(5):
                status, body, _ = await _login(api, "alice", "guess")
                assert status == 401 and body["code"] == "bad_credentials"
            # the account is blocked now: even the right password waits, and no hash is computed for it
            status, body, headers = await _login(api, "alice", "alice-demo")
            assert status == 429 and body["code"] == "too_many_attempts"
            assert body["reason"].startswith("too many wrong passwords; try again in ")
            assert 1 <= int(headers["Retry-After"]) <= 2
            deadline = time.monotonic() + 10
            while status == 429:  # the block ends after Retry-After seconds
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
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

    def _count(self, name: str, *args: str) -> object:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)
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
    results = await asyncio.gather(*(store.check_password("alice", "wrong-password") for _ in range(12)),
                                   return_exceptions=True)
    assert counting.most == 2
    busy = [r for r in results if isinstance(r, Unavailable)]
    assert len(busy) == 12 - 2 - 4 and busy[0].code == "sign_in_busy" and busy[0].status == 503
    assert all(isinstance(r, Unauthorized) for r in results if r not in busy)
    assert (await store.check_password("alice", "alice-password-1")).username == "alice"
    await db.close()
