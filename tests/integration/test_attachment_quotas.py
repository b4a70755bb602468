"""Uploads cannot fill the disk: quotas per call, per caller and in total, and files deleted after retention."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.support.api import caller_socket
from tests.support.server import running_gateway

KIB = 1024


async def upload(gw, call_id: str, token: str, data: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.base_url}/api/v1/calls/{call_id}/attachments", params={"name": "notes.txt"},
                             data=data, headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/octet-stream"}) as r:
            return r.status, await r.json()


async def test_quotas_per_call_and_per_caller(caller_token):
    async with running_gateway(attachments_per_call_bytes=30 * KIB, attachments_per_caller_bytes=50 * KIB,
                               attachments_per_call_count=10) as gw:
        token = caller_token(sub="uploader")
        ws, call_id = await caller_socket(gw.base_url, token)
        for i in range(3):
            status, body = await upload(gw, call_id, token, b"a" * (10 * KIB))
            assert status == 201, body
            assert "owner" not in body  # who uploaded is kept, not shown
        status, body = await upload(gw, call_id, token, b"b")
        assert status == 413 and body["code"] == "call_quota_exceeded" and "30720" in body["reason"]
        # a new call of the same caller: the caller's quota still counts the first call's files
        await ws.request({"type": "call.hangup"})
        await ws.close()
        ws, second = await caller_socket(gw.base_url, token)
        for i in range(2):
            assert (await upload(gw, second, token, b"c" * (10 * KIB)))[0] == 201
        status, body = await upload(gw, second, token, b"d")
        assert status == 413 and body["code"] == "caller_quota_exceeded"
        # another caller is not affected
        other_token = caller_token(sub="someone-else")
        other_ws, other_call = await caller_socket(gw.base_url, other_token)
        assert (await upload(gw, other_call, other_token, b"e" * KIB))[0] == 201
        await ws.close()
        await other_ws.close()


async def test_count_per_call_and_total_budget(caller_token):
    async with running_gateway(attachments_per_call_count=2, attachments_total_bytes=1024 * KIB,
                               max_attachment_bytes=400 * KIB) as gw:
        tokens = [caller_token(sub=f"u{i}") for i in range(3)]
        calls = [await caller_socket(gw.base_url, t) for t in tokens]
        assert (await upload(gw, calls[0][1], tokens[0], b"x"))[0] == 201
        assert (await upload(gw, calls[0][1], tokens[0], b"x"))[0] == 201
        status, body = await upload(gw, calls[0][1], tokens[0], b"x")
        assert status == 413 and body["code"] == "call_quota_exceeded" and "2 files" in body["reason"]
        assert (await upload(gw, calls[1][1], tokens[1], b"y" * (400 * KIB)))[0] == 201
        assert (await upload(gw, calls[2][1], tokens[2], b"y" * (400 * KIB)))[0] == 201
        status, body = await upload(gw, calls[2][1], tokens[2], b"z" * (300 * KIB))
        assert status == 507 and body["code"] == "storage_full"
        for ws, _ in calls:
            await ws.close()


async def test_files_are_deleted_after_retention(caller_token):
    async with running_gateway(attachments_retention_s=4.0) as gw:
        token = caller_token(sub="keeper")
        ws, call_id = await caller_socket(gw.base_url, token)
        status, body = await upload(gw, call_id, token, b"remember me")
        assert status == 201
        path = gw.settings.data_dir / "attachments" / call_id / body["id"]
        assert path.read_bytes() == b"remember me"
        deadline = time.monotonic() + 30
        while path.exists():
            assert time.monotonic() < deadline, "not deleted after retention"
            await asyncio.sleep(0.1)
        assert not path.with_suffix(".json").exists()
        async with aiohttp.ClientSession() as http:
            async with http.get(gw.base_url + body["url"], headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 404 and (await r.json())["code"] == "unknown_attachment"
        await ws.close()
