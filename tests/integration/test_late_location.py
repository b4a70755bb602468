"""A location that arrives after the call started (call.location): a real gateway, a real aiortc caller and agent.
The agent rings without a location, gets it as an event while the call rings, sees it on the card it accepts;
the record (SQLite and PostgreSQL) and the webhooks carry it as they do a location given at call.start; a second
one and one after the end get typed errors and change nothing."""

from __future__ import annotations

import asyncio
import json

from tests.support.api import Api
from tests.support.clients import Agent, Caller, wait_until
from tests.support.loopback_http import Receiver
from tests.support.server import running_gateway

LATE = {"lat": 48.8566, "lon": 2.3522, "accuracy_m": 35.0, "timestamp": 1_795_468_254.0}
OTHER = {"lat": 52.52, "lon": 13.405, "accuracy_m": 5.0, "timestamp": 1_795_468_260.0}


async def test_a_location_sent_while_the_call_rings_reaches_the_agent_and_the_record(database_url, caller_token):
    async with Receiver(fail_first=0) as receiver, running_gateway(database_url=database_url) as gw:
        admin = Api(gw.base_url)
        await admin.login("admin", "admin-demo")
        status, body = await admin.post("/api/v1/api-keys", {"name": "crm"})
        integrator = Api(gw.base_url, bearer=body["key"])
        status, hook = await integrator.post("/api/v1/webhooks", {
            "url": receiver.url, "events": ["call.answered", "call.ended"]})
        assert status == 201, hook

        agent = Agent(gw.base_url)
        await agent.connect()
        caller = Caller(gw.base_url, caller_token(sub="late-loc", name="Dana"))
        await caller.connect()
        try:
            queued = await caller.start("voice")  # no location: the device has not answered yet
            call_id = queued["call_id"]
            offered = await agent.wait_offer()
            assert offered["call_id"] == call_id and offered["card"]["location"] is None

            mark = len(agent.ws.messages)
            ack = await caller.ws.request({"type": "call.location", "location": LATE})
            assert ack["type"] == "ack", ack
            event = await agent.ws.wait(lambda m: m["type"] == "call.location", since=mark)
            assert event["call_id"] == call_id and event["location"] == {**LATE, "source": "device"}
            assert gw.board.call(call_id).state.value == "offered"  # it arrived while the call rang

            accepted = await agent.accept(call_id)
            assert accepted["card"]["location"] == {**LATE, "source": "device"}
            await caller.ws.wait("call.answered")

            # once per call: a second one is refused and the first kept; the agent is told nothing more
            refused = await caller.ws.request({"type": "call.location", "call_id": call_id, "location": OTHER})
            assert refused["type"] == "error" and refused["code"] == "location_already_set", refused
            assert "once per call" in refused["reason"]
            bad = await caller.ws.request({"type": "call.location", "location": {**OTHER, "lat": 123}})
            assert bad["code"] == "invalid_message" and "location.lat must be at most 90" in bad["reason"], bad
            assert gw.board.call(call_id).location.lat == LATE["lat"]
            assert len(agent.ws.of_type("call.location")) == 1

            await caller.hangup()
            record = await admin.ended_record(call_id)
            assert record["location"] == {**LATE, "source": "device"}
            kinds = [e["kind"] for e in record["events"]]
            assert kinds.index("offered") < kinds.index("location") < kinds.index("connected")
            assert record["events"][kinds.index("location")]["detail"] == {"accuracy_m": 35.0}

            after = await caller.ws.request({"type": "call.location", "call_id": call_id, "location": OTHER})
            assert after["code"] == "call_ended", after

            await wait_until(lambda: {"call.answered", "call.ended"} <= set(receiver.events()), 15)
            payloads = {p["event"]: p["data"] for p in (json.loads(body) for _, body in receiver.requests)}
            assert payloads["call.answered"]["location"] == {**LATE, "source": "device"}
            assert payloads["call.ended"]["location"] == {**LATE, "source": "device"}
        finally:
            await caller.close()
            await agent.close()
            await asyncio.gather(admin.close(), integrator.close())


async def test_a_location_sent_while_queued_is_on_the_card_the_agent_is_offered(gateway, caller_token):
    caller = Caller(gateway.base_url, caller_token(sub="late-queued"))
    await caller.connect()
    agent = Agent(gateway.base_url)
    try:
        queued = await caller.start("voice")
        ack = await caller.ws.request({"type": "call.location", "call_id": queued["call_id"], "location": LATE})
        assert ack["type"] == "ack", ack
        await agent.connect()
        offered = await agent.wait_offer()
        assert offered["card"]["location"] == {**LATE, "source": "device"}
        assert not agent.ws.of_type("call.location")  # nobody saw the card while it waited: the offer carries it
    finally:
        await caller.close()
        await agent.close()
