"""Files exchanged in calls are readable from any node (issue 10, item 7): with the records in PostgreSQL, attachment
bytes and metadata live in the shared database (gateway/store/attachments.py, DatabaseAttachments), so a file sent in
a call homed on node A is downloaded through node B, also after node A was killed with SIGKILL. Real `callin serve`
processes (each with its own data folder: nothing is shared on disk), a real redis-server, PostgreSQL through its
Unix socket, real aiortc peers (the snapshot is decoded from the caller's real video)."""

from __future__ import annotations

import io
import json
import os

import aiohttp
import av
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.api import Api
from tests.support.clients import Agent, Caller, wait_until
from tests.support.cluster_nodes import node, record_state, start
from tests.support.media import read_counter

pytestmark = pytest.mark.media


def png(size: int) -> bytes:
    """A file the gateway takes for a PNG (by its signature), of `size` random bytes: several database chunks."""
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)


async def upload(base_url: str, call_id: str, bearer: str, data: bytes, name: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url}/api/v1/calls/{call_id}/attachments", params={"name": name}, data=data,
                             headers={"Authorization": f"Bearer {bearer}",
                                      "Content-Type": "application/octet-stream"}) as r:
            return r.status, await r.json()


async def snapshot(base_url: str, call_id: str, bearer: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base_url}/api/v1/calls/{call_id}/snapshot",
                             headers={"Authorization": f"Bearer {bearer}"}) as r:
            return r.status, await r.json()


async def fetch(base_url: str, path: str, bearer: str | None) -> tuple[int, bytes, dict]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(base_url + path, headers=headers) as r:
            return r.status, await r.read(), dict(r.headers)


