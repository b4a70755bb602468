"""Recording as a contact centre uses it, through a running gateway with real aiortc peers: the queue's policy set
through the admin API, the caller told (or asked) first, a payment system pausing over REST, the file filed with
its checksum and paused span, the signed webhook recording.ready, a Range download by a supervisor (and an agent
refused), every access audited; a caller who declines leaves no file. The recorder's own media checks (frame
counters, tones, kill -9) are tests/integration/test_recording_media.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest
from sqlalchemy import event

from gateway.media.plane import RecordingInfo
from gateway.store.db import Database
from gateway.store.recordings import RecordingArchive, LocalRecordingStorage, RecordingCatalog, RecordingSweeper
from gateway.store.webhooks import verify_signature
from tests.support.loopback_http import Receiver
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Agent, Caller
from tests.support.process import GatewayProcess
from tests.support.server import running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.media


async def staffed(gw, policy: str, consent: str) -> tuple[Api, Api]:
    """The default queue records as asked (changed at run time by the admin), and an integrator API key."""
    admin = Api(gw.base_url)
    await admin.login("admin", "admin-demo")
    status, body = await admin.request("PUT", "/api/v1/queues/default",
                                       json={"recording": policy, "recording_consent": consent})
    assert status == 200 and body["config"]["recording"] == policy, body
    status, key = await admin.post("/api/v1/api-keys", {"name": "payments"})
    assert status == 201
    return admin, Api(gw.base_url, bearer=key["key"])


async def video_caller(base_url: str, token: str) -> Caller:
    """A caller whose video call waits (its frame-counter video and an 880 Hz tone)."""
    caller = Caller(base_url, token)
    await caller.connect()
    await caller.start("video", tone_hz=880.0)
    return caller


async def signed_in(base_url: str) -> Agent:
    agent = Agent(base_url)
    await agent.connect()
    return agent


async def answer(agent: Agent, call_id: str) -> dict:
    """Accept the call ringing at `agent` with its media (a 440 Hz tone); returns the offer."""
    offer = await agent.wait_offer()
    await agent.accept(call_id, tone_hz=440.0)
    await until(lambda: "video" in agent.peer.sinks, 20)
    return offer


def recording_states(ws) -> list[str]:
    return [m["state"] for m in ws.of_type("recording.state")]


async def frames_after(agent: Agent, more: int) -> None:
    sink = agent.peer.sinks["video"]
    start = len(sink.counters)
    await until(lambda: len(sink.counters) >= start + more, 20, message=f"{more} more video frames at the agent")


async def test_always_notify_recorded_paused_by_rest_filed_signed_and_downloaded_with_audit(caller_token):
    async with Receiver(fail_first=0) as receiver, running_gateway() as gw:
        admin, payments = await staffed(gw, "always", "notify")
        status, hook = await payments.post("/api/v1/webhooks", {"url": receiver.url, "events": ["recording.ready"]})
        assert status == 201
        agent = await signed_in(gw.base_url)
        caller = await video_caller(gw.base_url, caller_token(sub="rec-1"))
        call_id = caller.call_id
        # told before anything is recorded: the notice comes while the call waits
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "pending")
        offer = await answer(agent, call_id)
        assert offer["card"]["recording"] == {"state": "pending", "policy": "always", "consent": "notify"}
        await agent.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "recording")
        await frames_after(agent, 30)

        status, state = await payments.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 200 and state["state"] == "paused" and len(state["paused_spans"]) == 1, state
        status, again = await payments.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 409 and again["code"] == "recording_paused"
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "paused")
        await frames_after(agent, 20)  # media goes on for the call while nothing is recorded
        status, state = await payments.post(f"/api/v1/calls/{call_id}/recording/resume")
        assert status == 200 and state["state"] == "recording"
        await frames_after(agent, 30)

        # bad input: an unknown call, another agent, a resume while recording
        status, body = await payments.post("/api/v1/calls/0123456789abcdef/recording/pause")
        assert status == 404 and body["code"] == "unknown_call"
        bob = Api(gw.base_url)
        await bob.login("bob", "bob-demo")
        status, body = await bob.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 403 and body["code"] == "not_your_call"
        status, body = await payments.post(f"/api/v1/calls/{call_id}/recording/resume")
        assert status == 409 and body["code"] == "not_paused" and "recording" in body["reason"]

        await caller.hangup()
        assert recording_states(caller.ws) == ["pending", "recording", "paused", "recording", "stopped"]
        assert [m["by"] for m in agent.ws.of_type("recording.state")] == ["system", "api", "api", "system"]
        record = await admin.ended_record(call_id)
        assert record["recording"] == "stopped"
        [[paused, resumed]] = record["recording_paused"]
        assert record["answered_at"] < paused < resumed < record["ended_at"]
        assert [e["kind"] for e in record["events"] if e["kind"].startswith("recording")] == [
            "recording_pending", "recording_started", "recording_paused", "recording_resumed", "recording_stopped"]

        sam = Api(gw.base_url)
        await sam.login("sam", "sam-demo")

        async def filed() -> bool:
            return (await sam.get(f"/api/v1/recordings/{call_id}"))[0] == 200

        await until(filed, 20, message="the recording filed")
        status, meta = await sam.get(f"/api/v1/recordings/{call_id}")
        files = list(Path(gw.settings.data_dir, "recordings").rglob(f"{call_id}.*"))
        assert len(files) == 1 and files[0].suffix == ".webm"
        data = files[0].read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size_bytes"] == len(data) > 10_000
        assert meta["container"] == "webm" and meta["duration_s"] > 1
        assert {(t["participant"], t["kind"], t["codec"]) for t in meta["tracks"]} >= {
            ("caller", "video", "vp8"), ("caller", "audio", "opus"), ("alice", "audio", "opus")}
        [[start_s, end_s]] = meta["paused_spans"]
        assert 0 < start_s < end_s < meta["duration_s"]
        with av.open(str(files[0])) as container:  # a real file of the codecs it says
            assert {s.codec_context.name for s in container.streams} >= {"vp8", "opus"}

        # the signed webhook
        await until(lambda: receiver.requests, 20, message="recording.ready delivered")
        headers, body = receiver.requests[0]
        assert verify_signature(hook["secret"], headers["Callin-Signature"], body)
        ready = json.loads(body)
        assert ready["event"] == "recording.ready" and headers["Callin-Event"] == "recording.ready"
        assert {k: ready["data"][k] for k in ("id", "call_id", "sha256", "size_bytes")} == {
            "id": call_id, "call_id": call_id, "sha256": meta["sha256"], "size_bytes": len(data)}
        assert ready["data"]["duration_s"] == meta["duration_s"]
        url = ready["data"]["download_url"]
        assert url == f"{gw.base_url}/api/v1/recordings/{call_id}/file"

        # download: a Range gives 206 and exactly those bytes; an agent is refused; every access is audited
        async with sam.http.get(url, headers={"Authorization": f"Bearer {sam.bearer}", "Range": "bytes=100-1123"}) as r:
            assert r.status == 206 and r.headers["Content-Range"] == f"bytes 100-1123/{len(data)}"
            assert await r.read() == data[100:1124]
        async with sam.http.get(url, headers={"Authorization": f"Bearer {sam.bearer}"}) as r:
            assert r.status == 200 and await r.read() == data
        alice = Api(gw.base_url)
        await alice.login("alice", "alice-demo")
        async with alice.http.get(url, headers={"Authorization": f"Bearer {alice.bearer}"}) as r:
            assert r.status == 403 and (await r.json())["code"] == "forbidden"
        status, body = await alice.get(f"/api/v1/recordings/{call_id}")
        assert status == 403
        status, log = await admin.get(f"/api/v1/recordings/{call_id}/access")
        assert status == 200
        seen = [(a["principal"], a["action"], a["range"], a["status"], a["address"]) for a in reversed(log["access"])]
        assert seen[-3:] == [("sam", "metadata", None, 200, "127.0.0.1"),
                             ("sam", "download", "bytes=100-1123", 206, "127.0.0.1"),
                             ("sam", "download", None, 200, "127.0.0.1")]
        assert all(a["principal"] != "alice" for a in log["access"])  # refused before anything was read
        status, listed = await sam.get("/api/v1/recordings", params={"queue": "default"})
        assert status == 200 and [r["id"] for r in listed["recordings"]] == [call_id]
        for client in (admin, payments, bob, sam, alice):
            await client.close()
        await caller.close()
        await agent.close()


async def test_ask_and_declined_leaves_no_file_and_the_record_says_so(caller_token):
    async with running_gateway() as gw:
        admin, payments = await staffed(gw, "always", "ask")
        caller = await video_caller(gw.base_url, caller_token(sub="rec-2"))
        call_id = caller.call_id
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "asking")
        ack = await caller.ws.request({"type": "recording.consent", "accept": False})
        assert ack["type"] == "ack", ack
        again = await caller.ws.request({"type": "recording.consent", "accept": True})
        assert again["type"] == "error" and again["code"] == "consent_not_asked"
        agent = await signed_in(gw.base_url)  # now: the call is offered with the caller's answer in its card
        offer = await answer(agent, call_id)
        assert offer["card"]["recording"]["state"] == "declined"
        await frames_after(agent, 30)
        status, body = await payments.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 409 and body["code"] == "not_recording"
        refused = await agent.ws.request({"type": "recording.start", "call_id": call_id})
        assert refused["type"] == "error" and refused["code"] == "recording_declined"
        assert (await gw.board.plane.stats(call_id)).get("recording") is None  # the recorder was never started
        await agent.hangup(call_id)
        record = await admin.ended_record(call_id)
        assert record["recording"] == "declined" and record["recording_paused"] == []
        assert recording_states(caller.ws) == ["asking", "declined"]
        assert not list(Path(gw.settings.data_dir).rglob(f"{call_id}*"))
        status, body = await admin.get(f"/api/v1/recordings/{call_id}")
        assert status == 404 and body["code"] == "unknown_recording"
        for client in (admin, payments):
            await client.close()
        await caller.close()
        await agent.close()


async def test_control_refusals_without_media(caller_token):
    """A queue that does not record: the agent's start is refused, a pause has nothing to pause; an agent may not
    list recordings. (Calls without media legs: the rules refuse before the plane is asked.)"""
    async with running_gateway() as gw:
        admin, payments = await staffed(gw, "off", "notify")
        agent = await agent_socket(gw.base_url)
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="rec-3"))
        await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": call_id})
        refused = await agent.request({"type": "recording.start", "call_id": call_id})
        assert refused["type"] == "error" and refused["code"] == "recording_off"
        assert refused["reason"] == "recording is off in this call's queue"
        refused = await agent.request({"type": "recording.pause", "call_id": "nosuchcall"})
        assert refused["type"] == "error" and refused["code"] == "unknown_call"
        status, body = await payments.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 409 and body["code"] == "not_recording"
        status, body = await payments.get(f"/api/v1/calls/{call_id}/recording")
        assert status == 200 and body["state"] == "off" and body["policy"] == "off"
        alice = Api(gw.base_url)
        await alice.login("alice", "alice-demo")
        status, body = await alice.get("/api/v1/recordings")
        assert status == 403 and body["code"] == "forbidden"
        status, body = await payments.get("/api/v1/recordings/nosuchcall")
        assert status == 404 and body["code"] == "unknown_recording"
        status, body = await admin.request("PUT", "/api/v1/queues/default", json={"recording": "sometimes"})
        assert status == 422 and body["code"] == "invalid_body" and "recording" in body["reason"]
        await caller.request({"type": "call.hangup"})
        for client in (admin, payments, alice):
            await client.close()
        await caller.close()
        await agent.close()


@pytest.fixture
async def recordings_db(database_url, tmp_path) -> AsyncIterator[tuple[LocalRecordingStorage, RecordingCatalog]]:
    """A local recordings storage and the catalog on a fresh database (SQLite and PostgreSQL: migration 0006)."""
    db = Database(database_url)
    await db.upgrade()
    try:
        yield LocalRecordingStorage(tmp_path / "recordings"), RecordingCatalog(db)
    finally:
        await db.close()


async def test_retention_deletes_old_files_and_marks_them(recordings_db, tmp_path):
    """The sweeper, against SQLite and PostgreSQL (migration 0006 on both): old files go, their rows stay marked
    deleted; a recording within the retention is kept; the download of a swept one would be 410."""
    storage, catalog = recordings_db
    now = time.time()
    paths = {}
    for call_id, age_days in (("old0000000000001", 40), ("new0000000000002", 2)):
        base = await storage.prepare(call_id, now - age_days * 86_400)
        path = Path(base + ".webm")
        path.write_bytes(b"x" * 100)
        paths[call_id] = path
        info = RecordingInfo(path=str(path), container="webm", started_at=now - age_days * 86_400,
                             duration_s=1.0, size_bytes=100, tracks=(), paused_spans=((0.2, 0.4),))
        await catalog.add(call_id, storage.key_of(str(path)), info, "0" * 64, 100, queue="default", agent="alice")
    sweeper = RecordingSweeper(catalog, storage, retention_days=30, interval_s=3600)
    assert await sweeper.sweep() == 1
    assert not paths["old0000000000001"].exists() and paths["new0000000000002"].exists()
    old = await catalog.get("old0000000000001")
    assert old["deleted_reason"] == "retention" and old["deleted_at"] is not None
    assert old["paused_spans"] == [[0.2, 0.4]]
    assert (await catalog.get("new0000000000002"))["deleted_at"] is None
    assert await sweeper.sweep() == 0  # nothing twice
    assert storage.local_file(storage.key_of(str(paths["old0000000000001"]))) is None


def short_webm(path: Path) -> None:
    """A real one-second VP8 recording (ten black frames)."""
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


async def test_recovery_asks_the_catalog_once_for_all_the_files(recordings_db, tmp_path):
    """Recovery at start with 520 local files, 518 of them filed: the catalog is asked in one query per 500 files
    (not one per file). A readable unfiled file is filed; an unreadable one is not, nor a live call's until it
    ends."""
    storage, catalog = recordings_db
    now = time.time()
    info = RecordingInfo(path="", container="webm", started_at=now, duration_s=1.0, size_bytes=100, tracks=(),
                         paused_spans=())
    for n in range(518):
        path = Path(await storage.prepare(f"filed{n:011d}", now) + ".webm")
        path.write_bytes(b"x" * 100)  # unreadable: filed already, so recovery must not even read it
        await catalog.add(path.stem, storage.key_of(str(path)), info, "0" * 64, 100, queue=None, agent=None)
    live = Path(await storage.prepare("live000000000001", now) + ".webm")
    short_webm(live)
    Path(await storage.prepare("broken0000000001", now) + ".webm").write_bytes(b"not a recording")
    published: list[tuple[str, dict]] = []
    archive = RecordingArchive(catalog, storage, lambda kind, body: published.append((kind, body)),
                               lambda call_id: f"/api/v1/recordings/{call_id}/file")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "FROM recordings" in statement:
            statements.append(statement)

    async def lookup(call_id: str) -> dict:
        return {"queue": "sales", "agent": "bob"}

    event.listen(catalog.db.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert await archive.recover(lambda call_id: call_id == live.stem, lookup) == 0
    finally:
        event.remove(catalog.db.engine.sync_engine, "before_cursor_execute", count)
    assert len(statements) == 2, statements  # 520 call ids in chunks of 500

    orphan = Path(await storage.prepare("orphan0000000001", now) + ".webm")
    short_webm(orphan)
    assert await archive.recover(lambda call_id: call_id == live.stem, lookup) == 1
    filed = await catalog.get(orphan.stem)
    assert filed["sha256"] == hashlib.sha256(orphan.read_bytes()).hexdigest()
    assert (filed["queue"], filed["agent"]) == ("sales", "bob") and filed["duration_s"] == pytest.approx(1.0)
    assert [(kind, body["call_id"]) for kind, body in published] == [("recording.ready", orphan.stem)]
    assert await catalog.filed([live.stem, "broken0000000001", "filed00000000000"]) == {"filed00000000000"}
    assert await archive.recover(lambda call_id: False, lookup) == 1  # the call ended: its file is filed
    assert await catalog.filed([live.stem, orphan.stem]) == {live.stem, orphan.stem}
    await archive.stop()


async def test_a_recording_left_by_kill_9_is_filed_at_the_next_start(caller_token, tmp_path):
    """`callin serve` (one media worker) is SIGKILLed mid-recording: the file stays (the recorder flushes it every
    second) but nothing filed it. The next start reads it back and files it: checksum, tracks, duration, row."""
    queues = json.dumps([{"name": "default", "recording": "always"}])
    gateway = GatewayProcess(f"sqlite+aiosqlite:///{tmp_path / 'callin.db'}", tmp_path, queues=queues, media_workers=1)
    try:
        await gateway.start()
        agent = await signed_in(gateway.base_url)
        caller = await video_caller(gateway.base_url, caller_token(sub="rec-kill"))
        call_id = caller.call_id
        await answer(agent, call_id)
        await frames_after(agent, 90)  # three seconds recorded, at least two of them flushed to disk

        def written() -> list[Path]:
            return [p for p in (tmp_path / "recordings").rglob(f"{call_id}.*") if p.stat().st_size > 20_000]

        await until(written, 20, message="the recording on disk")
        gateway.kill()
        await caller.close()
        await agent.close()
        [path] = written()
        await gateway.start()
        sam = Api(gateway.base_url)
        await sam.login("sam", "sam-demo")

        async def filed() -> bool:
            return (await sam.get(f"/api/v1/recordings/{call_id}"))[0] == 200

        await until(filed, 30, message="the orphaned recording filed")
        status, meta = await sam.get(f"/api/v1/recordings/{call_id}")
        data = path.read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size_bytes"] == len(data)
        assert meta["queue"] == "default" and meta["agent"] == "alice"  # from the call's record
        assert meta["duration_s"] > 1.5
        assert ("caller", "video", "vp8") in {(t["participant"], t["kind"], t["codec"]) for t in meta["tracks"]}
        await sam.close()
    finally:
        gateway.close()
