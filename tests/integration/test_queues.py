"""Queues and routing through the real server: queue and priority from the token, skills, two ring-outs, callbacks
(leave, keep the place, told by the client and a webhook, rejoin with media), after-hours messages, wrap-up."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import pytest

from tests.support.loopback_http import Receiver
from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.media import ToneAudioTrack
from tests.support.server import running_gateway

pytestmark = pytest.mark.media

BILLING = {"name": "billing", "display_name": "Billing", "skills": ["billing"],
           "priority_rules": [{"claim": "tier", "equals": "premium", "priority": 10}]}


def closed_today() -> dict:
    today = date.today()
    return {"name": "support", "holidays": [str(today + timedelta(days=d)) for d in (-1, 0, 1)],
            "after_hours_message": "Support answers 9-17 on weekdays."}


async def test_queue_and_priority_from_the_token_and_skills_routing(caller_token):
    async with running_gateway(queues=[BILLING]) as gw:
        bob = await agent_socket(gw.base_url, "bob", "bob-demo", available=False)  # skills general, tech
        normal = [await caller_socket(gw.base_url, caller_token(sub=f"n{i}", queue="billing")) for i in range(2)]
        premium, premium_id = await caller_socket(gw.base_url, caller_token(sub="vip", queue="billing", tier="premium"))
        assert premium.of_type("call.queued")[0]["queue"] == "billing"
        assert premium.of_type("call.queued")[0]["position"] == 1  # ahead of the two who came first
        assert gw.board.calls[premium_id].priority == 10
        update = await normal[0][0].wait(lambda m: m["type"] == "queue.position" and m["position"] == 2)
        assert update["queue"] == "billing" and update["queue_length"] == 3
        default_caller, default_id = await caller_socket(gw.base_url, caller_token(sub="d1"))
        assert default_caller.of_type("call.queued")[0]["position"] == 1  # positions are per queue

        # bob (idle longest) lacks the billing skill: he gets the default call, alice the premium billing call.
        await bob.request({"type": "agent.status", "status": "available"})
        assert (await bob.wait("call.offered"))["call_id"] == default_id
        alice = await agent_socket(gw.base_url)
        offer = await alice.wait("call.offered")
        assert offer["call_id"] == premium_id and offer["card"]["queue"] == "billing"
        assert offer["card"]["priority"] == 10
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        await premium.request({"type": "call.hangup"})
        record = await api.ended_record(premium_id)
        assert record["queue"] == "billing" and record["priority"] == 10

        # An unknown queue in the token is refused with a stable code.
        ws = WsClient(gw.base_url, "/ws/caller")
        await ws.connect()
        await ws.request({"type": "hello", "token": caller_token(sub="x", queue="nope")})
        refused = await ws.request({"type": "call.start", "call_type": "voice"})
        assert refused["type"] == "error" and refused["code"] == "unknown_queue"
        for client in [ws, bob, alice, default_caller, premium, *(c for c, _ in normal)]:
            await client.close()
        await api.close()


async def test_two_ring_outs_set_the_agent_away_and_say_why(caller_token):
    async with running_gateway(ring_timeout_s=0.3, reoffer_after_decline_s=0.3) as gw:
        alice = await agent_socket(gw.base_url)
        caller, call_id = await caller_socket(gw.base_url, caller_token())
        first = await alice.wait("call.offered")
        assert (await alice.wait("call.offer_withdrawn"))["reason"] == "ring_timeout"
        back = await alice.wait(lambda m: m["type"] == "agent.status" and m.get("reason") == "ring_timeout")
        assert back["status"] == "available"  # one ring-out: still available
        again = await alice.wait(lambda m: m["type"] == "call.offered" and m is not first)
        assert again["call_id"] == call_id
        away = await alice.wait(lambda m: m["type"] == "agent.status" and m["status"] == "away", timeout=3)
        assert away["reason"] == "missed_call"
        assert gw.board.agents["alice"].status.value == "away"
        assert len(alice.of_type("call.offered")) == 2
        await caller.close()
        await alice.close()


async def test_after_hours_message_is_kept_with_the_record(caller_token):
    async with running_gateway(queues=[closed_today()]) as gw:
        alice = await agent_socket(gw.base_url)
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="night-owl", queue="support"))
        closed = await caller.wait("queue.closed")
        assert closed == {"type": "queue.closed", "call_id": call_id, "queue": "support", "reason": "after_hours",
                          "message": "Support answers 9-17 on weekdays.", "callback_available": True,
                          "message_allowed": True, "opens_at": closed["opens_at"], "seq": closed["seq"]}
        assert closed["opens_at"] is not None and closed["seq"] >= 1
        await asyncio.sleep(0.1)
        assert not alice.of_type("call.offered")  # alice is available, but the queue is closed
        too_long = await caller.request({"type": "message.leave", "call_id": call_id, "text": "x" * 2001})
        assert too_long["code"] == "invalid_message"
        ack = await caller.request({"type": "message.leave", "call_id": call_id,
                                    "text": "My card was blocked abroad, please call me."})
        assert ack["type"] == "ack"
        assert (await caller.wait("call.ended"))["reason"] == "message_left"
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        record = await api.ended_record(call_id)
        assert record["outcome"] == "after_hours" and record["closed_reason"] == "after_hours"
        assert record["message"] == "My card was blocked abroad, please call me."
        assert any(e["kind"] == "message_left" for e in record["events"])

        # Open but nobody staffed with the skill: the no_agents notice, and a message gives the outcome message_left.
        await alice.request({"type": "agent.status", "status": "away"})
        other, other_id = await caller_socket(gw.base_url, caller_token(sub="early"))
        assert (await other.wait("queue.closed"))["reason"] == "no_agents"
        await other.request({"type": "message.leave", "text": "Back tomorrow"})
        record = await api.ended_record(other_id)
        assert record["outcome"] == "message_left" and record["message"] == "Back tomorrow"
        for client in (caller, other, alice):
            await client.close()
        await api.close()


async def test_wrap_up_time_then_available(caller_token):
    # 2 s: long enough that the REST and message paths finish inside the window on a loaded machine.
    async with running_gateway(wrap_up_s=2.0) as gw:
        alice = await agent_socket(gw.base_url)
        api = Api(gw.base_url)
        await api.login("alice", "alice-demo")
        for how in ("timer", "rest", "message"):
            since = len(alice.messages)
            caller, call_id = await caller_socket(gw.base_url, caller_token(sub=f"w-{how}"))
            await alice.wait(lambda m: m["type"] == "call.offered", since=since)
            await alice.request({"type": "call.accept", "call_id": call_id})
            await caller.request({"type": "call.hangup"})
            wrap = await alice.wait(lambda m: m["type"] == "agent.status" and m["status"] == "wrap_up", since=since)
            assert wrap["call_id"] == call_id and wrap["wrap_up_s"] == 2.0
            # While wrapping up, a new call is not offered to her.
            waiting, waiting_id = await caller_socket(gw.base_url, caller_token(sub=f"next-{how}"))
            await asyncio.sleep(0.1)
            assert gw.board.calls[waiting_id].state.value == "queued"
            if how == "rest":
                await api.ended_record(call_id)
                status, body = await api.post(f"/api/v1/calls/{call_id}/wrap-up",
                                              {"disposition": "resolved", "notes": "card unblocked"})
                assert status == 200 and body["disposition"] == "resolved"
            elif how == "message":
                await api.ended_record(call_id)
                ack = await alice.request({"type": "wrap_up.submit", "call_id": call_id, "disposition": "callback"})
                assert ack["type"] == "ack"
            back = await alice.wait(lambda m: m["type"] == "agent.status" and m["status"] == "available"
                                    and m.get("reason", "").startswith("wrap_up"), since=since, timeout=10)
            assert back["reason"] == ("wrap_up_timeout" if how == "timer" else "wrap_up_done")
            offered = await alice.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == waiting_id,
                                       since=since)
            await alice.request({"type": "call.decline", "call_id": offered["call_id"]})
            await waiting.request({"type": "call.hangup"})
            await caller.close()
            await waiting.close()
        record = await api.ended_record(call_id)
        assert record["disposition"] == "callback"
        await alice.close()
        await api.close()


async def test_callback_keeps_the_place_tells_client_and_webhook_and_rejoins_with_media(caller_token):
    async with Receiver(fail_first=0) as receiver, running_gateway(
            queues=[{"name": "default", "callback_threshold_s": 60}]) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, _ = await admin.post("/api/v1/webhooks", {"url": receiver.url, "events": ["call.callback_ready"]})
        assert status == 201
        alice = Agent(gw.base_url)
        await alice.connect()
        first = Caller(gw.base_url, caller_token(sub="first"))
        await first.connect()
        await first.start("voice")
        offer = await alice.wait_offer()
        await alice.accept(offer["call_id"])  # alice is busy now

        token = caller_token(sub="cb-user", phone_number="+33 6 12 34 56 78")
        waiting = Caller(gw.base_url, token)
        await waiting.connect()
        queued = await waiting.start("voice", tone_hz=880)
        behind, behind_id = await caller_socket(gw.base_url, caller_token(sub="behind"))
        call_id = queued["call_id"]
        cb_offer = await waiting.ws.wait("callback.offer")  # 1 x 180 s estimated > 60 s threshold
        assert cb_offer["call_id"] == call_id and cb_offer["estimated_wait_s"] == 180
        accepted = await waiting.ws.request({"type": "callback.request", "call_id": call_id, "phone": "+33612345678"})
        assert accepted == {"type": "callback.accepted", "id": accepted["id"], "call_id": call_id, "position": 1}
        await waiting.ws.request({"type": "bye"})  # the caller leaves the app
        await waiting.close()
        await asyncio.sleep(0.3)
        assert gw.board.calls[call_id].state.value == "queued"  # still queued, still first
        assert gw.board.queue_positions()[behind_id][0] == 2

        since = len(alice.ws.messages)
        await first.hangup()
        card = await alice.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_id, since=since)
        assert card["card"]["callback"] is True and card["card"]["callback_phone"] == "+33612345678"
        await alice.peer.close()
        await alice.accept(call_id)
        await wait_until(lambda: any(json.loads(b)["event"] == "call.callback_ready" for _, b in receiver.requests))
        hook = next(json.loads(b) for _, b in receiver.requests if json.loads(b)["event"] == "call.callback_ready")
        assert hook["data"]["id"] == call_id and hook["data"]["subject"] == "cb-user"
        assert hook["data"]["callback"] is True

        # The app reopens the caller with the same token and takes its call back; media flows both ways.
        back = Caller(gw.base_url, token)
        await back.connect()
        rejoined = await back.ws.request({"type": "call.rejoin", "call_id": call_id})
        assert rejoined["type"] == "call.rejoined" and rejoined["state"] == "connected"
        assert rejoined["agent_name"] == "Alice (demo agent)"
        back.peer.pc.addTrack(ToneAudioTrack(880))
        answer = await back.ws.request({"type": "sdp.offer", "call_id": call_id, "sdp": await back.peer.offer()})
        await back.peer.answer(answer["sdp"])
        await wait_until(lambda: "audio" in alice.peer.sinks and len(alice.peer.sinks["audio"].audio) > 50, 15)
        assert abs(alice.peer.sinks["audio"].dominant_frequency() - 880) < 30
        await wait_until(lambda: "audio" in back.peer.sinks and len(back.peer.sinks["audio"].audio) > 50, 15)
        assert abs(back.peer.sinks["audio"].dominant_frequency() - 440) < 30

        # Someone else cannot rejoin it.
        thief = WsClient(gw.base_url, "/ws/caller")
        await thief.connect()
        await thief.request({"type": "hello", "token": caller_token(sub="other")})
        assert (await thief.request({"type": "call.rejoin", "call_id": call_id}))["code"] == "unknown_call"
        await thief.close()

        await back.hangup()
        record = await admin.ended_record(call_id)
        assert record["outcome"] == "answered" and record["callback"] is True
        assert record["callback_phone"] == "+33612345678" and record["rejoined_at"] is not None
        kinds = [e["kind"] for e in record["events"]]
        assert kinds.index("callback_requested") < kinds.index("callback_ready") < kinds.index("rejoined")
        for client in (back, first, alice, behind):
            await client.close()
        await admin.close()


async def test_callback_ready_reaches_a_caller_still_connected_and_expires_without_rejoin(caller_token):
    async with running_gateway(callback_rejoin_s=0.4) as gw:
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="stays"))
        await caller.request({"type": "callback.request", "call_id": call_id})
        again = await caller.request({"type": "callback.request", "call_id": call_id})
        assert again["code"] == "callback_requested"
        early = await caller.request({"type": "call.rejoin", "call_id": call_id})
        assert early["code"] == "callback_not_ready"
        alice = await agent_socket(gw.base_url)
        offer = await alice.wait("call.offered")
        await alice.request({"type": "call.accept", "call_id": offer["call_id"]})
        ready = await caller.wait("callback.ready")
        assert ready["call_id"] == call_id and ready["agent_name"] == "Alice (demo agent)"
        assert ready["rejoin_within_s"] == 0.4
        ended = await alice.wait("call.ended", timeout=3)  # nobody rejoined in time
        assert ended["reason"] == "callback_expired"
        api = Api(gw.base_url)
        await api.login("admin", "admin-demo")
        assert (await api.ended_record(call_id))["outcome"] == "callback_expired"
        await caller.close()
        await alice.close()
        await api.close()


async def test_many_callers_at_once_get_gap_free_positions(caller_token):
    async with running_gateway() as gw:
        count = 30

        async def one(i: int) -> tuple[WsClient, str]:
            return await caller_socket(gw.base_url, caller_token(sub=f"crowd-{i}"))

        callers = await asyncio.gather(*(one(i) for i in range(count)))
        first_positions = sorted(ws.of_type("call.queued")[0]["position"] for ws, _ in callers)
        assert first_positions == list(range(1, count + 1))

        def last_told() -> list[tuple[int, int]]:
            told = []
            for ws, call_id in callers:
                updates = [m for m in ws.messages if m.get("type") in ("queue.position", "call.queued")
                           and m.get("call_id") == call_id]
                told.append((updates[-1]["position"], updates[-1]["queue_length"]) if updates else (0, 0))
            return told

        await wait_until(lambda: sorted(p for p, _ in last_told()) == list(range(1, count + 1)))
        leaving = callers[3::5]
        await asyncio.gather(*(ws.request({"type": "call.hangup"}) for ws, _ in leaving))
        staying = [c for c in callers if c not in leaving]
        left = len(staying)

        def settled() -> bool:
            told = [last_told()[callers.index(c)] for c in staying]
            # Only callers whose place moved are told (the queue length alone is no reason to message everyone;
            # whoever is told hears the length of that moment).
            return sorted(p for p, _ in told) == list(range(1, left + 1))

        await wait_until(settled)
        # The order is first come, first served: positions follow the order of the engine's queue.
        order = [c.id for c in gw.board.queue.ordered()]
        told = {call_id: last_told()[callers.index((ws, call_id))][0] for ws, call_id in staying}
        assert [told[call_id] for call_id in order] == list(range(1, left + 1))
        for ws, _ in callers:
            await ws.close()


async def test_admin_queue_api_changes_routing_and_persists(caller_token, tmp_path):
    async with running_gateway(data_dir=str(tmp_path)) as gw:
        admin, agent_api = Api(gw.base_url), Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        await agent_api.login("alice", "alice-demo")
        status, body = await admin.get("/api/v1/queues")
        assert status == 200 and [q["name"] for q in body["queues"]] == ["default"]
        assert body["queues"][0]["open"] is True and body["queues"][0]["config"]["skills"] == []
        sales = {"name": "sales", "skills": ["sales"], "timezone": "America/New_York",
                 "hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}
        status, body = await agent_api.post("/api/v1/queues", sales)
        assert status == 403 and body["code"] == "forbidden"
        status, body = await admin.post("/api/v1/queues", {**sales, "timezone": "Nowhere/Land"})
        assert status == 422 and body["code"] == "invalid_body" and "unknown time zone" in body["reason"]
        status, body = await admin.post("/api/v1/queues", sales)
        assert status == 201 and body["name"] == "sales" and body["open"] is True and body["agents_staffed"] == 0
        status, body = await admin.post("/api/v1/queues", sales)
        assert status == 409 and body["code"] == "queue_exists"

        # No agent has the sales skill: a sales caller is told so. Giving alice the skill (next sign-in) routes it.
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="buyer", queue="sales"))
        assert (await caller.wait("queue.closed"))["reason"] == "no_agents"
        status, body = await admin.request("DELETE", "/api/v1/queues/sales")
        assert status == 409 and body["code"] == "queue_not_empty"
        status, body = await admin.request("PUT", "/api/v1/users/alice/routing", json={"skills": ["sales", "billing"]})
        assert status == 200 and body["skills"] == ["billing", "sales"]
        alice = await agent_socket(gw.base_url)
        assert (await alice.wait("call.offered"))["call_id"] == call_id
        await caller.request({"type": "call.hangup"})

        status, body = await admin.request("PUT", "/api/v1/queues/sales",
                                           json={"skills": ["sales"], "max_wait_s": 300, "name": "other"})
        assert status == 422 and "differs" in body["reason"]
        status, body = await admin.request("PUT", "/api/v1/queues/sales", json={"skills": ["sales"], "max_wait_s": 300})
        assert status == 200 and body["config"]["max_wait_s"] == 300 and body["config"]["hours"] == {}
        status, body = await admin.request("DELETE", "/api/v1/queues/default")
        assert status == 400 and body["code"] == "default_queue"
        for client in (caller, alice):
            await client.close()
        await admin.close()
        await agent_api.close()
    async with running_gateway(data_dir=str(tmp_path)) as gw:  # the stored queue is back after a restart
        assert gw.board.queues.get("sales").config.max_wait_s == 300
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.request("DELETE", "/api/v1/queues/sales")
        assert status == 200 and "sales" not in gw.board.queues
        await admin.close()
