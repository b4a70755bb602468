"""The agent's desk through the real server: the directory of colleagues and queues an agent may read, callbacks and
messages in the agent's own queues (take one now, mark one handled), the earlier calls of the caller on the line
(only for a call ringing at or handled by the agent), and wrap-up kept while a note is unsaved (wrap_up.extend)."""

from __future__ import annotations

import asyncio
import time

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.server import running_gateway

TECH = {"name": "tech", "skills": ["tech"]}  # bob has the skill, alice has not


async def logged_in(base_url: str, *names: str) -> dict[str, Api]:
    apis = {}
    for name in names:
        apis[name] = Api(base_url)
        status, body = await apis[name].login(name, f"{name}-demo")
        assert status == 200, body
    return apis


async def test_the_directory_lists_colleagues_and_queues_with_status_and_no_admin_data(caller_token):
    async with running_gateway(queues=[TECH]) as gw:
        bob = await agent_socket(gw.base_url, "bob", "bob-demo")  # available
        apis = await logged_in(gw.base_url, "alice", "admin")
        status, body = await apis["alice"].get("/api/v1/directory")
        assert status == 200, body
        agents = {a["username"]: a for a in body["agents"]}
        assert "alice" not in agents  # not herself
        assert agents["bob"] == {"username": "bob", "display_name": "Bob (demo agent)", "status": "available",
                                 "queues": ["default", "tech"]}
        assert agents["sam"]["status"] == "offline"
        assert body["agents"][0]["username"] == "bob"  # available colleagues first
        assert all(set(a) == {"username", "display_name", "status", "queues"} for a in body["agents"])
        queues = {q["name"]: q for q in body["queues"]}
        assert queues["tech"] == {"name": "tech", "open": True, "waiting": 0, "agents_available": 1,
                                  "agents_staffed": 1}

        # live: bob goes away, and the next read says so
        await bob.request({"type": "agent.status", "status": "away"})
        status, body = await apis["alice"].get("/api/v1/directory")
        assert {a["username"]: a["status"] for a in body["agents"]}["bob"] == "away"

        # an integrator's API key is not a colleague; no sign-in is 401
        status, key = await apis["admin"].post("/api/v1/api-keys", {"name": "crm"})
        assert status == 201, key
        integrator = Api(gw.base_url, bearer=key["key"])
        for path in ("/api/v1/directory", "/api/v1/agent/inbox", "/api/v1/calls/x/contact-history"):
            status, body = await integrator.get(path)
            assert status == 403 and body["code"] == "forbidden", (path, body)
        status, body = await integrator.post("/api/v1/callbacks/x/take")
        assert status == 403 and body["code"] == "forbidden"
        anonymous = Api(gw.base_url)
        status, body = await anonymous.get("/api/v1/directory")
        assert status == 401
        for api in (*apis.values(), integrator, anonymous):
            await api.close()
        await bob.close()


