"""Who may read a call record: the agents who handled the call, supervisors and admins; not an agent at whom the
call only rang."""

from __future__ import annotations

from tests.support.api import Api, agent_socket, caller_socket


async def test_an_agent_the_call_only_rang_at_cannot_read_the_record(gateway, caller_token):
    alice = await agent_socket(gateway.base_url, "alice", "alice-demo", available=False)
    bob = await agent_socket(gateway.base_url, "bob", "bob-demo")
    caller, call_id = await caller_socket(gateway.base_url, caller_token(sub="scoped"))
    await bob.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id)
    assert (await bob.request({"type": "call.decline", "call_id": call_id}))["type"] == "ack"
    await bob.request({"type": "agent.status", "status": "away"})
    await alice.request({"type": "agent.status", "status": "available"})
    await alice.wait(lambda m: m.get("type") == "call.offered" and m["call_id"] == call_id)
    await alice.request({"type": "call.accept", "call_id": call_id})
    await caller.request({"type": "call.hangup"})

    apis = {name: Api(gateway.base_url) for name in ("alice", "bob", "sam", "admin")}
    for name, api in apis.items():
        assert (await api.login(name, f"{name}-demo"))[0] == 200
    record = await apis["alice"].ended_record(call_id)
    assert record["agents"] == ["bob", "alice"]  # it rang at both
    status, body = await apis["alice"].post(f"/api/v1/calls/{call_id}/wrap-up",
                                            {"disposition": "resolved", "notes": "private notes of alice"})
    assert status == 200 and body["notes"] == "private notes of alice"

    status, body = await apis["bob"].get(f"/api/v1/calls/{call_id}")
    assert status == 404 and body["code"] == "unknown_call" and "private" not in str(body)
    status, page = await apis["bob"].get("/api/v1/calls")
    assert status == 200 and call_id not in {c["id"] for c in page["calls"]}
    for name in ("alice", "sam", "admin"):
        status, body = await apis[name].get(f"/api/v1/calls/{call_id}")
        assert status == 200 and body["notes"] == "private notes of alice", (name, body)
    for api in apis.values():
        await api.close()
    for ws in (alice, bob, caller):
        await ws.close()
