"""Chat is bounded: lines per sender per call, a rate per sender, and the agent's card carries only the newest
events (the rest are paged from GET /api/v1/calls/{id}/history)."""

from __future__ import annotations

import asyncio
import json
import time

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.server import running_gateway


async def test_chat_while_queued_is_bounded_and_the_card_stays_small(caller_token):
    async with running_gateway(chat_max_lines_per_call=25, card_history_events=10) as gw:
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="chatty"))
        line = "x" * 2000
        answers = [await caller.request({"type": "chat.send", "text": f"{i:04d}{line[4:]}"}) for i in range(30)]
        assert [a["type"] for a in answers[:25]] == ["ack"] * 25
        assert {a["code"] for a in answers[25:]} == {"chat_limit_reached"}
        assert all(a["retryable"] is False and "25" in a["reason"] for a in answers[25:])
        call = gw.board.calls[call_id]
        assert sum(1 for e in call.events if e.kind == "chat") == 25

        alice = await agent_socket(gw.base_url)
        offer = await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id)
        card = offer["card"]
        assert len(card["history"]) == 10 and card["history_omitted"] == len(call.events) - 10
        assert card["history"][-1]["seq"] == len(call.events) - 1
        assert len(json.dumps(offer)) < 40_000

        # the ringing agent pages the rest, newest first
        api = Api(gw.base_url)
        await api.login("alice", "alice-demo")
        events, before = [], None
        while True:
            status, page = await api.get(f"/api/v1/calls/{call_id}/history",
                                         params={"limit": 7, **({"before": before} if before is not None else {})})
            assert status == 200, page
            events = page["events"] + events
            before = page["next_before"]
            if before is None:
                break
        assert [e["seq"] for e in events] == list(range(len(call.events)))
        assert [e["text"][:4] for e in events if e["kind"] == "chat"] == [f"{i:04d}" for i in range(25)]
        # an agent the call does not ring at cannot read it
        bob = Api(gw.base_url)
        await bob.login("bob", "bob-demo")
        status, body = await bob.get(f"/api/v1/calls/{call_id}/history")
        assert status == 404 and body["code"] == "unknown_call"
        # the agent may still chat once connected: the limit is per sender
        await alice.request({"type": "call.accept", "call_id": call_id})
        assert (await alice.request({"type": "chat.send", "call_id": call_id, "text": "hello"}))["type"] == "ack"
        await caller.request({"type": "call.hangup"})
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        record = await admin.ended_record(call_id)
        assert sum(1 for e in record["events"] if e["kind"] == "chat") == 26
        for client in (api, bob, admin):
            await client.close()
        await alice.close()
        await caller.close()


async def test_chat_rate_per_sender(caller_token):
    async with running_gateway(chat_burst=3, chat_lines_per_minute=120) as gw:
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="fast"))
        for i in range(3):
            assert (await caller.request({"type": "chat.send", "text": f"line {i}"}))["type"] == "ack"
        error = await caller.request({"type": "chat.send", "text": "one too many"})
        assert error["code"] == "chat_rate_limited" and error["retryable"] is True and "try again in" in error["reason"]
        chats = sum(1 for e in gw.board.calls[call_id].events if e.kind == "chat")
        assert chats == 3  # the refused line was not kept
        deadline = time.monotonic() + 5  # two a second come back
        while (answer := await caller.request({"type": "chat.send", "text": "later"}))["type"] != "ack":
            assert answer["code"] == "chat_rate_limited" and time.monotonic() < deadline, answer
            await asyncio.sleep(0.1)
        await caller.close()
