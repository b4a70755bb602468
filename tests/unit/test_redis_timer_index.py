"""The Redis timer registry's local index (gateway/store/redis_timers.py): due timers leave it through a heap of due
times, replaced and cancelled timers leave stale heap entries that are skipped and swept out, groups are kept per
name; and RedisTimers refuses what the in-process Timers refuses (one shared check), before anything is written."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from gateway.store.redis_timers import RedisTimers, _LocalIndex


def test_due_timers_leave_the_index_and_the_others_stay():
    index = _LocalIndex()
    index.set("call:a:ring", 10.0, ("a", "alice"))
    index.set("call:a:wait", 30.0, ("a",))
    index.set("hours", 20.0, ())
    assert set(index.live(9.9)) == {"call:a:ring", "call:a:wait", "hours"}
    assert set(index.live(20.0)) == {"call:a:wait"}  # due at `now` counts as due
    assert index.live(20.0)["call:a:wait"] == (30.0, ("a",))
    assert index.group("call:a", 20.0) == ["call:a:wait"]
    assert index.live(31.0) == {} and index.group("call:a", 31.0) == []


def test_a_timer_set_again_is_due_at_its_new_time_only():
    index = _LocalIndex()
    index.set("call:a:ring", 10.0, ("first",))
    index.set("call:a:ring", 50.0, ("second",))  # the entry due at 10 is stale now
    assert index.live(11.0) == {"call:a:ring": (50.0, ("second",))}
    index.set("call:a:ring", 5.0, ("third",))  # earlier than the stale entry at 50
    assert index.live(6.0) == {}
    index.set("call:a:ring", 60.0, ("fourth",))
    assert index.live(55.0) == {"call:a:ring": (60.0, ("fourth",))}  # the stale 50 does not drop the live 60


def test_cancelled_timers_leave_their_group_and_the_heap_stays_bounded():
    index = _LocalIndex()
    index.set("call:b:wait", 1e9, ("b",))
    for n in range(10_000):  # set and cancel, as every answered call does with its max-wait timer
        index.set(f"call:c{n}:wait", 1e9, (str(n),))
        assert index.pop(f"call:c{n}:wait") is not None
    assert index.pop("call:c0:wait") is None
    assert index.group("call:c5", 0.0) == [] and index.group("call:b", 0.0) == ["call:b:wait"]
    assert len(index._heap) <= 2 * 2 + 64  # stale entries swept out, not kept for the timers' whole delay
    assert index.live(0.0) == {"call:b:wait": (1e9, ("b",))}


def test_redis_timers_refuse_an_unknown_kind_and_arguments_that_are_not_strings_before_writing():
    timers = RedisTimers(Redis.from_url("redis://127.0.0.1:1/0"))  # never reached: nothing is written
    timers.on("ring", lambda *args: None)
    with pytest.raises(ValueError):
        timers.on("ring", lambda *args: None)
    with pytest.raises(KeyError, match="nonesuch"):
        timers.set("call:a:nonesuch", 1.0, "a")
    with pytest.raises(TypeError, match="strings"):
        timers.set("call:a:ring", 1.0, 42)  # type: ignore[arg-type]
    assert len(timers) == 0 and timers._writes is None
