"""Webhooks: signed deliveries to a real local HTTP receiver, retried after a 500, logged with their outcome."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time


from gateway.store.webhooks import verify_signature
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import wait_until
from signaling.keys import WEBHOOK_DISPATCHER, WEBHOOKS
from tests.support.loopback_http import Receiver
from tests.support.server import free_port, running_gateway


async def test_signed_deliveries_retried_and_logged(database_url, caller_token):
    async with Receiver(fail_first=1) as receiver, running_gateway(database_url=database_url) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.post("/api/v1/api-keys", {"name": "crm"})
        integrator = Api(gw.base_url, bearer=body["key"])
        status, hook = await integrator.post("/api/v1/webhooks", {
            "url": receiver.url, "events": ["call.queued", "call.offered", "call.answered", "call.ended",
                                            "call.abandoned"]})
        assert status == 201 and hook["secret"].startswith("whsec_")
        status, body = await integrator.post("/api/v1/webhooks", {"url": "ftp://x", "events": ["call.ended"]})
        assert status == 422 and body["code"] == "invalid_body"
        status, body = await integrator.post("/api/v1/webhooks", {"url": receiver.url, "events": ["call.exploded"]})
        assert status == 422 and body["code"] == "invalid_body"
        status, listed = await integrator.get("/api/v1/webhooks")
        assert [h["id"] for h in listed["webhooks"]] == [hook["id"]] and "secret" not in listed["webhooks"][0]

        # an abandoned call: queued, ended, abandoned
        caller, abandoned_id = await caller_socket(gw.base_url, caller_token(sub="hook-1"))
        await caller.request({"type": "call.hangup"})
        await caller.close()
        # an answered call: queued, offered, answered, ended
        agent = await agent_socket(gw.base_url)
        caller, answered_id = await caller_socket(gw.base_url, caller_token(sub="hook-2"))
        await agent.wait("call.offered")
        await agent.request({"type": "call.accept", "call_id": answered_id})
        await caller.request({"type": "call.hangup"})
        await caller.close()
        await agent.close()

        # 7 events, plus one retry of the delivery that got a 500
        await wait_until(lambda: len(receiver.requests) >= 8, 15)
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 8
        for headers, body in receiver.requests:
            assert verify_signature(hook["secret"], headers["Callin-Signature"], body)
            # the documented check, spelled out: HMAC-SHA256 over "<t>." + body
            parts = dict(p.split("=", 1) for p in headers["Callin-Signature"].split(","))
            mac = hmac.new(hook["secret"].encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(mac, parts["v1"]) and abs(int(parts["t"]) - time.time()) < 60
            assert headers["Content-Type"] == "application/json"
            assert headers["Callin-Event"] == json.loads(body)["event"]
            assert not verify_signature("whsec_wrong", headers["Callin-Signature"], body)
            assert not verify_signature(hook["secret"], headers["Callin-Signature"], body + b" ")
        first = receiver.requests[0]
        retries = [r for r in receiver.requests if r[0]["Callin-Attempt"] != "1"]
        assert len(retries) == 1 and retries[0][0]["Callin-Attempt"] == "2"
        assert retries[0][0]["Callin-Delivery"] == first[0]["Callin-Delivery"] and retries[0][1] == first[1]

        by_call: dict[str, list[str]] = {}
        payloads = [json.loads(body) for headers, body in receiver.requests if headers["Callin-Attempt"] == "1"]
        for payload in sorted(payloads, key=lambda p: p["created_at"]):
            by_call.setdefault(payload["data"]["id"], []).append(payload["event"])
        assert by_call[abandoned_id] == ["call.queued", "call.ended", "call.abandoned"]
        assert by_call[answered_id] == ["call.queued", "call.offered", "call.answered", "call.ended"]
        ended = [json.loads(b) for _, b in receiver.requests if json.loads(b)["event"] == "call.ended"]
        assert {e["data"]["outcome"] for e in ended} == {"abandoned", "answered"}
        assert ended[0]["data"]["identity"]["subject"] in ("hook-1", "hook-2")

        # every attempt is logged with its outcome
        status, log = await integrator.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
        attempts = sorted(log["deliveries"], key=lambda d: (d["at"]))
        assert len(attempts) == 8
        failed = [d for d in attempts if not d["ok"]]
        assert len(failed) == 1 and failed[0]["status_code"] == 500 and failed[0]["attempt"] == 1
        retried = [d for d in attempts if d["delivery_id"] == failed[0]["delivery_id"] and d["ok"]]
        assert retried and retried[0]["attempt"] == 2 and retried[0]["status_code"] == 204

        status, _ = await integrator.request("DELETE", f"/api/v1/webhooks/{hook['id']}")
        assert status == 200
        await admin.close()
        await integrator.close()


async def test_unreachable_endpoint_does_not_block_calls(caller_token):
    dead = f"http://127.0.0.1:{free_port()}/nothing"
    async with running_gateway(webhook_retry_base_s=5) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, hook = await admin.post("/api/v1/webhooks", {"url": dead, "events": ["call.queued", "call.ended"]})
        assert status == 201
        started = time.monotonic()
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="hook-3"))
        await caller.request({"type": "call.hangup"})
        await caller.close()
        record = await admin.ended_record(call_id)
        assert record["outcome"] == "abandoned" and time.monotonic() - started < 3
        for _ in range(100):  # the first attempts failed, are logged, and wait for their retry
            status, log = await admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
            if len(log["deliveries"]) >= 2:
                break
            await asyncio.sleep(0.05)
        assert {d["event"] for d in log["deliveries"]} == {"call.queued", "call.ended"}
        assert all(not d["ok"] and d["status_code"] is None and d["error"] == "connection_failed" for d in log["deliveries"])
        await admin.close()  # stopping the gateway cancels the pending retries


class SilentEndpoint:
    """A real TCP server on loopback that accepts connections and never answers (a hung receiver)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.connections = 0
        self.open: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open.add(writer)
        try:
            while await reader.read(4096):
                pass
        finally:
            self.open.discard(writer)
            writer.close()

    async def __aenter__(self) -> "SilentEndpoint":
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.open):
            writer.close()
        await self.server.wait_closed()


