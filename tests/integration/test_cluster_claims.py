"""A claim never outlives its claimer nor its deadline (issue 10): real `callin serve` nodes, a real redis-server,
records in PostgreSQL. The home node of a call claims an agent of another node (the `claim_agent` script marks her
ringing in Redis), and its offer never reaches her node: the home's Redis user loses the right to PUBLISH (an ACL
change, so that every message it sends to other nodes is lost, deterministically: pub/sub is at most once). Her node
refuses to free her while the claim holds (a late status write never frees a ringing agent); it frees her when the
claimer is found dead (kill -9) or the claim's deadline passed, and she is offered the next call."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from tests.support.api import caller_socket
from tests.support.clients import Agent
from tests.support.cluster_nodes import Cluster, accept, cluster
from tests.support.waiting import until

HOME_USER, HOME_PASSWORD = "home-node", "home-secret"


async def home_user(redis: Redis, redis_url: str) -> str:
    """A Redis user with every right, for the home node: its URL (the test takes PUBLISH away from it later)."""
    await redis.execute_command("ACL", "SETUSER", HOME_USER, "on", f">{HOME_PASSWORD}", "~*", "&*", "+@all")
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(netloc=f"{HOME_USER}:{HOME_PASSWORD}@{parts.netloc}"))


async def muzzle(redis: Redis, muzzled: bool) -> None:
    """Whether the home node may publish (applies at once to its open connections)."""
    await redis.execute_command("ACL", "SETUSER", HOME_USER, "-publish" if muzzled else "+publish")


async def entries(redis: Redis, op: str) -> list[dict[str, str]]:
    """The routing log's entries of one kind (gateway/store/redis_routing.py)."""
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in await redis.xrange("callin:log")
            if fields.get(b"op") == op.encode()]


async def rung_unseen(redis: Redis, agent: Agent, call_id: str) -> float:
    """Wait until the home's claim rings `agent` for `call_id` in Redis; her console has not been offered it (the
    offer was lost). Returns when the claim was seen (monotonic)."""
    async def claimed() -> bool:
        state = await redis.hgetall(f"callin:agent:{agent.username}")
        return state.get(b"status") == b"ringing" and state.get(b"call") == call_id.encode()

    await until(claimed, 30, 0.05, f"{agent.username} claimed for {call_id}")
    seen = time.monotonic()
    assert not [m for m in agent.ws.messages if m.get("type") == "call.offered"], "the offer was not held"
    return seen


async def still_held(redis: Redis, agent: Agent, call_id: str) -> None:
    """Her node keeps pushing her status (available); while the claim holds, each push is refused."""
    state = await redis.hgetall(f"callin:agent:{agent.username}")
    assert state[b"status"] == b"ringing" and state[b"call"] == call_id.encode(), state
    assert not await entries(redis, "claim_dropped")


async def lost_offer(nodes: Cluster, redis: Redis, token: str) -> tuple[Agent, str, float]:
    """alice's console on node B, available in the shared presence; then home node A, muzzled, takes a caller (with
    `token`) and claims her for it, and its offer never reaches her. Returns (alice, the call, when the claim was
    seen); her console and the caller's socket are closed at the end."""
    a, b = nodes.nodes[:2]
    alice = nodes.closes(Agent(b.base_url))
    await alice.connect()
    await until(lambda: _available(redis, "alice"), 20, 0.1, "alice available in the shared presence")
    await muzzle(redis, True)
    ws, call_id = await caller_socket(a.base_url, token)
    nodes.closes(ws)
    return alice, call_id, await rung_unseen(redis, alice, call_id)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_home_killed_after_its_claim_before_its_offer_frees_the_agent(database_url, redis_url, tmp_path,
                                                                            redis, caller_token):
    """kill -9 the home right after its claim landed and before its offer reached the agent's node: the agent's
    node frees her once the registry finds the home dead (CALLIN_NODE_DEAD_AFTER_S, 3 s here), well before the
    claim's deadline (ring timeout 60 s + 10 s), and she is offered a call of a third node."""
    dead_after = 3.0
    settings = {"ring_timeout_s": 60, "node_dead_after_s": dead_after}
    home = {"a": await home_user(redis, redis_url)}
    async with cluster(database_url, redis_url, tmp_path, "abc", redis_urls=home, **settings) as nodes:
        a, b, c = nodes.nodes
        alice, call_a, _ = await lost_offer(nodes, redis, caller_token(sub="stranded"))
        ws_c, call_c = await caller_socket(c.base_url, caller_token(sub="next"))
        nodes.closes(ws_c)
        await still_held(redis, alice, call_a)  # the home is alive: its claim stands

        a.kill()
        killed = time.monotonic()
        offer = await alice.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_c, timeout=40)
        took = time.monotonic() - killed
        print(f"alice offered the next call {took:.1f} s after kill -9 of the claimer (dead after {dead_after} s)")
        assert offer["call_id"] == call_c and took < dead_after + 15, f"offered {took:.1f} s after the kill"
        dropped = await entries(redis, "claim_dropped")
        assert [(e["call"], e["agent"], e["reason"]) for e in dropped] == [(call_a, "alice", "claimer_dead")]
        assert not [m for m in alice.ws.messages if m.get("type") == "call.offered" and m["call_id"] == call_a]
        await accept(alice.ws, ws_c, call_c, timeout=15)
        offers = [e["call"] for e in await entries(redis, "offer") if e["agent"] == "alice"]
        assert offers == [call_a, call_c]  # each claimed once


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_claim_whose_offer_was_lost_ends_at_its_deadline(database_url, redis_url, tmp_path, redis,
                                                                 caller_token):
    """The home stays alive, but its offer and the ring's end are lost (it cannot publish): the agent is freed when
    the claim's deadline (ring timeout 2 s + 10 s) passes, not before, and is offered the next call."""
    settings = {"ring_timeout_s": 2, "node_dead_after_s": 3}
    home = {"a": await home_user(redis, redis_url)}
    async with cluster(database_url, redis_url, tmp_path, redis_urls=home, **settings) as nodes:
        a, b = nodes.nodes
        nodes.at_end(muzzle, redis, False)
        alice, call_a, claimed = await lost_offer(nodes, redis, caller_token(sub="unheard"))
        ws_b, call_b = await caller_socket(b.base_url, caller_token(sub="next"))
        nodes.closes(ws_b)
        await still_held(redis, alice, call_a)

        offer = await alice.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == call_b, timeout=45)
        took = time.monotonic() - claimed
        print(f"alice offered the next call {took:.1f} s after the lost claim (deadline 12 s)")
        assert offer["call_id"] == call_b and took >= 10, f"freed {took:.1f} s after the claim: before its deadline"
        dropped = await entries(redis, "claim_dropped")
        assert [(e["call"], e["agent"], e["reason"]) for e in dropped] == [(call_a, "alice", "expired")]
        assert a.proc is not None and a.proc.poll() is None  # the home never died
        await accept(alice.ws, ws_b, call_b, timeout=15)


async def _available(redis: Redis, username: str) -> bool:
    return await redis.hget(f"callin:agent:{username}", "status") == b"available" \
        and bool(await redis.exists(f"callin:alive:{username}"))
