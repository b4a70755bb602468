"""Recording a call's media (gateway/media/recorder.py) through the media plane, in-process and in a media worker:
real aiortc peers (the caller's frame-counter video and tone, the agent's own tone), the file read back with PyAV
(container, tracks, codecs, the counters of the decoded video in order, each audio track's tone), a paused span
absent from the file, a recording finalized by the call's end, and a worker SIGKILLed mid-recording leaving a file
that plays up to about the kill."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.errors import InvalidState, NotFound
from gateway.media.plane import RecordingInfo
from gateway.media.recorder import describe
from tests.support.clients import Agent, Caller, Peer, answered_call, wait_until
from tests.support.media import CounterVideoTrack, ToneAudioTrack, audio_frame_mono, dominant_frequency, read_counter
from tests.support.server import running_gateway

pytestmark = pytest.mark.media

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 880.0, 440.0, 660.0


async def answered(gw, caller_token, aux_audio: bool = False) -> tuple[Caller, Agent, str]:
    """A video call answered by alice, with the caller's video reaching her (`aux_audio`: both offer a second audio
    section, for a supervisor)."""
    return await answered_call(gw.base_url, caller_token(), video_frames=10, caller_hz=CALLER_HZ, agent_hz=AGENT_HZ,
                               caller_aux=aux_audio, agent_aux=aux_audio, timeout=20)


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

    # Read back from the file alone (as after a crash), the same tracks, spans and start.
    described = describe(info.path)
    assert [(t["participant"], t["packets"]) for t in described.tracks] == [
        (t["participant"], t["packets"]) for t in info.tracks]
    assert [(round(a, 2), round(b, 2)) for a, b in described.paused_spans] == [(round(start, 2), round(end, 2))]
    assert abs(described.started_at - info.started_at) < 0.01 and abs(described.duration_s - info.duration_s) < 0.1

    frames = video_counters(info.path)
    counters = [c for c, _ in frames]
    assert None not in counters and in_order(counters), counters
    # The paused span: no picture sent while the recording was paused (a few in flight at the pause aside), none
    # timed inside the span; pictures from before the pause and after the resume are there.
    assert not [c for c in counters if paused_at + 5 < c < resumed_at], (paused_at, resumed_at, counters)
    assert not [t for _, t in frames if start + 0.1 < t < end - 0.1], frames
    assert any(c <= paused_at for c in counters) and any(c > resumed_at for c in counters)
    # Each voice in its own track.
    caller_tone, caller_frames = track_tone(info.path, 1)
    agent_tone, agent_frames = track_tone(info.path, 2)
    assert abs(caller_tone - CALLER_HZ) < 30 and abs(agent_tone - AGENT_HZ) < 30
    assert caller_frames > 100 and agent_frames > 100


def tone_levels(path: str, index: int, frequencies: tuple[float, ...]) -> list[float]:
    """How strong each frequency is in the last second of an audio track, against the track's median level."""
    with av.open(path) as container:
        samples = np.concatenate([audio_frame_mono(f) for f in container.decode(container.streams[index])])
    last = samples[-48000:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft((last - last.mean()) * np.hanning(len(last))))
    freqs = np.fft.rfftfreq(len(last), 1 / 48000)
    floor = float(np.median(spectrum)) or 1.0
    return [float(spectrum[np.abs(freqs - f) < 10].max()) / floor for f in frequencies]


