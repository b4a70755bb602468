from __future__ import annotations

import pytest

from gateway.calls import Call
from gateway.errors import InvalidState
from gateway.models import AgentStatus, CallContext, CallerIdentity, CallState, CallType
from gateway.routing import AgentState, CallQueue, WaitEstimator, pick_agent


def make_call(call_id: str, priority: int = 0, queue: str = "default") -> Call:
    identity = CallerIdentity(subject=f"s-{call_id}", expires_at=0)
    return Call(id=call_id, identity=identity, call_type=CallType.VIDEO, location=None, context=CallContext(),
                caller_session="sess", priority=priority, queue=queue)


def test_state_machine_happy_path_and_log():
    call = make_call("a")
    call.transition(CallState.OFFERED, agent="alice")
    call.transition(CallState.QUEUED, reason="declined")
    call.transition(CallState.OFFERED, agent="bob")
    call.transition(CallState.CONNECTED, agent="bob")
    call.transition(CallState.ENDED, reason="caller_hangup")
    assert [e.kind for e in call.events] == ["queued", "offered", "queued", "offered", "connected", "ended"]


@pytest.mark.parametrize("path, bad", [
    ([], CallState.CONNECTED),
    ([CallState.OFFERED, CallState.CONNECTED], CallState.CONNECTED),
    ([CallState.ENDED], CallState.QUEUED),
    ([CallState.ENDED], CallState.ENDED),
])
def test_illegal_transitions(path, bad):
    call = make_call("a")
    for state in path:
        call.transition(state)
    before = list(call.events)
    with pytest.raises(InvalidState) as info:
        call.transition(bad)
    assert info.value.code == "invalid_state" and "cannot become" in info.value.reason
    assert call.events == before


def test_blind_transfer_transitions():
    call = make_call("t")
    call.transition(CallState.OFFERED)
    call.transition(CallState.CONNECTED)
    call.transition(CallState.OFFERED, transfer="blind")  # straight to the target agent
    call.transition(CallState.CONNECTED)
    call.transition(CallState.QUEUED, transfer="blind")  # to a queue
    assert [e.kind for e in call.events][-2:] == ["connected", "queued"]


def test_queue_order_priority_then_fifo():
    queue = CallQueue()
    for call in (make_call("a"), make_call("b"), make_call("vip", priority=5), make_call("c")):
        queue.add(call)
    assert [c.id for c in queue.ordered()] == ["vip", "a", "b", "c"]
    queue.remove("a")
    assert queue.positions() == {"vip": 1, "b": 2, "c": 3}


def test_queue_ranks_per_named_queue_and_what_moved():
    queue = CallQueue()
    for name in ("a", "b", "c"):
        queue.add(make_call(name))
    queue.add(make_call("x", queue="billing"))
    queue.take_moved()
    assert queue.rank("b") == (2, 3) and queue.rank("x") == (1, 1) and queue.rank("nope") is None
    queue.add(make_call("d"))  # at the back: only the newcomer's place is new
    assert queue.take_moved() == {"default": 4}
    queue.add(make_call("vip", priority=9))  # ahead of everyone
    queue.remove("c")
    assert queue.take_moved() == {"default": 1} and queue.take_moved() == {}
    assert [(p, c.id) for p, c in queue.line("default")] == [(1, "vip"), (2, "a"), (3, "b"), (4, "d")]
    assert [(p, c.id) for p, c in queue.line("default", start=3)] == [(3, "b"), (4, "d")]
    assert queue.names() == ["default", "billing"] and queue.length("default") == 4
    queue.remove("x")
    assert queue.names() == ["default"] and queue.take_moved() == {"billing": 1}
    assert [c.id for c in queue] == ["vip", "a", "b", "d"]


def test_pick_longest_idle_available_agent():
    agents = [AgentState("a", "A", AgentStatus.AVAILABLE, idle_since=30), AgentState("b", "B", AgentStatus.AVAILABLE, idle_since=10),
              AgentState("c", "C", AgentStatus.AWAY, idle_since=0), AgentState("d", "D", AgentStatus.BUSY, idle_since=1)]
    assert pick_agent(agents, set()).username == "b"
    assert pick_agent(agents, {"b"}).username == "a"
    assert pick_agent(agents, {"a", "b"}) is None


def test_wait_estimate():
    est = WaitEstimator(default_handle_s=100)
    assert est.estimate(1, 0) is None
    assert est.estimate(3, 2) == 200
    est.record_handle_time(60)
    est.record_handle_time(120)
    assert est.estimate(1, 1) == 90


def test_queue_walks_only_the_lines_asked_for_in_answer_order():
    queue = CallQueue()
    for call in (make_call("a"), make_call("x", queue="billing"), make_call("b"), make_call("y", priority=3, queue="billing"),
                 make_call("z", queue="sales")):
        queue.add(call)
    assert [c.id for c in queue.ordered_in(["default", "billing"])] == ["y", "a", "x", "b"]
    assert [c.id for c in queue.ordered_in(["sales"])] == ["z"]
    assert list(queue.ordered_in(["nowhere"])) == []
