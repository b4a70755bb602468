"""The engine's own parts: the timer registry, the settle step after each command (a colleague freed by a
cancelled consult is offered a waiting call at once), a consulted colleague whose console goes away (the consult
ends, never the call), and signaling reading the engine through methods only."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.engine.timers import Timers
from gateway.events import CallOffered, ConsultState, OfferWithdrawn
from gateway.models import AgentStatus, CallState
from tests.unit.test_queues import agent, board_with, caller, start, wait_for


async def test_timers_fire_once_and_are_forgotten_before_the_handler():
    fired: list[tuple[str, ...]] = []
    settled: list[int] = []
    timers = Timers(after=lambda: settled.append(len(timers)))
    timers.on("ring", lambda call_id, agent: fired.append((call_id, agent, str("call:a:ring" in timers))))
    timers.set("call:a:ring", 0.01, "a", "alice")
    assert "call:a:ring" in timers and len(timers) == 1
    assert timers.pending("call:a:ring") is not None and timers.pending("call:a:ring")[1] == ("a", "alice")
    await wait_for(lambda: fired)
    assert fired == [("a", "alice", "False")] and "call:a:ring" not in timers
    assert settled == [0]  # the after-hook ran once, after the timer was forgotten


async def test_timers_replace_cancel_by_name_group_and_prefix():
    fired: list[str] = []
    timers = Timers()
    for kind in ("ring", "wait", "wrap", "hours"):
        timers.on(kind, lambda *args, kind=kind: fired.append("-".join((kind, *args))))
    timers.set("call:a:ring", 0.02, "first")
    timers.set("call:a:ring", 0.02, "second")  # replaces the first
    timers.set("call:a:wait", 0.02, "a")
    timers.set("call:b:wait", 0.02, "b")
    timers.set("agent:x:wrap", 0.02, "x")
    timers.set("hours", 0.02)
    assert timers.cancel_group("call:a") == 2  # every timer of call a, and nothing else
    assert not timers.cancel("call:a:ring")
    assert timers.cancel_prefix("agent:") == 1
    assert timers.cancel("hours")
    await wait_for(lambda: fired)
    assert fired == ["wait-b"]
    timers.set("call:c:ring", 0.01, "late")
    timers.close()
    await asyncio.sleep(0.05)
    assert fired == ["wait-b"] and len(timers) == 0


def test_timers_are_data_a_kind_and_string_arguments():
    """A timer names a registered kind and carries strings only (names of what it is about, not objects)."""
    timers = Timers()
    timers.on("ring", lambda *args: None)
    with pytest.raises(ValueError):
        timers.on("ring", lambda *args: None)  # one owner per kind
    with pytest.raises(KeyError):
        timers.set("call:a:nonesuch", 1.0, "a")
    with pytest.raises(TypeError):
        timers.set("call:a:ring", 1.0, 42)  # type: ignore[arg-type]
    assert len(timers) == 0


async def test_a_colleague_freed_by_a_declined_consult_is_offered_a_waiting_call_at_once():
    board = board_with()
    try:
        staff = {name: agent(board, name) for name in ("alice", "bob")}
        first, _ = caller(board, "c1")
        call = start(board, first)
        other = "bob" if call.offered_to == "alice" else "alice"
        owner, (colleague, colleague_events) = staff[call.offered_to][0], staff[other]
        board.accept(owner, call.id)
        await board.transfer(owner, call.id, to_agent=colleague.principal.username, to_queue=None, mode="warm")
        second, _ = caller(board, "c2")
        waiting = start(board, second)
        assert waiting.state is CallState.QUEUED  # the colleague is ringing for the consult
        board.decline(colleague, call.id)  # ends the consult in a background step, which settles after it
        await wait_for(lambda: waiting.state is CallState.OFFERED)
        assert waiting.offered_to == colleague.principal.username
        assert board.agents[colleague.principal.username].status is AgentStatus.RINGING
        assert colleague_events.of(CallOffered)[-1].call_id == waiting.id
    finally:
        await board.close()


async def consulting(board, ring_timeout_s: float = 600):
    """alice answers a caller and consults bob (warm transfer): (call, alice's events, bob's session, events)."""
    alice, alice_events = agent(board, "alice")
    session, _ = caller(board, "c1")
    call = start(board, session)
    assert call.offered_to == "alice"
    bob, bob_events = agent(board, "bob")
    board.accept(alice, call.id)
    await board.transfer(alice, call.id, to_agent="bob", to_queue=None, mode="warm")
    assert call.consult == "bob" and board.agents["bob"].status is AgentStatus.RINGING
    return call, alice_events, bob, bob_events


async def test_a_consult_ringing_at_a_console_that_lost_its_socket_is_withdrawn_at_once():
    """As an offer: a console without its socket cannot answer. The consult ends (agent_disconnected, well before
    the ring timeout: 600 s here); the call goes on with its agent; bob is told when he resumes and is available."""
    board = board_with(ring_timeout_s=600)
    try:
        call, alice_events, bob, bob_events = await consulting(board)
        board.sessions.detach(bob, bob_events)
        await wait_for(lambda: call.consult is None)
        assert call.state is CallState.CONNECTED and call.agent == "alice" and not call.held
        assert [(e.state, e.colleague) for e in alice_events.of(ConsultState)] == [("agent_disconnected", "bob")]
        assert board.agents["bob"].status is AgentStatus.AVAILABLE and board.agents["bob"].call_id is None
        withdrawn = [n.event for n in bob.buffer if isinstance(n.event, OfferWithdrawn)]  # replayed on resume
        assert [(e.call_id, e.reason) for e in withdrawn] == [(call.id, "agent_disconnected")]
        assert not bob_events.of(OfferWithdrawn)  # not sent to the socket that went away
    finally:
        await board.close()


async def test_a_joined_consult_colleague_gone_for_good_ends_the_consult_not_the_call():
    """A joined colleague whose console lost its socket may come back (nothing changes); gone for good (signed out,
    or beyond the resume grace) the consult ends and the caller stays with the agent (it used to end the call)."""
    board = board_with(ring_timeout_s=600)
    try:
        call, alice_events, bob, bob_events = await consulting(board)
        board.accept(bob, call.id)
        assert call.consult_joined and call.held
        board.sessions.detach(bob, bob_events)
        await asyncio.sleep(0)  # the detach's own steps (nothing to wait for: nothing may change)
        assert call.consult == "bob" and call.consult_joined
        board.release_session(bob)
        await wait_for(lambda: call.consult is None)
        assert call.state is CallState.CONNECTED and call.agent == "alice" and not call.held
        assert [e.state for e in alice_events.of(ConsultState)] == ["joined", "agent_disconnected"]
        assert board.agents["bob"].status is AgentStatus.OFFLINE and board.agents["bob"].call_id is None
    finally:
        await board.close()


def test_signaling_reads_the_engine_through_methods():
    """No signaling module reaches into the engine's live-state dicts (cli.py and app.py set the engine up)."""
    root = Path(__file__).resolve().parents[2] / "signaling"
    internals = re.compile(r"board\.(calls|agents|queue|sessions|estimators|positions|live|core)\b")
    offenders = [f"{path.name}:{number}: {line.strip()}"
                 for path in sorted(root.glob("*.py")) if path.name not in ("cli.py", "app.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1) if internals.search(line)]
    assert offenders == []


class Claims:
    """Stands for the cluster relay's claims (signaling/cluster_calls.py) in unit tests of the engine's logic: it
    returns the named agent's state here after `gate` opens, and records what was claimed and given back."""

    def __init__(self, board) -> None:
        self.board = board
        self.gate = asyncio.Event()
        self.claimed: list[tuple[str, str]] = []
        self.given_back: list[tuple[str, str]] = []

    async def claim_colleague(self, call, username):
        self.claimed.append((call.id, username))
        await self.gate.wait()
        return self.board.agents[username]

    async def give_back(self, call, username):
        self.given_back.append((call.id, username))


async def test_a_transfer_target_is_claimed_first_and_given_back_if_the_call_changed_meanwhile():
    """Several nodes: the named colleague is claimed through the relay before it rings; a call that ended while the
    claim was awaited is refused with its typed error and the claim given back (nothing rings)."""
    board = board_with()
    claims = Claims(board)
    board.claim_colleagues_with(claims)
    try:
        staff = {name: agent(board, name) for name in ("alice", "bob")}
        first, _ = caller(board, "c1")
        call = start(board, first)
        owner_name = call.offered_to
        other = "bob" if owner_name == "alice" else "alice"
        owner = staff[owner_name][0]
        board.accept(owner, call.id)
        with pytest.raises(Exception) as refused:
            await board.transfer(owner, call.id, to_agent=owner_name, to_queue=None, mode="blind")
        assert refused.value.code == "transfer_to_self" and claims.claimed == []  # refused before any claim

        transfer = asyncio.ensure_future(board.transfer(owner, call.id, to_agent=other, to_queue=None, mode="blind"))
        await wait_for(lambda: claims.claimed)
        await board.caller_hangup(first, call.id)  # the call ends while the colleague is being claimed
        claims.gate.set()
        with pytest.raises(Exception) as ended:
            await transfer
        assert ended.value.code == "not_connected"
        assert claims.given_back == [(call.id, other)]
        assert board.agents[other].status is AgentStatus.AVAILABLE
        assert not any(e.call_id == call.id for e in staff[other][1].of(CallOffered))

        second, _ = caller(board, "c2")
        call2 = start(board, second)
        owner2 = staff[call2.offered_to][0]
        target = "bob" if call2.offered_to == "alice" else "alice"
        board.accept(owner2, call2.id)
        await board.transfer(owner2, call2.id, to_agent=target, to_queue=None, mode="warm")
        assert claims.claimed[-1] == (call2.id, target) and len(claims.given_back) == 1
        assert call2.consult == target and board.agents[target].status is AgentStatus.RINGING
    finally:
        await board.close()