@pytest.mark.parametrize("codec, mixed", [("VP8", False), ("H264", True)], ids=["vp8-tracks", "h264-mixed"])
async def test_a_recording_started_in_the_queue_takes_in_the_agent_and_ends_with_the_call(caller_token, tmp_path,
                                                                                          codec, mixed):
    async with running_gateway(video_codecs=[codec]) as gw:
        plane = gw.board.plane
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        call_id = (await caller.start("video", tone_hz=CALLER_HZ))["call_id"]
        agent = Agent(gw.base_url)
        try:
            # Nobody to answer yet: the caller waits with its media up, and the recording starts.
            await wait_until(lambda: plane.relays[call_id].caller is not None, 10)
            await plane.start_recording(call_id, str(tmp_path / "queued"), mixed_audio=mixed)
            await more_written(plane, call_id, 20)
            # Then alice answers: her voice joins the file (a track declared up front, or the mix).
            await agent.connect()
            await agent.accept((await agent.wait_offer())["call_id"], tone_hz=AGENT_HZ)
            await more_written(plane, call_id, 60)
            await caller.hangup()
            await agent.ws.wait("call.ended", timeout=10)
            await wait_until(lambda: not plane.has_call(call_id), 10)
            info = await plane.stop_recording(call_id)  # after close_call: the info it finalized
        finally:
            await caller.close()
            await agent.close()
    assert info is not None and info.duration_s > 1.5
    if codec == "VP8":
        assert info.path.endswith("queued.webm") and info.container == "webm"
        assert [(t["participant"], t["codec"]) for t in info.tracks] == [
            ("caller", "vp8"), ("caller", "opus"), ("alice", "opus")]
        assert abs(track_tone(info.path, 2)[0] - AGENT_HZ) < 30
    else:
        assert info.path.endswith("queued.mkv") and info.container == "mkv"
        assert [(t["participant"], t["codec"]) for t in info.tracks] == [("caller", "h264"), ("mixed", "opus")]
        with av.open(info.path) as container:
            assert [s.codec_context.name for s in container.streams] == ["h264", "opus"]
        caller_level, agent_level = tone_levels(info.path, 1, (CALLER_HZ, AGENT_HZ))
        assert caller_level > 50 and agent_level > 50, (caller_level, agent_level)  # both voices in one track
    with av.open(info.path) as container:  # the picture size, from the first keyframe (VP8 header, H264 decoded once)
        assert (container.streams[0].codec_context.width, container.streams[0].codec_context.height) == (320, 240)
    counters = [c for c, _ in video_counters(info.path)]
    assert len(counters) > 30 and None not in counters and in_order(counters)


async def test_a_worker_killed_mid_recording_leaves_a_playable_file(caller_token, tmp_path: Path):
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
            killed_time = time.time()
            os.kill(plane.workers[0].pid, signal.SIGKILL)
            await caller.ws.wait("call.ended", timeout=15)
            # The engine still learns what the file holds: read back from it.
            info = await plane.stop_recording(call_id)
        finally:
            await caller.close()
            await agent.close()
    path = str(tmp_path / "killed.webm")
    assert info is not None and info.path == path and info.size_bytes == os.path.getsize(path)
    assert [(t["participant"], t["kind"], t["codec"]) for t in info.tracks] == [
        ("caller", "video", "vp8"), ("caller", "audio", "opus"), ("alice", "audio", "opus")]
    assert killed_time - 4 < info.started_at + info.duration_s <= killed_time + 0.5 and info.paused_spans == ()
    frames = video_counters(path)
    counters = [c for c, _ in frames]
    assert None not in counters and in_order(counters) and counters[0] < killed_at - 60
    assert counters[-1] >= killed_at - 3 * 30, (counters[-1], killed_at)  # up to about the kill (30 fps)
    tone, audio_frames = track_tone(path, 1)
    assert abs(tone - CALLER_HZ) < 30 and audio_frames > 20
    assert info.tracks[1]["packets"] >= 50  # a second or more of the caller's voice (20 ms packets)


async def test_a_leg_replaced_mid_call_keeps_the_file_going(gateway, caller_token, tmp_path: Path):
    """Media recovery gives the caller a new peer connection (new SSRCs, new RTP timestamps): the same file goes on,
    its timeline monotonic, the new leg's pictures after the old one's."""
    plane = gateway.board.plane
    caller, agent, call_id = await answered(gateway, caller_token)
    old_peer = caller.peer
    try:
        await plane.start_recording(call_id, str(tmp_path / "recovered"))
        await more_written(plane, call_id, 30)
        # The caller's app comes back with a new peer connection; its counter goes on from far above the old one.
        caller.peer = Peer()
        caller.peer.pc.addTrack(ToneAudioTrack(CALLER_HZ))
        new_video = CounterVideoTrack()
        new_video.counter = caller.video.counter + 1000
        new_video._start = time.monotonic() - new_video.counter / new_video.fps  # paced from that frame on
        caller.peer.pc.addTransceiver(new_video, direction="sendonly")
        answer = await caller.ws.request({"type": "sdp.offer", "sdp": await caller.peer.offer()})
        await caller.peer.answer(answer["sdp"])
        await old_peer.close()
        await wait_until(lambda: gateway.board.relays[call_id].replaced.get("caller") == 1, 10)
        await more_written(plane, call_id, 45)
        info = await plane.stop_recording(call_id)
    finally:
        await caller.close()
        await agent.close()
    assert info is not None and info.dropped_packets == 0
    counters = [c for c, _ in video_counters(info.path)]
    assert None not in counters and in_order(counters), counters
    assert any(c < new_video.counter - 1000 for c in counters) and counters[-1] > caller.video.counter + 990
    tone, frames = track_tone(info.path, 1)
    assert abs(tone - CALLER_HZ) < 30 and frames > 100