async def _metric(api: Api, name: str) -> float:
    async with api.http.get(api.base_url + "/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_internal_destinations_refused_at_registration(caller_token):
    """Without an allow-list, loopback, link-local, private and reserved addresses are refused in every spelling."""
    async with running_gateway(webhook_allowed_networks=[]) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.post("/api/v1/api-keys", {"name": "crm"})
        integrator = Api(gw.base_url, bearer=body["key"])
        for url in ["http://127.0.0.1:8080/x", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/x",
                    "http://192.168.1.1/", "http://172.16.0.1/", "http://[::1]:8080/", "http://[::ffff:127.0.0.1]/",
                    "http://2130706433/", "http://0x7f000001/", "http://0177.0.0.1/", "http://localhost:8080/",
                    "http://100.64.0.1/", "http://0.0.0.0/", "http://[fe80::1]/", "http://224.0.0.1/"]:
            for who in (admin, integrator):
                status, body = await who.post("/api/v1/webhooks", {"url": url, "events": ["call.ended"]})
                assert status == 422 and body["code"] == "destination_not_allowed", (url, status, body)
                assert "CALLIN_WEBHOOK_ALLOWED_NETWORKS" in body["reason"]
        status, body = await integrator.post("/api/v1/webhooks", {"url": "http://user:pw@example.com/",
                                                                  "events": ["call.ended"]})
        assert status == 422 and body["code"] == "invalid_url"
        status, body = await integrator.post("/api/v1/webhooks", {"url": "http://no-such-host.invalid/",
                                                                  "events": ["call.ended"]})
        assert status == 422 and body["code"] == "destination_unresolvable"
        status, body = await integrator.post("/api/v1/webhooks", {
            "url": f"http://127.0.0.1:{gw.settings.port}/api/v1/users", "events": ["call.ended"]})
        assert status == 422 and body["code"] == "destination_not_allowed"
        status, listed = await admin.get("/api/v1/webhooks")
        assert listed["webhooks"] == []
        await admin.close()
        await integrator.close()
    # the gateway's own public URL, even where it resolves to a public address
    async with running_gateway(public_url="https://callin.example.com") as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.post("/api/v1/webhooks", {"url": "https://callin.example.com/api/v1/users",
                                                             "events": ["call.ended"]})
        assert status == 422 and body == {"code": "destination_not_allowed",
                                          "reason": "webhooks cannot point at this gateway itself"}
        await admin.close()


async def test_internal_destination_refused_at_connect_time(caller_token):
    """A webhook whose address became internal after registration (DNS rebinding, or a row written before the
    check) is refused when connecting: the receiver gets nothing, the log says only destination_not_allowed."""
    async with Receiver(fail_first=0) as receiver, running_gateway(webhook_allowed_networks=[],
                                                                   webhook_max_attempts=1) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        by_ip = await gw.app[WEBHOOKS].create(receiver.url, ["call.queued"])  # bypasses the registration check
        by_name = await gw.app[WEBHOOKS].create(receiver.url.replace("127.0.0.1", "localhost"), ["call.queued"])
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="hook-rebind"))
        for hook in (by_ip, by_name):
            async def logged() -> bool:
                status, log = await admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
                return len(log["deliveries"]) == 1
            await wait_until(logged, 10)
            status, log = await admin.get(f"/api/v1/webhooks/{hook['id']}/deliveries")
            assert log["deliveries"][0]["error"] == "destination_not_allowed" and not log["deliveries"][0]["ok"]
        assert receiver.requests == []
        await caller.close()
        await admin.close()