async def test_callbacks_and_messages_are_listed_for_the_queues_an_agent_serves(caller_token, database_url):
    async with running_gateway(queues=[TECH], database_url=database_url) as gw:  # SQLite and PostgreSQL
        alice = await agent_socket(gw.base_url, "alice", "alice-demo")
        apis = await logged_in(gw.base_url, "alice", "bob", "sam")

        # a message left in tech (nobody staffed there): bob and the supervisor see it, alice does not
        tech_caller, tech_id = await caller_socket(gw.base_url, caller_token(sub="tech-1", name="Tess Tech",
                                                                              queue="tech"))
        assert (await tech_caller.wait("queue.closed"))["reason"] == "no_agents"
        await tech_caller.request({"type": "message.leave", "text": "<b>Router</b> keeps rebooting"})
        await apis["sam"].ended_record(tech_id)
        status, box = await apis["alice"].get("/api/v1/agent/inbox")
        assert status == 200 and box == {"callbacks": [], "messages": []}
        status, box = await apis["bob"].get("/api/v1/agent/inbox")
        assert status == 200 and [m["call_id"] for m in box["messages"]] == [tech_id]
        assert box["messages"][0]["message"] == "<b>Router</b> keeps rebooting"  # text as left; the console escapes
        assert box["messages"][0]["caller"] == "Tess Tech" and box["messages"][0]["queue"] == "tech"
        status, box = await apis["sam"].get("/api/v1/agent/inbox")
        assert [m["call_id"] for m in box["messages"]] == [tech_id]

        # alice may not mark a message of a queue she does not serve; bob may, once
        status, body = await apis["alice"].post(f"/api/v1/messages/{tech_id}/handled", {"notes": "x"})
        assert status == 404 and body["code"] == "unknown_message"
        status, record = await apis["bob"].post(f"/api/v1/messages/{tech_id}/handled", {"notes": "Called back, fixed"})
        assert status == 200 and record["wrapped_up_by"] == "bob" and record["disposition"] == "message_handled"
        assert record["notes"] == "Called back, fixed"
        status, body = await apis["sam"].post(f"/api/v1/messages/{tech_id}/handled", {})
        assert status == 409 and body["code"] == "message_handled" and "bob" in body["reason"]
        status, box = await apis["bob"].get("/api/v1/agent/inbox")
        assert box["messages"] == []
        status, body = await apis["bob"].post(f"/api/v1/messages/{tech_id}/handled", {"notes": 5})
        assert status == 422 and body["code"] == "invalid_body"

        # a callback request in alice's queue: it rings at her, she declines by mistake, takes it from her list
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="cb-1", name="Carl Callback"))
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id)
        await caller.request({"type": "callback.request", "call_id": call_id, "phone": "+49 30 1234"})
        assert (await alice.request({"type": "call.decline", "call_id": call_id}))["type"] == "ack"
        status, box = await apis["alice"].get("/api/v1/agent/inbox")
        assert status == 200 and [c["call_id"] for c in box["callbacks"]] == [call_id]
        assert box["callbacks"][0]["phone"] == "+49 30 1234" and box["callbacks"][0]["ringing_at"] is None
        status, box = await apis["bob"].get("/api/v1/agent/inbox")
        assert [c["call_id"] for c in box["callbacks"]] == [call_id]  # default queue: bob serves it too
        since = len(alice.messages)
        status, body = await apis["alice"].post(f"/api/v1/callbacks/{call_id}/take")
        assert status == 200 and body == {"call_id": call_id, "ringing_at": "alice"}, body
        offered = await alice.wait(lambda m: m.get("type") == "call.offered", since=since)
        assert offered["call_id"] == call_id and offered["card"]["callback"] is True
        status, body = await apis["bob"].post(f"/api/v1/callbacks/{call_id}/take")
        assert status == 409 and body["code"] == "not_signed_in", body  # bob has no console open
        bob = await agent_socket(gw.base_url, "bob", "bob-demo")
        status, body = await apis["bob"].post(f"/api/v1/callbacks/{call_id}/take")
        assert status == 409 and body["code"] == "callback_ringing", body
        await bob.close()
        status, body = await apis["bob"].post("/api/v1/callbacks/nope/take")
        assert status == 409 and body["code"] == "callback_gone"
        for api in apis.values():
            await api.close()
        for ws in (alice, caller, tech_caller):
            await ws.close()