async def test_a_barging_supervisor_is_recorded_and_a_listening_one_is_not(gateway, caller_token, tmp_path: Path):
    plane = gateway.board.plane
    caller, agent, call_id = await answered(gateway, caller_token, aux_audio=True)
    sam = Agent(gateway.base_url, "sam", "sam-demo")
    try:
        await plane.start_recording(call_id, str(tmp_path / "supervised"))
        await sam.connect(available=False)
        await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
        await sam.join_media(call_id, tone_hz=SUPERVISOR_HZ, aux_audio=True)
        await wait_until(lambda: "video" in sam.peer.slots and len(sam.peer.slots["video"].counters) > 10, 10)
        await more_written(plane, call_id, 30)
        # Listening only, Sam is heard by nobody: not recorded.
        assert ("sam", "audio") not in plane.relays[call_id].recording.taps
        await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "barge"})
        await wait_until(lambda: "audio:1" in caller.peer.slots, 10)
        await more_written(plane, call_id, 60)
        info = await plane.stop_recording(call_id)
    finally:
        await caller.close()
        await agent.close()
        await sam.close()
    assert info is not None
    assert [(t["participant"], t["kind"]) for t in info.tracks] == [
        ("caller", "video"), ("caller", "audio"), ("alice", "audio"), ("sam", "audio")]
    for index, hz in ((1, CALLER_HZ), (2, AGENT_HZ), (3, SUPERVISOR_HZ)):
        assert abs(track_tone(info.path, index)[0] - hz) < 30, index


async def test_a_stalled_disk_drops_recorded_media_but_never_holds_up_the_call(gateway, caller_token, tmp_path: Path,
                                                                             monkeypatch):
    from gateway.media import recorder

    plane = gateway.board.plane
    caller, agent, call_id = await answered(gateway, caller_token)
    gate = threading.Event()
    write = recorder.Recording._mux
    try:
        await plane.start_recording(call_id, str(tmp_path / "stalled"))
        await more_written(plane, call_id, 20)
        # The writer blocks (a disk that stopped answering); its queue holds 200 frames here.
        monkeypatch.setattr(recorder, "QUEUE_ITEMS", 200)
        monkeypatch.setattr(recorder.Recording, "_mux", lambda self, item: gate.wait(30) and write(self, item))
        recording = plane.relays[call_id].recording
        await wait_until(lambda: recording.stats.dropped > 100, 20)
        # Meanwhile the call goes on: the caller's pictures keep reaching the agent, in order.
        sink = agent.peer.sinks["video"]
        seen = len(sink.counters)
        await wait_until(lambda: len(sink.counters) > seen + 30, 10)
        assert in_order([c for c in sink.counters[seen:] if c is not None])
        video = recording.taps[("caller", "video")]
        taken = video.frames
        gate.set()  # the disk is back
        monkeypatch.setattr(recorder.Recording, "_mux", write)
        await wait_until(lambda: video.frames > taken + 30, 10)  # from a new keyframe on
        info = await plane.stop_recording(call_id)
    finally:
        gate.set()
        await caller.close()
        await agent.close()
    assert info is not None and info.dropped_packets > 100
    counters = [c for c, _ in video_counters(info.path)]
    assert None not in counters and in_order(counters)
    gaps = [b - a for a, b in zip(counters, counters[1:])]
    assert max(gaps) > 20  # what was dropped is missing; the video went on from a keyframe