async def code_of(base_url: str, path: str, bearer: str | None) -> tuple[int, str | None]:
    status, body, _ = await fetch(base_url, path, bearer)
    try:
        return status, json.loads(body).get("code")
    except ValueError:
        return status, None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_files_of_a_call_on_node_a_are_read_through_node_b_also_after_a_is_killed(database_url, redis_url,
                                                                                        tmp_path, caller_token):
    a = node(database_url, redis_url, tmp_path, "node-a", True)
    b = node(database_url, redis_url, tmp_path, "node-b", False)
    clients: list = []
    bob = None
    try:
        await start(a)
        await start(b)
        alice = Agent(b.base_url)  # alice's console on B; the call lives on A
        clients.append(alice)
        await alice.connect()
        token = caller_token(sub="cust-files", name="Dana Caller")
        caller = Caller(a.base_url, token)
        clients.append(caller)
        await caller.connect()
        call_id = (await caller.start("video", tone_hz=880))["call_id"]
        offer = await alice.wait_offer(timeout=20)
        assert offer["call_id"] == call_id
        await alice.accept(call_id, tone_hz=440)
        await caller.ws.wait("call.answered", timeout=10)
        await wait_until(lambda: "video" in alice.peer.sinks and len(alice.peer.sinks["video"].counters) > 10, 30)

        # 1. The caller's file, uploaded through A (its home), in the chat; alice reads it through B.
        receipt = png(700_000)  # three chunks of 256 KiB in the database
        status, sent = await upload(a.base_url, call_id, token, receipt, "receipt.png")
        assert status == 201, sent
        assert sent["size"] == len(receipt) and sent["mime"] == "image/png"
        chat = await caller.ws.request({"type": "chat.send", "call_id": call_id, "attachment_id": sent["id"]})
        assert chat["type"] == "ack", chat
        line = await alice.ws.wait(lambda m: m["type"] == "chat.message" and m["message"].get("attachment"), 10)
        assert line["message"]["attachment"]["id"] == sent["id"]
        status, body, headers = await fetch(b.base_url, sent["url"], alice.token)
        assert status == 200 and body == receipt, status
        assert headers["Content-Type"] == "image/png" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Content-Length"] == str(len(receipt))

        # The caller's HTTP request may reach B too (a balancer without sticky sessions): B keeps the file, A adopts
        # it, and the caller can send it in the chat on A.
        second = png(50_000)
        status, via_b = await upload(b.base_url, call_id, token, second, "second.png")
        assert status == 201 and via_b["uploaded_by"] == "caller", via_b
        chat = await caller.ws.request({"type": "chat.send", "call_id": call_id, "attachment_id": via_b["id"]})
        assert chat["type"] == "ack", chat
        await alice.ws.wait(lambda m: m["type"] == "chat.message" and (m["message"].get("attachment") or {})
                            .get("id") == via_b["id"], 10)
        status, body, _ = await fetch(b.base_url, via_b["url"], alice.token)
        assert status == 200 and body == second
        status, refused = await upload(b.base_url, call_id, caller_token(sub="cust-other"), png(1000), "x.png")
        assert (status, refused["code"]) == (404, "unknown_call"), refused

        # 2. Alice's picture, uploaded through B (her node) to the call homed on A: A adopts it, she pushes it (the
        #    command goes to A through B) and the caller reads it through A.
        picture = png(300_000)
        status, pushed_file = await upload(b.base_url, call_id, alice.token, picture, "how-to.png")
        assert status == 201, pushed_file
        assert pushed_file["uploaded_by"] == "alice"
        push = await alice.ws.request({"type": "content.push", "call_id": call_id, "kind": "image",
                                       "title": "Tap here", "attachment_id": pushed_file["id"]})
        assert push["type"] == "content.sent", push
        content = (await caller.ws.wait("content.pushed", timeout=10))["content"]
        assert content["attachment"]["id"] == pushed_file["id"]
        status, body, _ = await fetch(a.base_url, content["attachment"]["url"], token)
        assert status == 200 and body == picture

        # 3. A snapshot asked through B is taken by A (the caller's media is there) and read through B.
        status, snap = await snapshot(b.base_url, call_id, alice.token)
        assert status == 201, snap
        assert snap["mime"] == "image/jpeg" and (snap["width"], snap["height"]) == (320, 240)
        status, jpeg, headers = await fetch(b.base_url, snap["url"], alice.token)
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        still = next(av.open(io.BytesIO(jpeg)).decode(video=0))
        counter = read_counter(still)  # the caller's own frame counter, drawn in its video
        assert counter is not None and caller.video.counter - 150 <= counter <= caller.video.counter

        # Who may not: bob (an agent not in the call), another caller, nobody; a caller may not take snapshots.
        bob = Api(b.base_url)
        assert (await bob.login("bob", "bob-demo"))[0] == 200
        assert await code_of(b.base_url, sent["url"], bob.bearer) == (404, "unknown_attachment")
        stranger = caller_token(sub="cust-other")
        assert (await code_of(b.base_url, sent["url"], stranger))[0] == 404
        assert (await code_of(b.base_url, sent["url"], None))[0] == 401
        status, refused = await upload(b.base_url, call_id, bob.bearer, png(1000), "nope.png")
        assert (status, refused["code"]) == (403, "not_your_call"), refused
        status, refused = await snapshot(b.base_url, call_id, token)
        assert (status, refused["code"]) == (403, "forbidden"), refused

        files = {sent["url"]: receipt, via_b["url"]: second, content["attachment"]["url"]: picture, snap["url"]: jpeg}
        # The refused uploads were deleted again (or never kept): the call keeps exactly its four files.
        admin = Api(b.base_url)
        assert (await admin.login("admin", "admin-demo"))[0] == 200
        status, record = await admin.get(f"/api/v1/calls/{call_id}")
        assert status == 200, record
        logged = [e["detail"]["id"] for e in record["events"] if e["kind"] in ("attachment", "snapshot")]
        assert sorted(logged) == sorted(url.rsplit("/", 1)[1] for url in files), logged
        await admin.http.close()
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                kept = (await conn.execute(text("SELECT id FROM attachments WHERE call_id = :id"),
                                           {"id": call_id})).scalars().all()
        finally:
            await engine.dispose()
        assert sorted(kept) == sorted(logged)  # bob's refused upload, kept by B first, was deleted again

        # 4. kill -9 of A, the call's home: every file is still read through B, by alice and by the caller.
        await record_state(database_url, call_id, "connected")
        a.kill()
        await alice.ws.wait(lambda m: m["type"] == "call.ended" and m["call_id"] == call_id, timeout=30)
        for url, data in files.items():
            status, body, _ = await fetch(b.base_url, url, alice.token)
            assert status == 200 and body == data, (url, status)
            status, body, _ = await fetch(b.base_url, url, token)
            assert status == 200 and body == data, (url, status)
        assert await code_of(b.base_url, sent["url"], bob.bearer) == (404, "unknown_attachment")
        assert (await code_of(b.base_url, sent["url"], stranger))[0] == 404
        # An upload to the dead node's call is refused with a reason, nothing kept.
        status, refused = await upload(b.base_url, call_id, alice.token, png(1000), "late.png")
        assert (status, refused["code"]) == (404, "unknown_call"), refused
    finally:
        if bob is not None:
            await bob.http.close()
        for client in clients:
            await client.close()
        a.close()
        b.close()
