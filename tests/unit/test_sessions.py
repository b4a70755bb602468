"""Session numbering and the replay buffer (logic only; the proof over real sockets is in
tests/integration/test_reconnects.py)."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.events import ChatMessage, QueueUpdate
from gateway.sessions import Numbered, ResumeFailed, SessionRegistry


def chat(i: int) -> ChatMessage:
    return ChatMessage(call_id="c1", message={"text": f"line {i}"})


def position(call_id: str, p: int) -> QueueUpdate:
    return QueueUpdate(call_id=call_id, position=p, queue_length=p, estimated_wait_s=None)


async def test_events_are_numbered_and_replayed_after_last_seq_attached_or_not():
    registry = SessionRegistry(30, on_expire=lambda s: None, replay_events=16)
    session = registry.create("caller", "dana")
    got: list[Numbered] = []
    registry.attach(session, got.append)
    for i in range(3):
        session.deliver(chat(i))
    assert [n.seq for n in got] == [1, 2, 3] and session.sent_seq == 3
    registry.detach(session, got.append)
    session.deliver(chat(3))
    # A client that processed only seq 1 (2 and 3 died with its socket) gets 2, 3 and the one sent while away.
    replay = registry.attach(session, got.append, last_seq=1)
    assert [n.seq for n in replay.events] == [2, 3, 4] and replay.complete
    # Without last_seq: only what no socket was given (the old behaviour).
    registry.detach(session, got.append)
    session.deliver(chat(4))
    assert [n.seq for n in registry.attach(session, got.append).events] == [5]
    registry.close()


async def test_a_newer_position_replaces_the_older_and_a_full_buffer_says_what_it_lost():
    registry = SessionRegistry(30, on_expire=lambda s: None, replay_events=16)
    session = registry.create("caller", "dana")
    session.deliver(position("c1", 3))
    session.deliver(chat(0))
    session.deliver(position("c1", 2))
    session.deliver(position("c2", 1))  # another call's position is kept
    assert [(n.seq, type(n.event).__name__) for n in session.replay_after(0).events] == \
        [(2, "ChatMessage"), (3, "QueueUpdate"), (4, "QueueUpdate")]
    assert session.replay_after(0).complete  # a superseded position is not a loss
    for i in range(20):
        session.deliver(chat(i))
    replay = session.replay_after(0)
    assert len(replay.events) == 16 and replay.events[-1].seq == 24 and not replay.complete
    assert session.replay_after(8).complete and not session.replay_after(7).complete
    registry.close()


async def test_resume_checks_before_anything_changes_and_a_gone_session_says_why():
    registry = SessionRegistry(30, on_expire=lambda s: None)
    session = registry.create("caller", "dana")
    session.deliver(chat(0))
    with pytest.raises(GatewayError) as bad:
        registry.resume(session.resume_token, "caller", lambda p: p == "dana", last_seq=5)
    assert bad.value.code == "invalid_last_seq" and session.seq == 1 and not session.attached
    with pytest.raises(ResumeFailed) as other:
        registry.resume(session.resume_token, "caller", lambda p: p == "eve")
    assert other.value.detail == {"why": "other_user", "call": None}
    registry.remove(session)  # bye
    with pytest.raises(ResumeFailed) as closed:
        registry.resume(session.resume_token, "caller", lambda p: p == "dana")
    assert closed.value.why == "closed" and closed.value.code == "resume_failed"
    with pytest.raises(ResumeFailed) as unknown:
        registry.resume("never-issued", "caller", lambda p: True)
    assert unknown.value.why == "unknown"


async def test_sessions_filed_under_keys_are_found_oldest_first_and_leave_with_removal():
    registry = SessionRegistry(30, on_expire=lambda s: None)
    sessions = [registry.create("caller", f"dana-{i}") for i in range(3)]
    for i, session in enumerate(sessions):
        registry.file_under(session, ("caller", "dana"), ("address", "10.0.0.1" if i < 2 else "10.0.0.2"))
    assert list(registry.members(("caller", "dana"))) == sessions
    assert list(registry.members(("address", "10.0.0.1"))) == sessions[:2]
    registry.remove(sessions[0])
    assert list(registry.members(("caller", "dana"))) == sessions[1:]
    assert list(registry.members(("address", "10.0.0.1"))) == [sessions[1]]
    registry.remove(sessions[1])
    assert list(registry.members(("address", "10.0.0.1"))) == [] and list(registry.members(("nobody",))) == []
    assert registry._groups.keys() == {("caller", "dana"), ("address", "10.0.0.2")}  # no empty group is kept
