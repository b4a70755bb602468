"""The one home lookup of REST requests about a call (signaling/cluster_calls.py CallRelay.home_of_call): the call's
home node from the routing store and whether the node registry finds it dead; live_home turns a dead home into a
retryable 503 node_unreachable (recording control, call views), files read a dead home as "not elsewhere" (404)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gateway.errors import Unavailable
from signaling.cluster_calls import CallRelay, Home


class Routing:
    def __init__(self, homes: dict[str, str]) -> None:
        self.homes = homes
        self.asked: list[str] = []

    async def home_of(self, call_id: str) -> str | None:
        self.asked.append(call_id)
        return self.homes.get(call_id)


class Registry:
    def __init__(self, dead: set[str]) -> None:
        self.dead = dead

    async def down(self, instances, now: float) -> set[str]:
        return set(instances) & self.dead


def relay(homes: dict[str, str], dead: set[str], here: set[str] = frozenset()) -> tuple[CallRelay, Routing]:
    board = SimpleNamespace(call=lambda call_id: object() if call_id in here else None)
    routing = Routing(homes)

    async def execute(_session, _text):
        return []

    return CallRelay(board, routing, bus=None, instance="node-b", execute=execute, max_message_bytes=65536,
                     registry=Registry(dead), line=object()), routing


async def test_a_live_home_a_dead_home_this_node_and_no_node():
    calls = {"c-live": "node-a", "c-dead": "node-x", "c-mine": "node-b"}
    cluster, routing = relay(calls, dead={"node-x"}, here={"c-here"})
    assert await cluster.home_of_call("c-live") == Home("node-a", dead=False)
    assert await cluster.home_of_call("c-dead") == Home("node-x", dead=True)
    assert await cluster.home_of_call("c-mine") is None  # written by this node (it ended here meanwhile)
    assert await cluster.home_of_call("c-unknown") is None
    assert await cluster.home_of_call("c-here") is None and "c-here" not in routing.asked  # held here: no round trip

    assert await cluster.live_home("c-live") == "node-a"
    assert await cluster.live_home("c-here") is None and await cluster.live_home("c-unknown") is None
    with pytest.raises(Unavailable) as refused:
        await cluster.live_home("c-dead")
    assert refused.value.code == "node_unreachable" and refused.value.status == 503 and refused.value.retryable


async def test_a_call_restored_on_another_node_after_its_home_died_is_found_at_its_new_home():
    """This node's agents were told node_lost for the call (its home died); the call, restored with its id on another
    node, is found there: the routing store's home is the truth, not what this node remembers of the old one."""
    cluster, _ = relay({"c1": "node-c"}, dead={"node-a"})
    cluster._lost["c1"] = None
    cluster._remote_calls["c1"] = "node-a"
    assert await cluster.home_of_call("c1") == Home("node-c", dead=False)
    assert await cluster.live_home("c1") == "node-c"
