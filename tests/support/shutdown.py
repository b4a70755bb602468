"""A real `callin serve` process with connected calls and waiting callers, stopped with SIGTERM: what every socket
got, how the process exited, what the call records say. Used by tests/integration/test_server.py and
bench/shutdown.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.auth import mint_caller_token
from gateway.store.accounts import AccountStore
from gateway.store.db import Database

from .process import wait_healthy
from .server import TEST_SECRET, free_port, test_env

ROOT = Path(__file__).resolve().parents[2]


class Socket:
    """A signaling-only client that keeps every message and its close code."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._new = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.messages.append(json.loads(msg.data))
                    self._new.set()
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            self._new.set()

    async def request(self, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        body = {"id": f"r{len(self.messages)}-{time.monotonic_ns()}", **body}
        await self.ws.send_str(json.dumps(body))
        return await self.wait(lambda m: m.get("id") == body["id"], timeout)

    async def wait(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for m in self.messages[seen:]:
                if predicate(m):
                    return m
            seen = len(self.messages)
            if self.closed.is_set():
                raise AssertionError(f"closed ({self.close_code}) while waiting; got {self.messages[-5:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {self.messages[-5:]}")
            self._new.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new.wait(), deadline - time.monotonic())


@dataclass
class StopResult:
    exit_s: float  # SIGTERM -> process gone
    returncode: int
    sockets: list[Socket]
    callers_in_calls: list[Socket]
    records: list[tuple[str, float | None, str | None, str]]  # (id, ended_at, end_reason, state)
    log_tail: str
    shutdown_log: list[dict[str, Any]] = field(default_factory=list)
    sigterm_at: float = 0.0  # wall clock, to compare with the log's timestamps
    waiting_callers: list[Socket] = field(default_factory=list)

    def phase_s(self, event: str) -> float | None:
        """Seconds from SIGTERM to a shutdown.* log line."""
        for entry in self.shutdown_log:
            if entry.get("event") == event:
                at = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
                return at - self.sigterm_at
        return None

    def problems(self) -> list[str]:
        """Everything that broke the promise: each socket told and closed with 1001, every connected call's record
        ended (shutdown), every waiting caller's call kept for the next start (record open, queued; told to resume)."""
        out = []
        untold = [s for s in self.sockets if not any(m.get("type") == "shutdown" for m in s.messages)]
        if untold:
            out.append(f"{len(untold)} sockets got no shutdown message")
        codes: dict[Any, int] = {}
        for s in self.sockets:
            codes[s.close_code] = codes.get(s.close_code, 0) + 1
        if self.sockets and set(codes) != {1001}:
            out.append(f"close codes {codes}")
        ended = [s for s in self.callers_in_calls
                 if not any(m.get("type") == "call.ended" and m.get("reason") == "shutdown" for m in s.messages)]
        if ended:
            out.append(f"{len(ended)} callers in a call got no call.ended (shutdown)")
        ended_records = [r for r in self.records if r[1] is not None and r[2] == "shutdown"]
        kept_records = [r for r in self.records if r[1] is None and r[2] is None and r[3] == "queued"]
        if len(ended_records) != len(self.callers_in_calls):
            out.append(f"{len(ended_records)} call records ended (shutdown), {len(self.callers_in_calls)} calls were "
                       "connected")
        if len(kept_records) != len(self.waiting_callers):
            out.append(f"{len(kept_records)} call records kept open for the next start, {len(self.waiting_callers)} "
                       "callers were waiting")
        untold_resume = [s for s in self.waiting_callers
                         if not any(m.get("type") == "shutdown" and m.get("resume") is True for m in s.messages)]
        if untold_resume:
            out.append(f"{len(untold_resume)} waiting callers were not told to resume")
        if self.returncode != 0:
            out.append(f"exit code {self.returncode}: {self.log_tail[-1500:]}")
        return out


async def _make_agents(data_dir: Path, count: int) -> None:
    db = Database(f"sqlite+aiosqlite:///{data_dir / 'callin.db'}")
    try:
        await db.upgrade()
        accounts = AccountStore(db, time_cost=1, memory_kib=8192)
        for i in range(count):
            await accounts.add(f"agent{i}", "agent-password", display_name=f"Agent {i}", min_password=1)
    finally:
        await db.close()


async def _records_caught_up(db_path: Path, calls: int, answered: int, timeout: float = 120) -> None:
    """Before the stop: the writes of the setup itself are done (a stop measures its own work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error), sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            total, done = db.execute("SELECT count(*), count(answered_at) FROM calls").fetchone()
            if total >= calls and done >= answered:
                return
        await asyncio.sleep(0.2)
    raise AssertionError("the call records of the setup were not written in time")


async def stop_under_load(connected: int, waiting: int, *, extra_env: dict[str, str] | None = None,
                          code: Path = ROOT) -> StopResult:
    """Start `callin serve` (from the checkout `code`), put up `connected` calls (caller + agent) and `waiting`
    queued callers, SIGTERM it."""
    data_dir = Path(tempfile.mkdtemp(prefix="callin-stop-"))
    await _make_agents(data_dir, connected)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLIN_")}
    env.update(CALLIN_PORT=str(port), CALLIN_CALLER_TOKEN_SECRET=TEST_SECRET, CALLIN_DATA_DIR=str(data_dir),
               CALLIN_PASSWORD_HASH_TIME_COST="1", CALLIN_PASSWORD_HASH_MEMORY_KIB="8192",
               CALLIN_MAX_QUEUE_LENGTH=str(waiting + connected + 10), CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_ICE_SERVERS="[]", CALLIN_LOG_LEVEL="info",
               # One client process holds every socket here: on a busy machine its pongs can be late, and a
               # socket cut by the heartbeat before the stop would not be the stop's doing.
               CALLIN_WS_HEARTBEAT_S="60",
               PYTHONPATH=str(code), **test_env(), **(extra_env or {}))
    log_path = data_dir / "callin.log"  # a file, not a pipe: nobody reads a pipe until the end, and a full one blocks
    log_file = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=data_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=log_file)
    ws_base = base.replace("http", "ws", 1)
    sockets: list[Socket] = []
    in_calls: list[Socket] = []
    waiting_callers: list[Socket] = []
    connector = aiohttp.TCPConnector(limit=0)
    http = aiohttp.ClientSession(connector=connector)
    try:
        await wait_healthy(base, proc)

        async def caller(i: int) -> Socket:
            s = Socket(await http.ws_connect(ws_base + "/ws/caller"))
            sockets.append(s)
            await s.request({"type": "hello", "token": mint_caller_token(TEST_SECRET, sub=f"c{i}", name=f"C {i}")})
            queued = await s.request({"type": "call.start", "call_type": "voice"})
            assert queued["type"] == "call.queued", queued
            return s

        async def agent(i: int) -> Socket:
            async with http.post(base + "/api/v1/agent/login",
                                 json={"username": f"agent{i}", "password": "agent-password"}) as r:
                token = (await r.json())["token"]
            s = Socket(await http.ws_connect(ws_base + "/ws/agent"))
            sockets.append(s)
            await s.request({"type": "hello", "token": token})
            await s.request({"type": "agent.status", "status": "available"})
            return s

        agents = [await agent(i) for i in range(connected)]
        for i in range(connected):
            in_calls.append(await caller(i))
        for a in agents:
            offer = await a.wait(lambda m: m.get("type") == "call.offered")
            accepted = await a.request({"type": "call.accept", "call_id": offer["call_id"]})
            assert accepted["type"] == "call.accepted", accepted
        for s in in_calls:
            await s.wait(lambda m: m.get("type") == "call.answered")
        batch = 50
        for start in range(connected, connected + waiting, batch):
            waiting_callers.extend(await asyncio.gather(*(caller(i) for i in range(start, min(start + batch,
                                                                                               connected + waiting)))))

        await _records_caught_up(data_dir / "callin.db", connected + waiting, connected)
        sigterm_at = time.time()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            await asyncio.sleep(0.01)
        exit_s = time.monotonic() - started
        if sockets:
            await asyncio.wait([asyncio.ensure_future(s.closed.wait()) for s in sockets], timeout=10)
        log = log_path.read_text(errors="replace")
        with sqlite3.connect(data_dir / "callin.db") as db:
            records = db.execute("SELECT id, ended_at, end_reason, state FROM calls").fetchall()
        lines = []
        for line in log.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if str(entry.get("event", "")).startswith("shutdown."):
                    lines.append(entry)
        return StopResult(exit_s, proc.returncode, sockets, in_calls, records, log, lines, sigterm_at,
                          waiting_callers)
    except Exception as exc:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise AssertionError(f"{exc}\n--- callin serve's log:\n{log_path.read_text(errors='replace')[-3000:]}") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        for s in sockets:
            s.task.cancel()
        await http.close()
