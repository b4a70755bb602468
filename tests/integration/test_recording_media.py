"""Recording a call's media (gateway/media/recorder.py) through the media plane, in-process and in a media worker:
real aiortc peers (the caller's frame-counter video and tone, the agent's own tone), the file read back with PyAV
(container, tracks, codecs, the counters of the decoded video in order, each audio track's tone), a paused span
absent from the file, a recording finalized by the call's end, and a worker SIGKILLed mid-recording leaving a file
that plays up to about the kill."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import av
import pytest

from gateway.errors import InvalidState, NotFound
from gateway.media.plane import RecordingInfo
from tests.support.clients import Agent, Caller, wait_until
from tests.support.media import audio_frame_mono, dominant_frequency, read_counter

pytestmark = pytest.mark.media

CALLER_HZ, AGENT_HZ = 880.0, 440.0


async def answered(gw, caller_token) -> tuple[Caller, Agent, str]:
    """A video call answered by alice, with the caller's video reaching her."""
    agent = Agent(gw.base_url)
    await agent.connect()
    caller = Caller(gw.base_url, caller_token())
    await caller.connect()
    await caller.start("video", tone_hz=CALLER_HZ)
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"], tone_hz=AGENT_HZ)
    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) > 10, 20)
    return caller, agent, offer["call_id"]


async def written(plane, call_id: str) -> int:
    """Video frames written to the call's recording so far."""
    return (await plane.stats(call_id)).get("recording", {}).get("tracks", {}).get(0, 0)


async def more_written(plane, call_id: str, more: int, timeout: float = 20) -> None:
    start = await written(plane, call_id)
    deadline = time.monotonic() + timeout
    while await written(plane, call_id) < start + more:
        assert time.monotonic() < deadline, f"fewer than {more} frames written in {timeout} s"
        await asyncio.sleep(0.1)


def video_counters(path: str) -> list[tuple[int | None, float]]:
    """(counter read from the picture, its time in s) of every decoded video frame."""
    with av.open(path) as container:
        return [(read_counter(frame), float(frame.time)) for frame in container.decode(video=0)]


