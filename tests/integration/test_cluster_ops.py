"""Operating a cluster from any node (issue 10, leftovers): REST recording control of a call homed on another node
(forwarded to its home over the bus, its typed errors relayed as they are, 503 node_unreachable once the home is
dead), and /metrics of any node telling the cluster's queues (callers waiting, longest wait, staffing) and agents by
status. Real `callin serve` processes, a real redis-server, records in PostgreSQL, real aiortc peers."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.support.api import Api, agent_socket, caller_socket
from tests.support.clients import Agent, Caller
from tests.support.cluster_nodes import Cluster, accept, cluster
from tests.support.waiting import until

SETTINGS = {"node_dead_after_s": 3, "node_beat_s": 0.5, "media_workers": 0}


async def recording_on_demand(nodes: Cluster, gateway) -> Api:
    """The default queue set to record on demand (the caller notified) by the admin through `gateway`; returns the
    admin's Api there (closed at the end)."""
    admin = nodes.closes(Api(gateway.base_url))
    await admin.login("admin", "admin-demo")
    status, body = await admin.request("PUT", "/api/v1/queues/default",
                                       json={"recording": "on_demand", "recording_consent": "notify"})
    assert status == 200, body
    return admin


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_recording_control_from_a_node_that_is_not_the_calls_home(database_url, redis_url, tmp_path,
                                                                        caller_token):
    async with cluster(database_url, redis_url, tmp_path, **SETTINGS) as nodes:
        a, b = nodes.nodes
        admin = await recording_on_demand(nodes, a)
        status, key = await admin.post("/api/v1/api-keys", {"name": "payments"})
        assert status == 201, key
        payments_b = Api(b.base_url, bearer=key["key"])  # an integrator that reaches node B only
        nodes.closes(payments_b)

        agent = Agent(b.base_url)  # alice's console on B
        await agent.connect()
        nodes.closes(agent)
        caller = Caller(a.base_url, caller_token(sub="rec-cluster"))  # the call's home is A
        await caller.connect()
        nodes.closes(caller)
        await caller.start("voice", tone_hz=880.0)
        call_id = caller.call_id
        offer = await agent.wait_offer(timeout=20)
        assert offer["call_id"] == call_id
        await agent.accept(call_id, tone_hz=440.0)
        await caller.ws.wait("call.answered", timeout=15)

        # B does not hold the call: it asks A, and answers what A answered.
        status, state = await payments_b.get(f"/api/v1/calls/{call_id}/recording")
        assert status == 200 and state["call_id"] == call_id and state["state"] == "off", state
        assert state["policy"] == "on_demand"
        status, state = await payments_b.post(f"/api/v1/calls/{call_id}/recording/start")
        assert status == 200 and state["state"] in ("pending", "recording"), state
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "recording", timeout=15)
        await agent.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "recording", timeout=15)

        alice_b = Api(b.base_url)  # the call's agent herself, over REST on B
        nodes.closes(alice_b)
        await alice_b.login("alice", "alice-demo")
        status, state = await alice_b.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 200 and state["state"] == "paused" and len(state["paused_spans"]) == 1, state
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "paused", timeout=15)

        # Typed errors of the home come back as they are.
        status, body = await payments_b.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 409 and body["code"] == "recording_paused", body
        bob_b = Api(b.base_url)
        nodes.closes(bob_b)
        await bob_b.login("bob", "bob-demo")
        status, body = await bob_b.post(f"/api/v1/calls/{call_id}/recording/resume")
        assert status == 403 and body["code"] == "not_your_call", body
        # The call's views answer on B as on its home: its events and its caller's earlier calls, to its agent;
        # an agent not in the call is told it does not exist.
        status, history = await alice_b.get(f"/api/v1/calls/{call_id}/history?limit=5")
        assert status == 200 and history["call_id"] == call_id and history["total"] >= 3, history
        assert 0 < len(history["events"]) <= 5 and {"kind", "at"} <= set(history["events"][-1]), history
        if history["next_before"] is not None:  # the page before: older events, ending just before this page
            status, page = await alice_b.get(
                f"/api/v1/calls/{call_id}/history?before={history['next_before']}&limit=5")
            assert status == 200 and page["events"][-1]["seq"] == history["events"][0]["seq"] - 1, page
        status, earlier = await alice_b.get(f"/api/v1/calls/{call_id}/contact-history")
        assert status == 200 and earlier["call_id"] == call_id and earlier["subject"] == "rec-cluster", earlier
        for path in ("history", "contact-history"):
            status, body = await bob_b.get(f"/api/v1/calls/{call_id}/{path}")
            assert status == 404 and body["code"] == "unknown_call", (path, body)
        status, body = await alice_b.get("/api/v1/calls/0123456789abcdef/history")
        assert status == 404 and body["code"] == "unknown_call", body

        status, body = await payments_b.post("/api/v1/calls/0123456789abcdef/recording/pause")
        assert status == 404 and body["code"] == "unknown_call", body
        status, body = await payments_b.post(f"/api/v1/calls/{'x' * 300}/recording/pause")
        assert status == 404 and body["code"] == "unknown_call", body

        status, state = await payments_b.post(f"/api/v1/calls/{call_id}/recording/resume")
        assert status == 200 and state["state"] == "recording", state
        await caller.ws.wait(lambda m: m.get("type") == "recording.state" and m["state"] == "recording"
                             and m.get("by") == "api", timeout=15)
        payments_a = Api(a.base_url, bearer=key["key"])
        nodes.closes(payments_a)
        status, state = await payments_a.get(f"/api/v1/calls/{call_id}/recording")
        assert status == 200 and state["state"] == "recording" and len(state["paused_spans"]) == 1, state

        # The home dies: B answers a typed 503 (at once once A is found dead, else after the forwarding timeout).
        a.kill()
        status, body = await payments_b.post(f"/api/v1/calls/{call_id}/recording/pause")
        assert status == 503 and body["code"] == "node_unreachable", body
        status, body = await alice_b.get(f"/api/v1/calls/{call_id}/history")
        assert status == 503 and body["code"] == "node_unreachable", body


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of one metric in a /metrics page: its labels as written ("" without labels) -> value."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            found[key[len(name):]] = float(value)
    return found


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_metrics_of_every_node_tell_the_clusters_queues_and_agents(database_url, redis_url, tmp_path,
                                                                         caller_token):
    """Per queue, callers waiting and the longest wait over every node; agents by status over every node; read from
    either node's /metrics, and a killed node's share drops out."""
    async with cluster(database_url, redis_url, tmp_path, **SETTINGS) as nodes:
        a, b = nodes.nodes
        alice = await agent_socket(a.base_url, "alice", "alice-demo", available=False)  # away, on A
        bob = await agent_socket(b.base_url, "bob", "bob-demo", available=False)  # away, on B
        nodes.closes(alice)
        nodes.closes(bob)
        first_at = time.time()
        first, _ = await caller_socket(a.base_url, caller_token(sub="first-in-line"))  # waits on A
        second, _ = await caller_socket(b.base_url, caller_token(sub="second-in-line"))  # waits on B
        nodes.closes(first)
        nodes.closes(second)
        sam = await agent_socket(b.base_url, "sam", "sam-demo", available=False)  # a supervisor, away on B
        nodes.closes(sam)

        async def page(base: str) -> str:
            async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as r:
                assert r.status == 200
                return await r.text()

        async def summed(base: str) -> bool:
            text = await page(base)
            waiting = samples(text, "callin_cluster_queue_waiting")
            statuses = samples(text, "callin_cluster_agents_by_status")
            return waiting.get('{queue="default"}') == 2 and statuses.get('{status="away"}') == 3

        for base in (a.base_url, b.base_url):
            await until(lambda base=base: summed(base), 20, interval=0.2,
                        message=f"the cluster's queues and agents in {base}/metrics")
        text = await page(b.base_url)
        longest = samples(text, "callin_cluster_queue_longest_wait_seconds")['{queue="default"}']
        assert 0 < longest <= time.time() - first_at + 1, longest  # the first caller's wait, who waits on A
        assert samples(text, "callin_cluster_agents_by_status")['{status="available"}'] == 0
        assert samples(text, "callin_cluster_queue_agents")['{kind="staffed",queue="default"}'] == 0  # all away
        # the per-node line and statuses are cluster-wide, the node's own callin_queue_length is not
        assert samples(text, "callin_queue_length")[""] == 1

        # B's agent goes available: the waiting callers are offered; the counts follow on A.
        await bob.request({"type": "agent.status", "status": "available"})

        async def ringing() -> bool:
            text = await page(a.base_url)
            statuses = samples(text, "callin_cluster_agents_by_status")
            staff = samples(text, "callin_cluster_queue_agents")
            return statuses.get('{status="ringing"}') == 1 and statuses.get('{status="away"}') == 2 \
                and staff.get('{kind="staffed",queue="default"}') == 1

        await until(ringing, 20, interval=0.2, message="bob ringing, in A's /metrics")

        a.kill()  # A's callers and agents drop out of the cluster's counts

        async def without_a() -> bool:
            text = await page(b.base_url)
            statuses = samples(text, "callin_cluster_agents_by_status")
            return statuses.get('{status="away"}') == 1 and samples(text, "callin_cluster_nodes")[""] == 1

        await until(without_a, 20, interval=0.2, message="A's share gone from B's /metrics")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_call_restored_on_another_node_is_reached_there_from_a_third(database_url, redis_url, tmp_path,
                                                                              caller_token):
    """A waiting caller of A (killed -9) restored on B or C (whichever found A dead first; the caller resumes through
    a balancer in front of both): its home is that node now, for every node — the other one forwards REST about it
    there (not to dead A: that would be 503 node_unreachable), and an agent on the other one answers it."""
    from tests.integration.test_drain import resume_through
    from tests.support.balancer import RoundRobin

    async with cluster(database_url, redis_url, tmp_path, "abc", **SETTINGS) as nodes:
        a, b, c = nodes.nodes
        lb = nodes.closes(RoundRobin([b.port, c.port]))
        await lb.start()
        admin = await recording_on_demand(nodes, b)
        token = caller_token(sub="restored-elsewhere")
        ws, call_id = await caller_socket(a.base_url, token)
        nodes.closes(ws)
        welcome = next(m for m in ws.messages if m["type"] == "welcome")
        await ws.wait(lambda m: m.get("type") == "queue.position", timeout=10)
        a.kill()
        await ws.close()
        back, again, _ = await resume_through(lb.base_url, token, welcome["resume_token"], ws.last_seq, timeout=30)
        nodes.closes(back)
        assert again["call"]["call_id"] == call_id, again
        homes: list[str] = []

        async def restored_on() -> bool:
            status, body = await admin.get("/api/v1/nodes")
            homes[:] = [n["name"] for n in body["nodes"] if n["alive"] and n["waiting"] == 1]
            return status == 200 and len(homes) == 1

        await until(restored_on, 10, interval=0.2, message="the node that restored the caller in the registry")
        assert homes in (["node-b"], ["node-c"]), homes
        other = c if homes == ["node-b"] else b
        payments = Api(other.base_url)
        nodes.closes(payments)
        await payments.login("admin", "admin-demo")

        async def from_other() -> bool:
            status, state = await payments.get(f"/api/v1/calls/{call_id}/recording")
            assert status in (200, 503), (status, state)  # 503 until the new home has written itself
            return status == 200 and state["call_id"] == call_id and state["policy"] == "on_demand"

        await until(from_other, 15, interval=0.3, message="the other node reaches the restored call")

        agent = Agent(other.base_url)  # alice on the other node answers it
        nodes.closes(agent)
        await agent.connect()
        offer = await agent.wait_offer(timeout=20)
        assert offer["call_id"] == call_id
        await accept(agent.ws, back, call_id, timeout=15)
        status, state = await payments.post(f"/api/v1/calls/{call_id}/recording/start")
        assert status == 200 and state["state"] in ("pending", "recording"), (status, state)
        told = await back.wait(lambda m: m.get("type") == "recording.state" and m["state"] in ("pending", "recording"),
                               timeout=15)
        assert told["call_id"] == call_id