async def test_contact_history_only_for_a_call_ringing_at_or_handled_by_the_agent(caller_token, database_url):
    async with running_gateway(database_url=database_url) as gw:  # SQLite and PostgreSQL
        alice = await agent_socket(gw.base_url, "alice", "alice-demo")
        apis = await logged_in(gw.base_url, "alice", "bob", "sam")
        # an earlier call of the same signed caller, wrapped up by alice
        first, first_id = await caller_socket(gw.base_url, caller_token(sub="repeat", name="Rita Repeat"))
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == first_id)
        await alice.request({"type": "call.accept", "call_id": first_id})
        await first.request({"type": "call.hangup"})
        await apis["alice"].ended_record(first_id)
        status, body = await apis["alice"].post(f"/api/v1/calls/{first_id}/wrap-up",
                                                {"disposition": "resolved", "notes": "Reset the PIN"})
        assert status == 200, body
        other, other_id = await caller_socket(gw.base_url, caller_token(sub="someone-else"))
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == other_id)
        await other.request({"type": "call.hangup"})

        again, again_id = await caller_socket(gw.base_url, caller_token(sub="repeat", name="Rita Repeat"))
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == again_id)
        status, body = await apis["alice"].get(f"/api/v1/calls/{again_id}/contact-history")
        assert status == 200, body
        assert body["subject"] == "repeat" and [c["call_id"] for c in body["calls"]] == [first_id]
        assert body["calls"][0]["notes"] == "Reset the PIN" and body["calls"][0]["outcome"] == "answered"
        assert body["calls"][0]["agent"] == "alice" and body["calls"][0]["disposition"] == "resolved"
        # bob: the call is not ringing at him nor his: not found, nothing of it told
        status, body = await apis["bob"].get(f"/api/v1/calls/{again_id}/contact-history")
        assert status == 404 and body["code"] == "unknown_call" and "PIN" not in str(body)
        status, body = await apis["sam"].get(f"/api/v1/calls/{again_id}/contact-history")
        assert status == 200 and [c["call_id"] for c in body["calls"]] == [first_id]
        # an ended call is no way to read arbitrary subjects
        status, body = await apis["alice"].get(f"/api/v1/calls/{first_id}/contact-history")
        assert status == 404
        for api in apis.values():
            await api.close()
        for ws in (alice, first, other, again):
            await ws.close()


async def test_wrap_up_is_kept_while_the_note_is_unsaved_up_to_its_limit(caller_token):
    async with running_gateway(wrap_up_s=1.5, wrap_up_max_s=4.0) as gw:
        alice = await agent_socket(gw.base_url, "alice", "alice-demo")
        caller, call_id = await caller_socket(gw.base_url, caller_token(sub="w1"))
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id)
        await alice.request({"type": "call.accept", "call_id": call_id})
        await caller.request({"type": "call.hangup"})
        await alice.wait(lambda m: m.get("type") == "agent.status" and m["status"] == "wrap_up")
        began = time.monotonic()
        waiting, waiting_id = await caller_socket(gw.base_url, caller_token(sub="w2"))
        # the console keeps extending while the note is unsaved: no call is offered past wrap_up_s, and the time
        # granted shrinks so that wrap-up never outlasts wrap_up_max_s
        grants = []
        while not [m for m in alice.of_type("call.offered") if m["call_id"] == waiting_id]:
            reply = await alice.request({"type": "wrap_up.extend", "call_id": call_id})
            if reply["type"] == "error":
                assert reply["code"] in ("not_wrapping_up", "wrap_up_limit"), reply
                break
            assert reply["type"] == "agent.status" and reply["status"] == "wrap_up", reply
            assert reply["reason"] == "wrap_up_extended" and 0 < reply["wrap_up_s"] <= 1.5
            assert time.monotonic() - began + reply["wrap_up_s"] <= 4.0 + 0.3, grants
            grants.append(reply["wrap_up_s"])
            await asyncio.sleep(0.4)
        assert len(grants) >= 4 and grants[-1] < 1.5, grants
        await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == waiting_id)
        assert time.monotonic() - began > 2.0  # well past wrap_up_s (1.5 s): the extensions held the call back
        wrong = await alice.request({"type": "wrap_up.extend", "call_id": call_id})
        assert wrong["type"] == "error" and wrong["code"] == "not_wrapping_up"
        for ws in (alice, caller, waiting):
            await ws.close()
