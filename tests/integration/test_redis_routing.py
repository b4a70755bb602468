"""Routing exactly once across nodes (issue 10, item 3), on a real redis-server: three node processes dispatch the
same 200 calls to 24 agents at the same time, their agents accepting, declining and hanging up at random; the log of
every routing change (written by the same atomic scripts that make them) shows that no call was ever offered to two
agents at once and no agent rung for two calls, that skills were respected, and that every call was answered and
ended exactly once. The store's own rules (skills, liveness, places kept on a decline) are tested first."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from gateway.store.redis_routing import RedisRouting

ROOT = Path(__file__).resolve().parents[2]


async def test_a_claim_needs_a_waiting_call_and_an_available_alive_skilled_agent(redis_url):
    redis = Redis.from_url(redis_url)
    a, b = RedisRouting(redis, "node-a"), RedisRouting(redis, "node-b")
    try:
        now = time.time()
        await a.join("c1", "billing", 0, now, ["billing"])
        await a.join("c2", "default", 5, now + 1, [])  # higher priority: answered first although younger
        assert [w.call_id for w in await a.waiting()] == ["c2", "c1"]
        await b.agent_online("sam", ["general"], ttl_s=5)
        assert not await b.claim("c2", "default", "sam", now)  # away: not offered
        await b.set_available("sam", now)
        assert not await b.claim("c1", "billing", "sam", now)  # lacks the line's skill
        assert await b.claim("c2", "default", "sam", now) == 1
        assert not await a.claim("c2", "default", "sam", now)  # taken: the second claim of the race loses
        assert (await a.call_state("c2"))["agent"] == "sam" and (await a.agent_state("sam"))["status"] == "ringing"
        # Declined: the call waits again at its old place, the agent is available again.
        await a.join("c3", "default", 5, now + 2, [])
        assert await b.release("c2", "default", "sam", now + 3) > 1
        assert [w.call_id for w in await a.waiting()] == ["c2", "c3", "c1"]
        assert [x.username for x in await a.available()] == ["sam"]
        # A console that stopped heartbeating is not offered calls.
        await b.agent_online("ann", ["billing"], ttl_s=0.2)
        await b.set_available("ann", now)
        await asyncio.sleep(0.4)
        assert "ann" not in [x.username for x in await a.available()]
        assert not await a.claim("c1", "billing", "ann", now)
        # Accept, end: the agent is free, the call out of every line.
        assert await a.claim("c2", "default", "sam", now) and await a.accept("c2", "sam")
        assert (await a.agent_state("sam"))["status"] == "busy"
        assert await a.end("c2", now + 10)
        assert (await a.agent_state("sam"))["status"] == "available" and not await a.end("c2", now + 11)
        assert [w.call_id for w in await a.waiting()] == ["c3", "c1"]
    finally:
        await redis.aclose()


async def test_three_nodes_dispatching_at_once_never_offer_twice(redis_url):
    redis = Redis.from_url(redis_url)
    routing = RedisRouting(redis, "test")
    calls = 200
    try:
        now = time.time()
        for i in range(calls):
            billing = i % 4 == 0
            await routing.join(f"call{i:03d}", "billing" if billing else "default", i % 3, now + i / 1000,
                               ["billing"] if billing else [])
        # 24 agents, 8 per node; a third of them have the billing skill.
        agents = {f"node{n}": [f"a{n}{i}" + (":billing" if i % 3 == 0 else "") for i in range(8)] for n in range(3)}
        skills = {entry.partition(":")[0]: set(filter(None, entry.partition(":")[2].split("+")))
                  for entries in agents.values() for entry in entries}
        nodes = [subprocess.Popen([sys.executable, "-m", "tests.support.routing_node", "--redis", redis_url,
                                   "--node", node, "--agents", ",".join(entries), "--seed", str(seed)], cwd=ROOT)
                 for seed, (node, entries) in enumerate(agents.items())]
        try:
            deadline = time.monotonic() + 240
            while True:
                log = await routing.log()
                ended = {e["call"] for e in log if e["op"] == "end"}
                if len(ended) == calls:
                    break
                assert all(p.poll() is None for p in nodes), "a node process exited"
                assert time.monotonic() < deadline, f"only {len(ended)} of {calls} calls ended"
                await asyncio.sleep(0.5)
        finally:
            await redis.set(routing.prefix + "stop", 1)
            for process in nodes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        log = await routing.log()
        ringing: dict[str, str] = {}  # agent -> the call it holds (offered or connected)
        holder: dict[str, str] = {}  # call -> the agent it is offered to or connected with
        for entry in log:  # the stream's order is the order Redis applied the scripts in
            call, agent, op = entry["call"], entry["agent"], entry["op"]
            if op == "offer":
                assert call not in holder, f"{call} offered to {agent} while held by {holder.get(call)}"
                assert agent not in ringing, f"{agent} rung for {call} while holding {ringing.get(agent)}"
                want = {"billing"} if int(call[4:]) % 4 == 0 else set()
                assert want <= skills[agent], f"{call} needs {want}, offered to {agent} with {skills[agent]}"
                holder[call], ringing[agent] = agent, call
            elif op in ("release", "accept"):
                assert holder.get(call) == agent and ringing.get(agent) == call, entry
                if op == "release":
                    del holder[call], ringing[agent]
            elif op == "end":
                if call in holder:
                    del ringing[holder.pop(call)]
        ops = Counter((e["op"], e["call"]) for e in log)
        assert all(ops[("accept", f"call{i:03d}")] == 1 and ops[("end", f"call{i:03d}")] == 1 for i in range(calls))
        offers_by_node = Counter(e["node"] for e in log if e["op"] == "offer")
        assert set(offers_by_node) == set(agents), offers_by_node  # every node took part in the race
        assert sum(1 for e in log if e["op"] == "release") > 0  # declines happened: calls were offered again
    finally:
        await redis.aclose()
