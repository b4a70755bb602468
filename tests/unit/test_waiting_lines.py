"""The per-queue waiting counts a node tells the cluster every beat (signaling/nodes.py local_entry ->
Switchboard.waiting_lines): kept by the line as calls join and leave it, not counted by walking every waiting call.
They must match a walk of the waiting calls after joins, a caller back in a new call (its place and its wait kept),
leaves (hang-ups) and takes (an agent answers), with a controllable clock."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.models import EndReason
from tests.unit.test_queues import agent, board_with, caller, start


def walked(board) -> dict[str, tuple[int, float]]:
    """What local_entry computed before: every waiting call walked, per queue (how many, the earliest wait)."""
    lines: dict[str, tuple[int, float]] = {}
    for call in board.waiting_calls():
        count, oldest = lines.get(call.queue, (0, call.waited_since))
        lines[call.queue] = (count + 1, min(oldest, call.waited_since))
    return lines


async def test_the_line_s_counts_match_the_waiting_calls_after_joins_leaves_and_takes():
    clock = ManualClock(1_000.0)
    board = board_with(clock, queues=[{"name": "billing", "skills": ["billing"]}])
    try:
        assert board.waiting_lines() == {} == walked(board)
        calls = {}
        for i in range(6):  # c0 at 1000 s, c1 at 1010 s, ...; c0, c3 in billing
            session, _ = caller(board, f"c{i}", queue="billing" if i % 3 == 0 else "default")
            calls[f"c{i}"] = start(board, session)
            clock.advance(10)
        assert board.waiting_lines() == {"billing": (2, 1_000.0), "default": (4, 1_010.0)} == walked(board)

        # c1 comes back in a new call (a second session): the new call takes c1's place and keeps its wait.
        again, _ = caller(board, "c1")
        back = start(board, again)
        assert calls["c1"].id not in {c.id for c in board.waiting_calls()} and back.arrived_at == 1_010.0
        assert board.waiting_lines() == {"billing": (2, 1_000.0), "default": (4, 1_010.0)} == walked(board)

        # Leaves: the longest-waiting caller of default (back) and the whole of billing hang up.
        await board.end_call(back, EndReason.CALLER_HANGUP, "caller")
        assert board.waiting_lines() == {"billing": (2, 1_000.0), "default": (3, 1_020.0)} == walked(board)
        for name in ("c0", "c3"):
            await board.end_call(calls[name], EndReason.CALLER_HANGUP, "caller")
        assert board.waiting_lines() == {"default": (3, 1_020.0)} == walked(board)

        # Takes: an agent is offered the first waiting call and answers it; it leaves the line.
        alice, _ = agent(board, "alice")
        offered = board.agents["alice"].call_id
        assert offered == calls["c2"].id
        board.accept(alice, offered)
        assert board.waiting_lines() == {"default": (2, 1_040.0)} == walked(board)
    finally:
        await board.close()