def track_tone(path: str, index: int) -> tuple[float, int]:
    """The dominant frequency of an audio track (its middle second) and how many frames it decoded to."""
    with av.open(path) as container:
        stream = container.streams[index]
        frames = [audio_frame_mono(f) for f in container.decode(stream)]
    rate = 48000
    import numpy as np

    samples = np.concatenate(frames)
    middle = len(samples) // 2
    return dominant_frequency(samples[middle - rate // 2: middle + rate // 2], rate), len(frames)


def in_order(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


async def test_a_call_is_recorded_paused_and_resumed_in_one_file(gateway, caller_token, tmp_path: Path):
    plane = gateway.board.plane
    caller, agent, call_id = await answered(gateway, caller_token)
    try:
        # Typed errors, before anything is recorded.
        with pytest.raises(NotFound) as unknown:
            await plane.start_recording("no-such-call", str(tmp_path / "x"))
        assert unknown.value.code == "not_found"
        with pytest.raises(InvalidState) as idle:
            await plane.pause_recording(call_id)
        assert idle.value.code == "invalid_state"
        assert await plane.stop_recording(call_id) is None

        await plane.start_recording(call_id, str(tmp_path / "call.mkv"))  # the suffix follows the container
        with pytest.raises(InvalidState) as twice:
            await plane.start_recording(call_id, str(tmp_path / "again"))
        assert twice.value.code == "invalid_state"
        await more_written(plane, call_id, 45)  # 1.5 s of video

        video = caller.video
        await plane.pause_recording(call_id)
        await plane.pause_recording(call_id)  # idempotent
        paused_at = video.counter
        await wait_until(lambda: video.counter >= paused_at + 45, 10)  # 1.5 s of the caller's video goes by
        resumed_at = video.counter
        await plane.resume_recording(call_id)
        await plane.resume_recording(call_id)
        await more_written(plane, call_id, 45)
        info = await plane.stop_recording(call_id)
        assert await plane.stop_recording(call_id) is None  # returned once
    finally:
        await caller.close()
        await agent.close()

    assert isinstance(info, RecordingInfo)
    assert info.path == str(tmp_path / "call.webm") and info.container == "webm"
    assert info.size_bytes == os.path.getsize(info.path) > 10_000
    assert abs(info.started_at - time.time()) < 60
    assert [(t["participant"], t["kind"], t["codec"]) for t in info.tracks] == [
        ("caller", "video", "vp8"), ("caller", "audio", "opus"), ("alice", "audio", "opus")]
    assert info.dropped_packets == 0
    assert len(info.paused_spans) == 1
    start, end = info.paused_spans[0]
    assert 1.0 <= end - start and 0.5 < start < end < info.duration_s

    with av.open(info.path) as container:
        assert [(s.type, s.codec_context.name) for s in container.streams][:3] == [
            ("video", "vp8"), ("audio", "opus"), ("audio", "opus")]
        assert abs(container.duration / 1e6 - info.duration_s) < 0.5
        chapters = container.chapters()
        assert [c["metadata"].get("title") for c in chapters] == ["paused"]
        assert abs(float(chapters[0]["start"] * chapters[0]["time_base"]) - start) < 0.01

    frames = video_counters(info.path)
    counters = [c for c, _ in frames]
    assert None not in counters and in_order(counters), counters
    # The paused span: no picture sent while the recording was paused (a few in flight at the pause aside), none
    # timed inside the span; pictures from before the pause and after the resume are there.
    assert not [c for c in counters if paused_at + 5 < c < resumed_at], (paused_at, resumed_at, counters)
    assert not [t for _, t in frames if start + 0.2 < t < end], frames
    assert any(c <= paused_at for c in counters) and any(c > resumed_at for c in counters)
    # Each voice in its own track.
    caller_tone, caller_frames = track_tone(info.path, 1)
    agent_tone, agent_frames = track_tone(info.path, 2)
    assert abs(caller_tone - CALLER_HZ) < 30 and abs(agent_tone - AGENT_HZ) < 30
    assert caller_frames > 100 and agent_frames > 100


async def test_the_end_of_the_call_finalizes_its_recording(gateway, caller_token, tmp_path: Path):
    plane = gateway.board.plane
    caller, agent, call_id = await answered(gateway, caller_token)
    try:
        await plane.start_recording(call_id, str(tmp_path / "ended"))
        await more_written(plane, call_id, 20)
        await caller.hangup()
        await agent.ws.wait("call.ended", timeout=10)
        await wait_until(lambda: not plane.has_call(call_id), 10)
        info = await plane.stop_recording(call_id)  # after close_call: the info it finalized
    finally:
        await caller.close()
        await agent.close()
    assert info is not None and info.path.endswith("ended.webm") and info.duration_s > 0.5
    counters = [c for c, _ in video_counters(info.path)]
    assert len(counters) > 10 and in_order(counters)


async def test_a_worker_killed_mid_recording_leaves_a_playable_file(caller_token, tmp_path: Path):
    from tests.support.server import running_gateway

    async with running_gateway(media_workers=1) as gw:
        plane = gw.board.plane
        caller, agent, call_id = await answered(gw, caller_token)
        try:
            # A recording in the worker that holds the call, stopped: its info comes back over the channel.
            await plane.start_recording(call_id, str(tmp_path / "first"), mixed_audio=False)
            await more_written(plane, call_id, 20)
            first = await plane.stop_recording(call_id)
            assert first is not None and first.container == "webm" and len(first.tracks) == 3
            assert [c for c, _ in video_counters(first.path)] != []

            # Another one, and the worker is SIGKILLed in the middle of it.
            await plane.start_recording(call_id, str(tmp_path / "killed"))
            await more_written(plane, call_id, 90)  # three seconds of media
            killed_at = caller.video.counter
            os.kill(plane.workers[0].pid, signal.SIGKILL)
            await caller.ws.wait("call.ended", timeout=15)
        finally:
            await caller.close()
            await agent.close()
    path = str(tmp_path / "killed.webm")
    frames = video_counters(path)
    counters = [c for c, _ in frames]
    assert None not in counters and in_order(counters) and counters[0] < killed_at - 60
    assert counters[-1] >= killed_at - 3 * 30, (counters[-1], killed_at)  # up to about the kill (30 fps)
    tone, audio_frames = track_tone(path, 1)
    assert abs(tone - CALLER_HZ) < 30 and audio_frames > 100
