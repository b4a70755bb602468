"""Queues: opening hours (time zones, holidays), priority rules, skills routing, per-queue positions and estimates,
closed notices, ring-outs and wrap-up, with a controllable clock and in-process sessions."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.auth import AgentAccount
from gateway.clock import ManualClock
from gateway.config import QueueConfig, Settings
from gateway.errors import GatewayError
from gateway.events import AgentStatusChanged, CallbackOffer, CallOffered, QueueClosed, QueueUpdate
from gateway.models import AgentStatus, CallContext, CallerIdentity, CallState, CallType, EndReason
from gateway.queues import QueueDirectory, Schedule
from gateway.routing import AgentState, WaitEstimator, pick_agent
from gateway.sessions import Numbered
from gateway.switchboard import Switchboard

PARIS = ZoneInfo("Europe/Paris")


def at(year: int, month: int, day: int, hour: int, minute: int = 0, zone: ZoneInfo = PARIS) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


def office(**extra) -> QueueConfig:
    return QueueConfig(name="office", timezone="Europe/Paris",
                       hours={"mon": ["09:00-12:00", "13:00-17:30"], "sat": ["10:00-24:00"]},
                       holidays=[date(2025, 12, 25)], **extra)


# ------------------------------------------------------------------------------------------------ hours
def test_opening_hours_in_the_queue_time_zone():
    schedule = Schedule.of(office())
    assert schedule.is_open(at(2025, 3, 3, 9, 0))  # Monday 09:00 Paris
    assert not schedule.is_open(at(2025, 3, 3, 8, 59))
    assert not schedule.is_open(at(2025, 3, 3, 12, 30))  # lunch
    assert schedule.is_open(at(2025, 3, 3, 17, 29))
    assert not schedule.is_open(at(2025, 3, 3, 17, 30))  # the end is exclusive
    assert not schedule.is_open(at(2025, 3, 4, 10))  # Tuesday is not listed: closed
    assert schedule.is_open(at(2025, 3, 8, 23, 59))  # Saturday until 24:00
    # 08:30 UTC on a Monday in March is 09:30 in Paris
    assert schedule.is_open(datetime(2025, 3, 3, 8, 30, tzinfo=ZoneInfo("UTC")).timestamp())


def test_holidays_close_the_whole_local_day():
    schedule = Schedule.of(office())
    christmas_monday = Schedule.of(QueueConfig(name="x", timezone="Europe/Paris", holidays=[date(2025, 12, 25)]))
    assert christmas_monday.is_open(at(2025, 12, 24, 23, 59))
    assert not christmas_monday.is_open(at(2025, 12, 25, 0, 1))
    assert not christmas_monday.is_open(at(2025, 12, 25, 23, 59))
    assert schedule.next_opening(at(2025, 3, 3, 10)) is None  # open now


def test_next_opening_skips_closed_days_and_dst():
    schedule = Schedule.of(office())
    assert schedule.next_opening(at(2025, 3, 3, 12, 15)) == at(2025, 3, 3, 13, 0)
    assert schedule.next_opening(at(2025, 3, 4, 10)) == at(2025, 3, 8, 10, 0)  # Tuesday -> Saturday
    # Across the spring DST change (30 March 2025 in Europe): still 09:00 local on Monday
    assert schedule.next_opening(at(2025, 3, 29, 0, 30) - 3600 * 2) is not None
    assert schedule.next_opening(at(2025, 3, 30, 12)) == at(2025, 3, 31, 9, 0)


@pytest.mark.parametrize("bad, needle", [
    ({"hours": {"mon": ["9-17"]}}, "HH:MM-HH:MM"),
    ({"hours": {"mon": ["17:00-09:00"]}}, "must end after it starts"),
    ({"hours": {"funday": ["09:00-10:00"]}}, "hours.funday"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"skills": ["has space"]}, "a skill is"),
    ({"name": "Bad Name"}, "name"),
])
def test_queue_config_is_validated(bad, needle):
    with pytest.raises(ValidationError) as info:
        QueueConfig(**{"name": "q", **bad})
    assert needle in str(info.value)


def test_default_queue_always_exists_and_names_are_unique():
    settings = Settings(queues=[{"name": "billing", "skills": ["billing"]}])
    assert [q.name for q in settings.queues] == ["default", "billing"]
    with pytest.raises(ValidationError, match="unique"):
        Settings(queues=[{"name": "a"}, {"name": "a"}])
    directory = QueueDirectory(settings.queues)
    with pytest.raises(GatewayError) as info:
        directory.remove("default", waiting=0)
    assert info.value.code == "default_queue"
    with pytest.raises(GatewayError) as info:
        directory.remove("billing", waiting=2)
    assert info.value.code == "queue_not_empty"
    with pytest.raises(GatewayError) as info:
        directory.get("nope")
    assert info.value.code == "unknown_queue"


# ------------------------------------------------------------------------------------------------ priority
def identity(**claims) -> CallerIdentity:
    return CallerIdentity(subject="s", expires_at=0, claims=claims)


def test_priority_from_token_and_rules():
    directory = QueueDirectory([QueueConfig(name="default", priority_rules=[
        {"claim": "tier", "equals": "premium", "priority": 10},
        {"claim": "vip", "equals": True, "priority": 20},
    ])])
    queue = directory.get("default")
    assert queue.priority_for(identity()) == 0
    assert queue.priority_for(identity(priority=3)) == 3
    assert queue.priority_for(identity(tier="premium")) == 10
    assert queue.priority_for(identity(tier="premium", priority=15)) == 15  # a rule only raises
    assert queue.priority_for(identity(vip=True)) == 20
    assert queue.priority_for(identity(vip=1)) == 0  # 1 is not True
    assert queue.priority_for(identity(priority=True)) == 0  # a boolean is not a priority
    assert queue.priority_for(identity(priority=10_000)) == 100  # capped
    assert directory.for_caller(identity()).name == "default"
    with pytest.raises(GatewayError) as info:
        directory.for_caller(identity(queue="sales"))
    assert info.value.code == "unknown_queue"


# ------------------------------------------------------------------------------------------------ routing
def test_pick_agent_needs_every_skill_then_longest_idle():
    agents = [AgentState("a", "A", AgentStatus.AVAILABLE, idle_since=10, skills=frozenset({"billing"})),
              AgentState("b", "B", AgentStatus.AVAILABLE, idle_since=5, skills=frozenset({"tech"})),
              AgentState("c", "C", AgentStatus.AVAILABLE, idle_since=20, skills=frozenset({"billing", "fr"}))]
    assert pick_agent(agents, set()).username == "b"
    assert pick_agent(agents, set(), frozenset({"billing"})).username == "a"
    assert pick_agent(agents, set(), frozenset({"billing", "fr"})).username == "c"
    assert pick_agent(agents, {"c"}, frozenset({"billing", "fr"})) is None
    assert pick_agent(agents, set(), frozenset({"de"})) is None


def test_estimate_formula():
    est = WaitEstimator(default_handle_s=120)
    assert est.estimate(5, 2) == 3 * 120  # ceil(5 / 2) rounds of the average handle time
    for seconds in (100, 200, 300):
        est.record_handle_time(seconds)
    assert est.average_handle_s == 200
    assert est.estimate(1, 3) == 200
    assert est.estimate(4, 3) == 400


# ------------------------------------------------------------------------------------------------ engine
class Events:
    def __init__(self) -> None:
        self.items: list[object] = []

    def __call__(self, item: Numbered) -> None:
        self.items.append(item.event)

    def of(self, kind: type) -> list:
        return [e for e in self.items if isinstance(e, kind)]


def board_with(clock: ManualClock | None = None, **settings) -> Switchboard:
    base = dict(caller_token_secret="x" * 32, media_host_addresses=["127.0.0.1"], demo=False)
    base.update(settings)
    return Switchboard(Settings(**base), clock=clock)


def caller(board: Switchboard, sub: str, **claims):
    session = board.open_caller(CallerIdentity(subject=sub, expires_at=0, claims=claims))
    events = Events()
    board.sessions.attach(session, events)
    return session, events


def agent(board: Switchboard, name: str, skills: tuple[str, ...] = (), available: bool = True):
    session = board.open_agent(AgentAccount(username=name, display_name=name.title(), skills=skills))
    events = Events()
    board.sessions.attach(session, events)
    if available:
        board.set_agent_status(session, AgentStatus.AVAILABLE)
    return session, events


def start(board: Switchboard, session):
    return board.start_call(session, CallType.VOICE, None, CallContext())


async def test_after_hours_call_is_told_and_waits_for_opening():
    clock = ManualClock(at(2025, 3, 4, 10))  # a Tuesday: closed
    board = board_with(clock, queues=[office().model_dump()])
    try:
        alice, alice_events = agent(board, "alice")
        session, events = caller(board, "c1", queue="office")
        call = start(board, session)
        closed = events.of(QueueClosed)
        assert [(c.reason, c.queue, c.callback_available, c.message_allowed) for c in closed] == [
            ("after_hours", "office", True, True)]
        assert closed[0].message == "We are closed right now." and closed[0].opens_at == at(2025, 3, 8, 10)
        assert call.state is CallState.QUEUED and not alice_events.of(CallOffered)  # not offered while closed
        clock.now = at(2025, 3, 8, 10, 1)  # Saturday morning: the engine looks again (its hours timer)
        board.recheck()
        assert call.state is CallState.OFFERED and alice_events.of(CallOffered)[0].call_id == call.id
    finally:
        await board.close()


async def test_no_agents_notice_and_message_left():
    board = board_with()
    try:
        session, events = caller(board, "c1")
        call = start(board, session)
        assert events.of(QueueClosed)[0].reason == "no_agents"
        with pytest.raises(GatewayError) as info:
            await board.leave_message(session, call.id, "x" * 2001)
        assert info.value.code == "message_too_long" and call.state is CallState.QUEUED
        await board.leave_message(session, call.id, "  Please call me about my card.  ")
        assert call.state is CallState.ENDED and call.end_reason is EndReason.MESSAGE_LEFT
        assert call.message == "Please call me about my card."
        # A queue that is open and staffed takes no messages: wait, or ask for a callback.
        agent(board, "alice")
        agent(board, "bob")
        other, _ = caller(board, "c2")
        busy = start(board, other)
        with pytest.raises(GatewayError) as info:
            await board.leave_message(other, busy.id, "hello")
        assert info.value.code == "queue_open"
    finally:
        await board.close()


async def test_positions_and_estimates_are_per_queue():
    board = board_with(queues=[{"name": "billing", "skills": ["billing"]}])
    try:
        _, alice_events = agent(board, "alice", ("billing",), available=False)
        sessions = {}
        for sub, queue in (("d1", "default"), ("b1", "billing"), ("d2", "default"), ("b2", "billing")):
            sessions[sub] = caller(board, sub, queue=queue)
            start(board, sessions[sub][0])
        positions = board.queue_positions()
        by_sub = {board.calls[cid].identity.subject: value for cid, value in positions.items()}
        assert by_sub["d1"][:2] == (1, 2) and by_sub["d2"][:2] == (2, 2)
        assert by_sub["b1"][:2] == (1, 2) and by_sub["b2"][:2] == (2, 2)
        assert all(value[2] is None for value in by_sub.values())  # nobody staffed: no estimate
        alice = board.sessions.get(board.agents["alice"].session_id)
        board.set_agent_status(alice, AgentStatus.AVAILABLE)  # the oldest call of all (d1) rings at her
        assert alice_events.of(CallOffered)[0].call_id == sessions["d1"][0].call_id
        by_sub = {board.calls[cid].identity.subject: value for cid, value in board.queue_positions().items()}
        assert by_sub["b2"] == (2, 2, 360)  # ceil(2 / 1 staffed) x 180 s default handle time: nobody ready
        assert by_sub["d1"] == (1, 2, 0)  # ringing at alice: being connected
        assert by_sub["d2"] == (2, 2, 180)  # ceil((2 - 1 ringing) / 1 staffed) x 180; alice staffs both queues
        bob_session, _ = agent(board, "bob", ("tech",))  # bob staffs only the default queue: d2 rings at him
        by_sub = {board.calls[cid].identity.subject: value for cid, value in board.queue_positions().items()}
        assert by_sub["b2"] == (2, 2, 360) and by_sub["d2"][2] == 0
    finally:
        await board.close()


async def test_callback_offered_past_the_threshold_once():
    board = board_with(queues=[{"name": "default", "callback_threshold_s": 100}])
    try:
        _, _ = agent(board, "alice")
        first, _ = caller(board, "c1")
        start(board, first)  # rings at alice
        second, events = caller(board, "c2")
        start(board, second)  # position 2, 1 ringing, 1 staffed: (2 - 1) x 180 = 180 s > 100
        offers = events.of(CallbackOffer)
        assert len(offers) == 1 and offers[0].estimated_wait_s == 180
        board.recheck()
        assert len(events.of(CallbackOffer)) == 1
    finally:
        await board.close()


async def test_two_ring_outs_set_away():
    board = board_with(ring_timeout_s=0.05, reoffer_after_decline_s=0.05)
    try:
        _, alice_events = agent(board, "alice")
        session, _ = caller(board, "c1")
        start(board, session)
        await asyncio.sleep(0.3)
        statuses = [(e.status, e.reason) for e in alice_events.of(AgentStatusChanged)]
        assert ("available", "ring_timeout") in statuses
        assert statuses[-1] == ("away", "missed_call")
        assert len(alice_events.of(CallOffered)) == 2
        assert board.agents["alice"].status is AgentStatus.AWAY
    finally:
        await board.close()


async def test_many_callers_at_once_keep_gap_free_positions():
    board = board_with(queues=[{"name": "billing"}], position_update_interval_s=0.05)
    try:
        callers = [caller(board, f"c{i}", queue="billing" if i % 3 == 0 else "default") for i in range(60)]

        async def place(session):
            await asyncio.sleep(0)
            return start(board, session)

        calls = await asyncio.gather(*(place(s) for s, _ in callers))

        def told_matches() -> bool:
            positions = board.queue_positions()
            return all(events.of(QueueUpdate)[-1].position == positions[call.id][0]
                       for (session, events), call in zip(callers, calls) if call.id in positions)

        async def check() -> None:
            positions = board.queue_positions()
            for name in ("default", "billing"):
                mine = sorted(positions[c.id][0] for c in calls if c.queue == name and c.id in positions)
                assert mine == list(range(1, len(mine) + 1))
            # what each caller was last told matches the engine (once the coalescing interval is up)
            await wait_for(told_matches)

        await check()
        for call in calls[::7]:  # callers leave from the middle
            await board.end_call(call, EndReason.CALLER_HANGUP, "caller")
        await check()
        agent(board, "alice")
        await check()
    finally:
        await board.close()


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_join_at_the_back_tells_nobody_else():
    """Issue 9 item 6: the queue length alone is no reason to message every waiting caller."""
    board = board_with(position_update_interval_s=0)
    try:
        waiting = [caller(board, f"c{i}") for i in range(50)]
        for session, _ in waiting:
            start(board, session)
        before = [len(events.of(QueueUpdate)) for _, events in waiting]
        assert before == [1] * 50  # each was told its own place once, when it joined
        newcomer, newcomer_events = caller(board, "late")
        start(board, newcomer)
        assert [(u.position, u.queue_length) for u in newcomer_events.of(QueueUpdate)] == [(51, 51)]
        assert [len(events.of(QueueUpdate)) for _, events in waiting] == before  # nobody else was messaged
        # A VIP joins ahead of everyone: now every place moved, and each caller hears of it.
        vip, _ = caller(board, "vip", priority=5)
        start(board, vip)
        assert [events.of(QueueUpdate)[-1].position for _, events in waiting] == list(range(2, 52))
        assert newcomer_events.of(QueueUpdate)[-1].position == 52
    finally:
        await board.close()


async def test_positions_are_coalesced_first_and_last_always_told():
    """A caller is told at once, then at most once per interval; the latest place is always told in the end."""
    board = board_with(position_update_interval_s=0.5)
    try:
        ahead = [caller(board, f"a{i}")[0] for i in range(4)]
        ahead_calls = [start(board, session) for session in ahead]
        mine, events = caller(board, "me")
        start(board, mine)
        loop = asyncio.get_running_loop()
        assert [u.position for u in events.of(QueueUpdate)] == [5]
        await asyncio.sleep(0.6)  # past the interval: the next change is told at once
        for call in ahead_calls:  # four changes in a row
            await board.end_call(call, EndReason.CALLER_HANGUP, "caller")
        first_change = loop.time()
        assert [u.position for u in events.of(QueueUpdate)] == [5, 4]  # the first change at once
        await wait_for(lambda: events.of(QueueUpdate)[-1].position == 1, 10)
        assert loop.time() - first_change >= 0.4  # the last one when the interval was up, not at once
        updates = [u.position for u in events.of(QueueUpdate)]
        assert updates == [5, 4, 1]  # 3 and 2 were skipped
        assert board.positions.told(board.calls[mine.call_id].id) == (1, None)
        await asyncio.sleep(0.6)
        assert [u.position for u in events.of(QueueUpdate)] == updates  # nothing changed: nothing more told
    finally:
        await board.close()


async def test_a_restored_waiting_caller_keeps_its_max_wait_from_its_first_arrival():
    """A waiting call read back from its record (its node died or restarted) is told its queue's max wait counted
    from when it arrived: at once if that is past, else when the rest of it runs out (not a whole max wait again)."""
    from gateway.calls import Call

    board = board_with(queues=[{"name": "default", "max_wait_s": 60}])
    try:
        def restored(sub: str, waited_s: float) -> Call:
            call = Call(id=f"restored-{sub}", identity=CallerIdentity(subject=sub, expires_at=0),
                        call_type=CallType.VOICE, location=None, context=CallContext(), caller_session="",
                        created_at=board.core.clock.time() - waited_s)
            board.restore_waiting(call, f"resume-hash-{sub}")
            return call

        late = restored("waited-100-s", 100)
        early = restored("waited-10-s", 10)
        await wait_for(lambda: late.closed_reason == "max_wait")
        assert early.closed_reason is None
        due, args = board.core.timers.pending(f"call:{early.id}:wait")
        left = due - asyncio.get_running_loop().time()
        assert 48 < left <= 50 and args == (early.id,), left
        told = board.session(late.caller_session).buffer  # the restored session holds it for its caller's resume
        assert [n.event.reason for n in told if isinstance(n.event, QueueClosed)] == ["max_wait"]
    finally:
        await board.close()
