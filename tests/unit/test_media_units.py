"""Logic of the relay's parts, with synthetic RTP packets (the real-peer proof is in tests/integration)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtpPacket

from gateway.media.assembler import MAX_GAP_PACKETS, AudioAssembler, VideoAssembler
from gateway.media.codecs import is_frame_start, is_keyframe
from gateway.media.forward import EncodedFrame, ForwardTrack, Producer
from gateway.media.leg import MediaConfig
from gateway.media.relay import Relay


def vp8_packet(seq: int, ts: int, start: bool, marker: bool, body: bytes = b"\x01") -> RtpPacket:
    descriptor = bytes([0x10 if start else 0x00])
    packet = RtpPacket(payload_type=96, sequence_number=seq % 65536, timestamp=ts, marker=int(marker), ssrc=7)
    packet.payload = descriptor + body
    packet._data = body
    return packet


def collect():
    frames = []
    return frames, lambda data, ts, ssrc, disc: frames.append((data, ts, disc))


def test_codec_bitstream_facts():
    assert is_frame_start("VP8", b"\x10xx") and not is_frame_start("VP8", b"\x00xx")
    assert is_keyframe("VP8", b"\x00\x00") and not is_keyframe("VP8", b"\x01\x00")
    assert is_frame_start("H264", bytes([0x7C, 0x85])) and not is_frame_start("H264", bytes([0x7C, 0x05]))
    assert is_keyframe("H264", b"\x00\x00\x00\x01\x67abc\x00\x00\x01\x65x")
    assert not is_keyframe("H264", b"\x00\x00\x00\x01\x41abc")


def test_video_frames_released_on_marker_even_out_of_order():
    frames, sink = collect()
    asm = VideoAssembler(lambda pt: "VP8", sink)
    asm.add(vp8_packet(65534, 100, True, False, b"a"))
    asm.add(vp8_packet(65536, 100, False, True, b"c"))  # wraps to 0, arrives before 65535
    assert frames == []
    asm.add(vp8_packet(65535, 100, False, False, b"b"))
    assert frames == [(b"abc", 100, True)]
    asm.add(vp8_packet(1, 200, True, True, b"d"))
    assert frames[-1] == (b"d", 200, False)


def test_video_waits_for_frame_start_and_drops_duplicates():
    frames, sink = collect()
    asm = VideoAssembler(lambda pt: "VP8", sink)
    asm.add(vp8_packet(10, 1, False, True))  # middle of a frame: ignored
    asm.add(vp8_packet(11, 2, True, True, b"x"))
    asm.add(vp8_packet(11, 2, True, True, b"x"))
    asm.add(vp8_packet(5, 0, True, True, b"old"))
    assert [f[0] for f in frames] == [b"x"]


def test_video_gap_gives_up_and_asks_for_a_picture():
    frames, sink = collect()
    asm = VideoAssembler(lambda pt: "VP8", sink)
    asm.add(vp8_packet(0, 0, True, True))
    # seq 1 (a whole frame) is lost for good
    pli = False
    seq = 2
    ts = 2
    while seq < MAX_GAP_PACKETS + 10:
        pli, _ = asm.add(vp8_packet(seq, ts, True, True))
        if pli:
            break
        seq += 1
        ts += 1
    assert pli
    assert frames[1][2] is True  # the first frame after the gap is flagged as a discontinuity
    assert len(frames) >= MAX_GAP_PACKETS - 2


def test_audio_packets_pass_at_once_late_ones_dropped():
    frames, sink = collect()
    asm = AudioAssembler(sink)
    for seq in (1, 2, 4, 3, 5):
        p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        p._data = bytes([seq])
        asm.add(p)
    assert [f[0] for f in frames] == [b"\x01", b"\x02", b"\x04", b"\x05"]
    assert [f[2] for f in frames] == [True, False, True, False]


def frame(n: int, key: bool = False) -> EncodedFrame:
    return EncodedFrame(data=bytes([n % 256]), timestamp=n * 3000, keyframe=key, arrived=0.0)


async def test_forward_track_gates_on_keyframe_and_bounds_queue():
    requests = []
    track = ForwardTrack("video", max_frames=5, on_keyframe_needed=lambda: requests.append(1))
    track.set_codec("VP8")
    track.push(frame(0))  # no keyframe yet: dropped
    assert track.stats.dropped_waiting_keyframe == 1
    track.push(frame(1, key=True))
    for n in range(2, 6):
        track.push(frame(n))
    assert len(track._queue) == 5
    track.push(frame(6))  # full, consumer behind: drop backlog, wait for a keyframe, ask for one
    assert len(track._queue) == 0 and track.needs_keyframe and requests == [1]
    track.push(frame(7))
    assert len(track._queue) == 0
    track.push(frame(8, key=True))
    packet = await track.recv()
    assert bytes(packet) == bytes([8]) and packet.pts == 24000 and packet.time_base.denominator == 90000
    track.stop()


async def test_audio_track_drops_oldest():
    track = ForwardTrack("audio", max_frames=3)
    track.set_codec("opus")
    for n in range(5):
        track.push(frame(n))
    assert [bytes(await track.recv())[0] for _ in range(3)] == [2, 3, 4]
    track.stop()
    with pytest.raises(Exception):
        await track.recv()


async def test_producer_rate_limits_keyframe_requests_without_losing_them():
    sent = []
    producer = Producer(kind="video", codec="VP8", send_keyframe_request=lambda: sent.append(1), min_request_interval=0.1)
    producer.request_keyframe()
    producer.request_keyframe()
    producer.request_keyframe()
    assert len(sent) == 1
    await asyncio.sleep(0.15)
    assert len(sent) == 2  # the requests inside the interval became one, sent when it ended
    producer.close()


async def test_relay_observers_are_told_now_and_after_each_change_until_unobserved():
    """One observer mechanism serves the recording and the transcript: told the relay at once, after each change
    of scene (or legs), once however often it is added, never again once removed, never after close."""
    relay = Relay("call-obs", MediaConfig())
    seen: list[tuple[str, str | None]] = []

    def first(r: Relay) -> None:
        seen.append(("first", r.scene.agent))

    def second(r: Relay) -> None:
        seen.append(("second", r.scene.agent))

    relay.observe(first)
    relay.observe(first)  # added once; told again now
    relay.observe(second)
    relay.set_scene(agent="alice")
    relay.unobserve(first)
    relay.unobserve(first)  # not there any more: nothing
    relay.set_scene(agent="bob")
    await relay.close()
    relay.set_scene(agent="carol")  # closed: no one is told
    assert seen == [("first", None), ("first", None), ("second", None), ("first", "alice"), ("second", "alice"),
                    ("second", "bob")]
    assert relay.heard() == set()