async def test_silent_destination_delays_only_its_own_deliveries(caller_token):
    """40 webhooks to a receiver that never answers do not delay a healthy receiver's call.ended; deleting them
    cancels their pending deliveries and the backlog metric returns to 0."""
    async with SilentEndpoint() as silent, Receiver(fail_first=0) as healthy, \
            running_gateway(webhook_timeout_s=4, webhook_retry_base_s=0.5) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        silent_hooks = []
        for _ in range(40):
            status, hook = await admin.post("/api/v1/webhooks", {"url": silent.url,
                                                                 "events": ["call.queued", "call.ended"]})
            assert status == 201
            silent_hooks.append(hook["id"])
        status, _ = await admin.post("/api/v1/webhooks", {"url": healthy.url, "events": ["call.queued", "call.ended"]})
        assert status == 201

        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="hook-slow"))
        await caller.request({"type": "call.hangup"})
        await caller.close()
        ended_at = time.monotonic()
        # the old shared slots held every silent delivery through all its retries (5 attempts x 4 s): the healthy
        # receiver waited for minutes; now only the silent destination's own queue waits
        await wait_until(lambda: "call.ended" in healthy.events(), 6)
        assert time.monotonic() - ended_at < 6
        assert sorted(healthy.events()) == ["call.ended", "call.queued"]
        await wait_until(lambda: silent.connections >= 1, 5)
        assert await _metric(admin, "callin_webhook_backlog") > 0

        for hook_id in silent_hooks:
            status, _ = await admin.request("DELETE", f"/api/v1/webhooks/{hook_id}")
            assert status == 200

        async def drained() -> bool:
            return await _metric(admin, "callin_webhook_backlog") == 0
        await wait_until(drained, 5)
        await wait_until(lambda: not silent.open, 5)  # the attempts in flight were cancelled
        assert gw.app[WEBHOOK_DISPATCHER].backlog() == 0  # no retry left waiting on a timer
        await admin.close()
