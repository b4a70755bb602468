"""Media in worker processes (`--media-workers 2`): calls spread over two workers with media checked by content, and
a worker killed mid-call (SIGKILL): its call ends `media_failed` with a record, the other worker's call goes on, and
the dead worker is replaced; each worker forwards on the native fast path when it is built."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gateway.errors import NotFound
from gateway.media.fastpath import native_module
from gateway.media.ports import port_slices
from gateway.media.workers import WorkerPlane
from signaling.keys import CALLS
from tests.support.clients import Agent, Caller, wait_until
from tests.support.server import running_gateway

pytestmark = pytest.mark.media


def in_order(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


async def answered_call(gw, caller_token, sub: str, agent_name: str, password: str, tone_hz: float):
    agent = Agent(gw.base_url, agent_name, password)
    await agent.connect()
    caller = Caller(gw.base_url, caller_token(sub=sub))
    await caller.connect()
    queued = await caller.start("video", tone_hz=tone_hz)
    offer = await agent.wait_offer()
    assert offer["call_id"] == queued["call_id"]
    await agent.accept(offer["call_id"], tone_hz=tone_hz / 2)
    return caller, agent, queued["call_id"]


async def frames_flow(agent: Agent, caller: Caller, more: int, timeout: float = 20) -> None:
    """`more` further caller video frames reach the agent, in order, with their pixels intact."""
    await wait_until(lambda: "video" in agent.peer.sinks, timeout)
    sink = agent.peer.sinks["video"]
    start = len(sink.counters)
    await wait_until(lambda: len(sink.counters) >= start + more, timeout)
    fresh = sink.counters[start:]
    assert None not in fresh and in_order(fresh), fresh
    assert fresh[-1] <= caller.video.counter


async def test_calls_spread_over_two_workers_and_a_killed_worker_ends_only_its_calls(caller_token):
    async with running_gateway(media_workers=2) as gw:
        plane = gw.board.plane
        assert isinstance(plane, WorkerPlane) and all(w.alive for w in plane.workers)
        pids = {w.index: w.pid for w in plane.workers}
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()

        first = await answered_call(gw, caller_token, "worker-a", "alice", "alice-demo", 880)
        second = await answered_call(gw, caller_token, "worker-b", "bob", "bob-demo", 660)
        (caller_a, agent_a, call_a), (caller_b, agent_b, call_b) = first, second
        try:
            # One call per worker (the pool places a call on the worker with the fewest).
            assert {plane.call_worker(call_a), plane.call_worker(call_b)} == {0, 1}
            # Media flows through both workers, both ways: caller video frames in order at the agent, tones heard.
            await asyncio.gather(frames_flow(agent_a, caller_a, 45), frames_flow(agent_b, caller_b, 45))
            await wait_until(lambda: "audio" in caller_b.peer.sinks and len(caller_b.peer.sinks["audio"].audio) >= 50,
                             15)
            assert abs(caller_b.peer.sinks["audio"].dominant_frequency() - 330) < 30
            # A still picture comes from the worker that holds the call.
            still = await plane.still(call_b)
            assert still.jpeg[:2] == b"\xff\xd8" and (still.width, still.height) == (320, 240)

            # SIGKILL the worker of call A: its call ends media_failed (both sides told, a record kept) ...
            victim = plane.workers[plane.call_worker(call_a)]
            os.kill(victim.pid, signal.SIGKILL)
            ended = await caller_a.ws.wait("call.ended", timeout=15)
            assert ended["reason"] == "media_failed"
            assert (await agent_a.ws.wait("call.ended", timeout=15))["reason"] == "media_failed"

            record: dict = {}
            deadline = asyncio.get_running_loop().time() + 10
            while record.get("end_reason") != "media_failed":
                assert asyncio.get_running_loop().time() < deadline, record
                await asyncio.sleep(0.1)
                try:
                    record = await gw.app[CALLS].get(call_a)
                except NotFound:  # not written yet
                    pass
            assert any(e["kind"] == "media_failed" and (e["detail"] or {}).get("cause") == "worker_died"
                       for e in record["events"]), record["events"]

            # ... while call B, on the other worker, goes on: fresh frames keep arriving in order.
            await frames_flow(agent_b, caller_b, 30)
            assert not any(m.get("type") == "call.ended" for m in caller_b.ws.messages)

            # The dead worker is replaced, and a new call can land on it.
            await wait_until(lambda: victim.alive and victim.pid != pids[victim.index], 30)
            await agent_a.close()
            await caller_a.close()
            caller_c, agent_c, call_c = await answered_call(gw, caller_token, "worker-c", "alice", "alice-demo", 550)
            assert plane.call_worker(call_c) == victim.index
            await frames_flow(agent_c, caller_c, 30)
            await caller_c.hangup()
            await agent_c.close()
            await caller_c.close()
        finally:
            for party in (caller_a, agent_a, caller_b, agent_b):
                await party.close()
    # The gateway stopped: its workers exited with it.
    assert all(w.process is not None and w.process.returncode is not None for w in plane.workers)


async def agent_video_stats(plane, call_id: str, check=None):
    """The worker's counters of the agent's outgoing video stream (or whether `check` holds for them)."""
    legs = await plane.stats(call_id)
    video = next(leg for name, leg in legs.items() if name != "caller")["consumers"]["video"]
    return video if check is None else check(video)


def candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def test_each_worker_binds_its_legs_in_its_own_slice_of_the_port_range(caller_token):
    async with running_gateway(media_workers=2, media_port_min=41000, media_port_max=41099) as gw:
        plane = gw.board.plane
        slices = port_slices(41000, 41099, 2)
        calls = [await answered_call(gw, caller_token, f"ports-{i}", name, f"{name}-demo", 700 + 100 * i)
                 for i, name in enumerate(("alice", "bob"))]
        try:
            seen = set()
            for caller, agent, call_id in calls:
                worker = plane.call_worker(call_id)
                seen.add(worker)
                ports = (candidate_ports(caller.peer.pc.remoteDescription.sdp)
                         | candidate_ports(agent.peer.pc.remoteDescription.sdp))
                assert ports and all(port in slices[worker] for port in ports), (worker, ports)
                await frames_flow(agent, caller, 20)
                # The worker forwards on the packet path the gateway resolved (auto: native when built), inside
                # its own process: the caller's video to the agent goes through the C route there.
                await wait_until(lambda: agent_video_stats(plane, call_id, lambda v: v["frames_out"] >= 40), 20)
                video = await agent_video_stats(plane, call_id)
                in_c = video["forwarded_in_c"]
                assert (in_c >= 0.8 * video["frames_out"]) == (native_module() is not None), video
            assert seen == {0, 1}
        finally:
            for caller, agent, _ in calls:
                await caller.close()
                await agent.close()
