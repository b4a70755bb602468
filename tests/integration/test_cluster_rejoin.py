"""A connected call whose node dies (issue 10, item 6): `kill -9` of the node that holds the call's media closes its
record as interrupted, and its caller, who reconnects to another node with its resume token, is put back at the front
of the line in a new call (told call.interrupted), ahead of a caller who was already waiting there; the next free
agent is offered it first. Real `callin serve` processes, a real redis-server, records in PostgreSQL."""

from __future__ import annotations

import pytest

from tests.integration.test_drain import resume_through
from tests.support.api import caller_socket
from tests.support.clients import Agent
from tests.support.cluster_nodes import accept, cluster, record_state


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_caller_cut_off_by_a_dead_node_rejoins_at_the_front(database_url, redis_url, tmp_path, caller_token):
    settings = {"node_dead_after_s": 3, "node_beat_s": 0.5, "media_workers": 0, "wrap_up_s": 0,
                "position_update_interval_s": 0}
    async with cluster(database_url, redis_url, tmp_path, **settings) as nodes:
        a, b = nodes.nodes
        alice = Agent(b.base_url)
        await alice.connect()
        nodes.closes(alice.ws)
        token = caller_token(sub="cut-off", name="Dana Caller")
        ws, old_id = await caller_socket(a.base_url, token)  # homed on A; alice (on B) answers it through B
        nodes.closes(ws)
        offer = await alice.wait_offer(timeout=20)
        assert offer["call_id"] == old_id
        await accept(alice.ws, ws, old_id)
        await record_state(database_url, old_id, "connected")  # what a reaping node will read
        await alice.ws.close()  # her console goes (she will be back): nobody takes the caller who waits meanwhile

        waiter, waiter_id = await caller_socket(b.base_url, caller_token(sub="waiting-on-b"))
        nodes.closes(waiter)
        first = await waiter.wait(lambda m: m.get("type") == "queue.position", timeout=10)
        assert first["position"] == 1, first

        a.kill()
        welcome = next(m for m in ws.messages if m["type"] == "welcome")
        await ws.close()
        back, again, _ = await resume_through(b.base_url, token, welcome["resume_token"], ws.last_seq, timeout=30)
        nodes.closes(back)
        assert again["resumed"] is True and again["call"]["state"] == "queued", again
        new_id = again["call"]["call_id"]
        assert new_id not in (old_id, waiter_id)
        told = await back.wait("call.interrupted", timeout=10)
        assert told["call_id"] == old_id and told["rejoined_call_id"] == new_id and told["reason"] == "node_lost"
        place = await back.wait(lambda m: m.get("type") == "queue.position" and m["call_id"] == new_id, timeout=10)
        assert place["position"] == 1, place  # ahead of the caller who was waiting on B before it
        moved = await waiter.wait(lambda m: m.get("type") == "queue.position" and m["position"] == 2, timeout=10)
        assert moved["call_id"] == waiter_id
        await record_state(database_url, old_id, "ended")  # the cut-off call's record is closed (interrupted)

        alice = Agent(b.base_url)  # back: offered the caller who was cut off first
        await alice.connect(available=False)
        nodes.closes(alice.ws)
        status = await alice.ws.request({"type": "agent.status", "status": "available"})
        assert status["type"] == "agent.status", status
        offer = await alice.wait_offer(timeout=20)
        assert offer["call_id"] == new_id and offer["card"]["identity"]["name"] == "Dana Caller", offer
        answered = await accept(alice.ws, back, new_id)
        assert answered["call_id"] == new_id
