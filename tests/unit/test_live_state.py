"""Live state behind Protocols (gateway/store/live.py): the memory implementation offers every member the engine
uses, keeps a caller's live calls, forgets replaced legs; the engine's collaborators know only the Protocols."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.calls import Call
from gateway.models import CallContext, CallerIdentity, CallState, CallType
from gateway.routing import AgentState, CallQueue
from gateway.config import Settings
from gateway.engine.switchboard import Switchboard
from gateway.engine.timers import Timers
from gateway.sessions import SessionRegistry
from gateway.store.live import (AgentPresence, CallStore, Estimates, LiveState, MediaLegs, MemoryLiveState, SessionStore,
                                TimerRegistry, WaitingLines)


def members(protocol: type) -> set[str]:
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls.__module__ == "gateway.store.live":
            names |= {n for n in vars(cls) if not n.startswith("_") or n in ("__contains__", "__len__")}
    return names - {"__module__", "__doc__"}


def make_call(call_id: str, subject: str) -> Call:
    return Call(id=call_id, identity=CallerIdentity(subject=subject, expires_at=0), call_type=CallType.VOICE,
                location=None, context=CallContext(), caller_session="s-" + call_id)


def test_memory_implementation_offers_every_protocol_member():
    live = MemoryLiveState()
    for protocol in (LiveState, CallStore, AgentPresence, Estimates, MediaLegs):
        assert members(protocol) and all(hasattr(live, name) for name in members(protocol)), protocol
    assert all(hasattr(CallQueue, name) for name in members(WaitingLines))
    assert members(SessionStore) and all(hasattr(SessionRegistry, name) for name in members(SessionStore))
    assert members(TimerRegistry) and all(hasattr(Timers, name) for name in members(TimerRegistry))


def test_calls_agents_estimates_and_legs():
    live = MemoryLiveState()
    first, second = make_call("a", "alice"), make_call("b", "alice")
    live.add_call(first)
    live.add_call(second)
    assert live.call("a") is first and live.call(None) is None
    assert {c.id for c in live.live_calls_of(first.identity)} == {"a", "b"}
    first.state = CallState.ENDED
    live.call_ended(first)
    assert [c.id for c in live.live_calls_of(first.identity)] == ["b"] and live.call("a") is first
    live.forget_call("a")
    assert live.call("a") is None and [c.id for c in live.all_calls()] == ["b"]
    live.add_agent(AgentState(username="bob", display_name="Bob"))
    assert live.agent("bob") is not None and live.agent(None) is None and len(list(live.all_agents())) == 1
    assert live.known_estimator("billing") is None and live.estimator("billing") is live.known_estimator("billing")
    live.line.add(second)
    assert "b" in live.line and live.line.rank("b") == (1, 1)
    live.track_leg("leg1", "b", "caller", "caller")
    live.track_leg("leg2", "b", "caller", "caller")  # the caller's new leg (network change) replaces the old
    assert live.leg("leg1") is None and live.leg("leg2") == ("b", "caller", "caller")
    live.track_leg("leg3", "b", "bob", "agent")
    live.untrack_legs("b", "caller")
    assert live.leg("leg2") is None and live.leg("leg3") is not None
    live.clear()
    assert live.leg("leg3") is None


def test_collaborators_know_only_the_protocols():
    """Only the façade (the composition root) names the memory implementations; collaborators neither name them nor
    set a timer with a closure (timers are data: a kind and string arguments)."""
    engine = Path(__file__).resolve().parents[2] / "gateway" / "engine"
    memory = re.compile(r"\b(MemoryLiveState|SessionRegistry|Timers)\(")
    named = [path.name for path in sorted(engine.glob("*.py"))
             if path.name not in ("switchboard.py", "core.py", "timers.py") and memory.search(path.read_text())]
    assert named == []
    closures = [f"{path.name}: {line.strip()}" for path in sorted(engine.glob("*.py"))
                for line in path.read_text().splitlines() if re.search(r"timers\.set\([^,]+,[^,]+,\s*(lambda|self\.\w+\s*[,)])", line)]
    assert closures == []


async def test_the_engine_runs_on_the_live_state_it_is_given():
    """Switchboard(live=..., sessions=..., timers=...): the engine keeps everything in the stores it is handed."""
    live = MemoryLiveState()
    made: list[object] = []

    def sessions(settings, on_expire, on_detached, on_resumed):
        made.append(SessionRegistry(settings.resume_grace_s, on_expire, on_detached=on_detached,
                                    on_resumed=on_resumed))
        return made[-1]

    def timers(after):
        made.append(Timers(after))
        return made[-1]

    board = Switchboard(Settings(demo=True), live=live, sessions=sessions, timers=timers)
    try:
        assert board.live is live and board.sessions is made[0] and board.core.timers is made[1]
        session = board.open_caller(CallerIdentity(subject="ann", expires_at=0))
        call = board.start_call(session, CallType.VOICE, None, CallContext())
        assert live.call(call.id) is call and call.id in live.line and made[0].get(session.id) is session
        assert board.calls == {call.id: call}
    finally:
        await board.close()
