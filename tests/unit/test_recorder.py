"""The recorder's logic without peers: the timeline of one track (RTP timestamps anchored at arrival, wrap,
a new source, monotonic), the picture size from a VP8 keyframe, a writer that falls behind (media dropped and
counted, video waits for a keyframe, the event loop never blocks) and a file that cannot be created."""

from __future__ import annotations

import fractions
from pathlib import Path
from types import SimpleNamespace

import av
import pytest

from gateway.media.recorder import (QUEUE_ITEMS, REANCHOR_MS, Recording, RecordingFailed, RecordingTap, StreamClock,
                                    vp8_size)


def test_a_track_follows_its_rtp_timestamps_from_its_first_arrival():
    clock = StreamClock(48000)
    assert clock.pts(1000, "a", 500.0) == 500
    assert clock.pts(1000 + 960, "a", 530.0) == 520  # RTP time, not the jittered arrival
    assert clock.pts(1000 + 2 * 960, "a", 541.0) == 540


def test_rtp_timestamps_wrap_around_32_bits():
    clock = StreamClock(90000)
    start = 0xFFFFFFFF - 1500
    assert clock.pts(start, 1, 0.0) == 0
    assert clock.pts((start + 3000) & 0xFFFFFFFF, 1, 33.0) == 33


def test_a_new_source_or_a_jump_is_anchored_afresh_and_time_never_goes_back():
    clock = StreamClock(90000)
    assert clock.pts(5000, 1, 1000.0) == 1000
    assert clock.pts(5000 + 9000, 1, 1100.0) == 1100
    # A replaced leg: another SSRC, unrelated timestamps, arriving at 1150 ms.
    assert clock.pts(123, 2, 1150.0) == 1150
    # Timestamps that jump far from the arrival times (a sender restarted its clock): anchored at arrival.
    assert clock.pts(123 + 90000 * 60, 2, 1200.0) == 1200
    assert REANCHOR_MS < 60_000
    # An anchor earlier than what was written (a clock behind): still after the last timestamp.
    assert clock.pts(999, 3, 100.0) == 1201


def test_the_picture_size_is_read_from_a_vp8_keyframe():
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 352, 288, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 30)
    frame = av.VideoFrame(352, 288, "yuv420p")
    packets = encoder.encode(frame) + encoder.encode(None)
    assert vp8_size(bytes(packets[0])) == (352, 288)
    assert vp8_size(b"\x01\x02") is None


class FakeProducer:
    def __init__(self, kind: str, codec: str) -> None:
        self.kind, self.codec = kind, codec
        self.taps: list = []
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


def vp8_frame(key: bool) -> SimpleNamespace:
    return SimpleNamespace(data=(b"\x10" if key else b"\x11") + b"\x00" * 20, timestamp=0)


def test_a_writer_that_falls_behind_drops_media_counted_and_video_waits_for_a_keyframe(tmp_path: Path, caplog):
    recording = Recording(str(tmp_path / "slow"), video_codec="VP8")  # not opened: nothing drains its queue
    video = FakeProducer("video", "VP8")
    recording.follow({"caller": SimpleNamespace(producers={"video": video})}, set())
    tap = recording.taps[("caller", "video")]
    assert isinstance(tap, RecordingTap) and video.taps == [tap] and video.keyframe_requests == 1
    tap.on_frame(vp8_frame(key=False), False)  # not a keyframe: not written
    assert recording.stats.frames_queued == 0
    for n in range(QUEUE_ITEMS):
        tap.on_frame(SimpleNamespace(data=vp8_frame(key=n == 0).data, timestamp=n * 3000), False)
    assert recording.stats.frames_queued == QUEUE_ITEMS and recording.stats.dropped == 0
    with caplog.at_level("WARNING"):
        tap.on_frame(SimpleNamespace(data=vp8_frame(key=False).data, timestamp=QUEUE_ITEMS * 3000), False)
        tap.on_frame(SimpleNamespace(data=vp8_frame(key=True).data, timestamp=(QUEUE_ITEMS + 1) * 3000), False)
    # Both refused at once (the queue is full): counted, logged once, and the video asks for a keyframe to resume.
    assert recording.stats.dropped == 2
    assert tap.needs_keyframe and video.keyframe_requests >= 2
    assert len([r for r in caplog.records if "writer is behind" in r.getMessage()]) == 1
    # Taken off the call: the tap leaves the producer.
    recording.follow({}, set())
    assert video.taps == []


def test_only_the_audio_of_participants_someone_hears_is_recorded(tmp_path: Path):
    recording = Recording(str(tmp_path / "scene"), video_codec=None)
    legs = {name: SimpleNamespace(producers={"audio": FakeProducer("audio", "opus")})
            for name in ("caller", "alice", "sup")}
    recording.follow(legs, {"caller", "alice"})  # sup monitors: heard by nobody
    assert set(recording.taps) == {("caller", "audio"), ("alice", "audio")}
    assert [t.participant for t in recording.tracks] == ["caller", "alice", None, None]
    recording.follow(legs, {"caller", "alice", "sup"})  # sup barges: heard, recorded in the next track
    assert [t.participant for t in recording.tracks] == ["caller", "alice", "sup", None]
    assert recording.container == "webm" and recording.path.endswith("scene.webm")


async def test_a_file_that_cannot_be_created_is_a_typed_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    recording = Recording(str(blocker / "rec"), video_codec="H264")
    assert recording.container == "mkv"
    with pytest.raises(RecordingFailed) as failed:
        await recording.open()
    assert failed.value.code == "recording_failed" and "cannot be written" in failed.value.reason


def test_video_in_another_codec_than_the_files_is_not_written_into_it(tmp_path: Path):
    recording = Recording(str(tmp_path / "codec"), video_codec="VP8")
    vp8, h264 = FakeProducer("video", "VP8"), FakeProducer("video", "H264")
    recording.follow({"caller": SimpleNamespace(producers={"video": vp8})}, set())
    assert vp8.taps and recording.taps[("caller", "video")].track == 0
    # The caller's new leg, alone in its call, chose H264: the VP8 track gets nothing from it.
    recording.follow({"caller": SimpleNamespace(producers={"video": h264})}, set())
    assert vp8.taps == [] and h264.taps == []
