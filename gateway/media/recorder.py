"""Recording a call: its encoded media written to one Matroska/WebM file as it is forwarded, without decoding video.

A `RecordingTap` hangs on one Producer (a participant's incoming track, forward.Producer.taps) and sees the same
RTP packets (packet relay) or encoded frames (frame relay) that are forwarded; it rebuilds whole frames (assembler),
maps their RTP timestamps to the file's timeline and hands them to the call's `Recording`, whose writer thread muxes
them with PyAV. The event loop only appends to a bounded queue: a stalled disk drops media (counted, logged once),
it never holds up forwarding.

The file's timeline: time 0 is the arrival of the first packet recorded. Each track is anchored at the arrival of
its first packet and then follows its RTP timestamps (monotonic per track); a new source stream (a leg replaced by
media recovery: new SSRC and timestamps) or timestamps that stray more than REANCHOR_MS from arrival times are
anchored afresh, so the file goes on across a leg change.

Matroska declares its tracks in the header, before the first block, so the tracks are declared when the file is
started: the caller's video (when the call has video), the caller's audio and SPARE_AUDIO_TRACKS more audio tracks,
given to other participants in the order they are first heard (agent, consulted colleague, supervisor). A track
never given to anyone stays empty (players ignore it; RecordingInfo lists only tracks with media). With
`mixed_audio`, every participant's audio is decoded and mixed into one Opus track instead (mixer.py).

Crash safety: the file is written as Matroska with clusters of at most CLUSTER_MS, each handed to the OS as it
closes (flush_packets), and fsync'ed every FLUSH_INTERVAL_S from the writer thread: after a SIGKILL the file plays up
to about two seconds before the kill (it lacks only its index and duration, which a normal stop writes). Paused
spans are written as chapters titled "paused" when the file is finalized.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..errors import Unavailable
from .aiortc_internals import h264_depayload
from .assembler import AudioAssembler, VideoAssembler
from .codecs import CLOCK_RATES, H264, VP8, is_keyframe, vp8_frame_data
from .mixer import Mixer
from .plane import CALLER, RecordingInfo

log = logging.getLogger(__name__)

SPARE_AUDIO_TRACKS = 3  # audio tracks for participants other than the caller (agent, colleague, supervisor)
QUEUE_ITEMS = 4000  # frames waiting for the writer (about 20 s of one call's audio and video)
FLUSH_INTERVAL_S = 1.0
CLUSTER_MS = 1000
HEADER_WAIT_S = 3.0  # the header waits this long for a video keyframe (its picture size) before a default size
DEFAULT_SIZE = (640, 480)
REANCHOR_MS = 2000
STARTED_AT_TAG = "CALLIN_STARTED_AT"
KEYFRAME_RETRY_S = 1.0  # video waiting for a keyframe asks again after this long
MS = fractions.Fraction(1, 1000)
DRAIN_INTERVAL_S = 0.1


class RecordingFailed(Unavailable):
    code = "recording_failed"


@dataclass(slots=True)
class Track:
    """One track of the file."""

    index: int
    kind: str  # video | audio
    codec: str  # vp8 | h264 | opus
    participant: str | None  # None: a spare audio track not given to anyone yet
    packets: int = 0


@dataclass(slots=True)
class _Item:
    track: int
    data: bytes
    pts: int  # ms on the file's timeline
    keyframe: bool
    source: str = ""  # the participant (mixed audio)


class StreamClock:
    """One track's RTP timestamps on the file's millisecond timeline, anchored at arrival, monotonic."""

    def __init__(self, clock_rate: int) -> None:
        self.rate = clock_rate
        self._source: object = None
        self._last_rtp = 0
        self._ext = 0  # RTP ticks since the anchor, unwrapped
        self._anchor_ms = 0.0
        self.last_pts = -1
        self.last_arrival = 0.0  # when the frame of last_pts arrived (ms on the file's timeline)

    def pts(self, rtp_ts: int, source: object, arrival_ms: float) -> int:
        if source != self._source:
            self._anchor(rtp_ts, source, arrival_ms)
        else:
            self._ext += ((rtp_ts - self._last_rtp + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self._last_rtp = rtp_ts
            if abs(self._anchor_ms + self._ext * 1000 / self.rate - arrival_ms) > REANCHOR_MS:
                self._anchor(rtp_ts, source, arrival_ms)
        pts = max(int(round(self._anchor_ms + self._ext * 1000 / self.rate)), self.last_pts + 1)
        self.last_pts = pts
        self.last_arrival = arrival_ms
        return pts

    def _anchor(self, rtp_ts: int, source: object, arrival_ms: float) -> None:
        self._source, self._last_rtp, self._ext = source, rtp_ts, 0
        self._anchor_ms = max(arrival_ms, self.last_pts + 1)


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """The picture size in a VP8 keyframe's header (RFC 6386 9.1)."""
    if len(frame) < 10 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF


def h264_size(frame: bytes) -> tuple[int, int] | None:
    """The picture size of an H264 keyframe: decoded once, for the file's header (the media is never re-encoded)."""
    try:
        decoder = av.CodecContext.create("h264", "r")
        for picture in decoder.decode(av.Packet(frame)):
            return picture.width, picture.height
        for picture in decoder.decode(None):
            return picture.width, picture.height
    except av.FFmpegError:
        return None
    return None


class RecordingTap:
    """One participant's track (video or audio) into the recording; follows the participant's current Producer."""

    def __init__(self, recording: "Recording", participant: str, kind: str, track: int) -> None:
        self.recording = recording
        self.participant = participant
        self.kind = kind
        self.track = track  # its track's index in the file
        self.producer: Any = None
        self.clock = StreamClock(90000 if kind == "video" else 48000)
        self.needs_keyframe = kind == "video"
        self._asked_at = 0.0
        self.frames = 0
        self._assembler: Any = None

    def bind(self, producer: Any) -> None:
        """Record from this producer (None: from nothing) instead of the previous one."""
        if producer is self.producer:
            return
        if self.producer is not None and self in self.producer.taps:
            self.producer.taps.remove(self)
        self.producer = producer
        self._assembler = None
        if producer is None:
            return
        self.clock.rate = CLOCK_RATES.get(producer.codec, self.clock.rate)
        self.restart()
        producer.taps.append(self)

    def restart(self) -> None:
        """Start afresh from the next packets (a new producer, or a resume: what came between is not waited for)."""
        producer = self.producer
        if producer is None:
            return
        if self.kind == "video":
            if producer.codec == VP8:
                self._assembler = VideoAssembler(lambda _pt: VP8, self._frame, depayload=lambda p: vp8_frame_data(p.payload))
            else:
                self._assembler = VideoAssembler(lambda _pt: producer.codec, self._frame,
                                                 depayload=lambda p: h264_depayload(p.payload))
            self.wait_for_keyframe()
        else:
            self._assembler = AudioAssembler(self._frame, depayload=lambda p: p.payload)

    def wait_for_keyframe(self) -> None:
        if self.kind == "video":
            self.needs_keyframe = True
            self._asked_at = time.monotonic()
            if self.producer is not None:
                self.producer.request_keyframe()

    # -- from the producer (on the event loop)
    def on_packet(self, packet: Any, keyframe_start: bool) -> None:
        if not self.recording.paused and self._assembler is not None:
            self._assembler.add(packet)

    def on_frame(self, frame: Any, discontinuity: bool) -> None:
        if not self.recording.paused:
            self._frame(frame.data, frame.timestamp, id(self.producer), discontinuity)

    def _frame(self, data: bytes, timestamp: int, source: int, discontinuity: bool) -> None:
        if self.kind == "video":
            codec = self.producer.codec if self.producer is not None else VP8
            key = is_keyframe(codec, data)
            if discontinuity and not key and not self.needs_keyframe:
                self.wait_for_keyframe()
            if self.needs_keyframe:
                if not key:
                    if time.monotonic() - self._asked_at > KEYFRAME_RETRY_S:
                        self.wait_for_keyframe()  # the keyframe asked for was lost, or dropped here: ask again
                    return
                self.needs_keyframe = False
        else:
            key = True
        pts = self.clock.pts(timestamp, source, self.recording.now_ms())
        if self.recording.offer(self, data, pts, key):
            self.frames += 1
        elif self.kind == "video":
            self.wait_for_keyframe()

    def close(self) -> None:
        self.bind(None)


@dataclass
class RecordingStats:
    frames_queued: int = 0
    frames_written: int = 0
    dropped: int = 0
    bytes_written: int = 0


class Recording:
    """One call's file: the tracks, the taps that feed them, a bounded queue and the writer thread."""

    def __init__(self, path: str, *, video_codec: str | None, mixed_audio: bool = False,
                 title: str = "", spare_audio_tracks: int = SPARE_AUDIO_TRACKS) -> None:
        self.video_codec = video_codec if video_codec in (VP8, H264) else None
        self.container = "mkv" if self.video_codec == H264 else "webm"
        self.path = str(Path(path).absolute().with_suffix("." + self.container))
        self.mixed_audio = mixed_audio
        self.title = title
        self.tracks: list[Track] = []
        if self.video_codec is not None:
            self.tracks.append(Track(0, "video", self.video_codec.lower(), CALLER))
        if mixed_audio:
            self.tracks.append(Track(len(self.tracks), "audio", "opus", "mixed"))
        else:
            self.tracks.append(Track(len(self.tracks), "audio", "opus", CALLER))
            for _ in range(spare_audio_tracks):
                self.tracks.append(Track(len(self.tracks), "audio", "opus", None))
        self.taps: dict[tuple[str, str], RecordingTap] = {}
        self._untracked: set[str] = set()  # participants heard after every audio track was given (logged once)
        self.paused = False
        self.paused_spans: list[tuple[float, float]] = []
        self._paused_at: float | None = None
        self.stats = RecordingStats()
        # Frames for the writer: appended on the event loop (no lock, no wake-up per frame), drained by the writer
        # every DRAIN_INTERVAL_S; bounded by QUEUE_ITEMS.
        self._queue: deque[_Item] = deque()
        self._stop_event = threading.Event()
        self._t0: float | None = None  # time.monotonic() of the first media: the file's time 0
        self._t0_wall = time.time()  # until the first media arrives
        self._container: Any = None
        self._streams: list[Any] = []
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._warned = False
        self._failed: str | None = None
        self._info: RecordingInfo | None = None
        self._stopping: asyncio.Future[RecordingInfo] | None = None
        self._mixer = Mixer() if mixed_audio else None

    # -- lifecycle (event loop)
    async def open(self) -> None:
        """Create the file (in a thread: the disk may be slow) and start the writer."""
        await asyncio.get_running_loop().run_in_executor(None, self._open_file)
        self._thread = threading.Thread(target=self._run, name=f"recorder {Path(self.path).name}", daemon=True)
        self._thread.start()

    def _open_file(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Created here (PyAV opens its output only with the header): a path that cannot be written fails now.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            self._container = av.open(self.path, "w", format="webm" if self.container == "webm" else "matroska",
                                      options={"cluster_time_limit": str(CLUSTER_MS), "flush_packets": "1",
                                               "max_interleave_delta": "1000000"})
        except (OSError, av.FFmpegError) as exc:
            raise RecordingFailed(f"the recording file {self.path} cannot be written: {exc}") from None

    def now_ms(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._t0_wall = now, time.time()
        return (now - self._t0) * 1000

    def _elapsed_s(self) -> float:
        """Now on the file's timeline: where the media written so far says it is (each track's last timestamp plus
        the time since it arrived; the latest of them), so that a paused span's ends fall between the media written
        before and after it, even when the tracks' anchors were late (a busy event loop)."""
        if self._t0 is None:
            return 0.0
        now = self.now_ms()
        media = [tap.clock.last_pts + (now - tap.clock.last_arrival) for tap in self.taps.values()
                 if tap.clock.last_pts >= 0]
        return max([now, *media]) / 1000

    def observe(self, relay: Any) -> None:
        """The call's relay changed (its legs or scene): follow it (a Relay observer)."""
        self.follow(relay.legs, relay.heard())

    def follow(self, legs: Mapping[str, Any], heard: Iterable[str]) -> None:
        """Tap what the scene makes part of the call: the caller's video and audio, and the audio of every other
        participant whom someone hears. Called whenever the relay's legs or scene change."""
        wanted: dict[tuple[str, str], Any] = {}
        for participant, leg in legs.items():
            slots = ("video", "audio") if participant == CALLER else (("audio",) if participant in heard else ())
            for slot in slots:
                producer = leg.producers.get(slot)
                if producer is not None and producer.codec:
                    wanted[(participant, slot)] = producer
        for key, tap in self.taps.items():
            if key not in wanted:
                tap.bind(None)
        for key, producer in wanted.items():
            participant, kind = key
            tap = self.taps.get(key)
            if kind == "video" and producer.codec != self.video_codec:
                # The file's video track has one codec (a caller back alone in its call may have chosen another).
                if tap is not None:
                    tap.bind(None)
                if self.video_codec is not None and "video" not in self._untracked:
                    self._untracked.add("video")
                    log.warning("recording %s: the caller's video is now %s, not %s: not recorded", self.path,
                                producer.codec, self.video_codec)
                continue
            if tap is None:
                track = self.tracks[0] if kind == "video" else self._audio_track(participant)
                if track is None:
                    continue
                tap = self.taps[key] = RecordingTap(self, participant, kind, track.index)
            tap.bind(producer)

    def _audio_track(self, participant: str) -> Track | None:
        audio = [t for t in self.tracks if t.kind == "audio"]
        if self.mixed_audio:
            return audio[0]
        for track in audio:
            if track.participant == participant:
                return track
        for track in audio:
            if track.participant is None:
                track.participant = participant
                return track
        if participant not in self._untracked:
            self._untracked.add(participant)
            log.warning("recording %s: no audio track left for %s; not recorded", self.path, participant)
        return None

    def offer(self, tap: RecordingTap, data: bytes, pts: int, keyframe: bool) -> bool:
        """Queue one frame for the writer; False: dropped (the writer is behind or failed)."""
        if self._stopping is not None or self._failed is not None:
            return False
        if len(self._queue) < QUEUE_ITEMS:
            self._queue.append(_Item(tap.track, data, pts, keyframe, tap.participant))
        else:
            self.stats.dropped += 1
            if not self._warned:
                self._warned = True
                log.warning("recording %s: the writer is behind (disk stalled?): dropping media", self.path)
            return False
        self.stats.frames_queued += 1
        return True

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._paused_at = self._elapsed_s()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._end_span()
            for tap in self.taps.values():
                tap.restart()

    def _end_span(self) -> None:
        start = self._paused_at or 0.0
        self.paused_spans.append((round(start, 3), round(max(self._elapsed_s(), start), 3)))
        self._paused_at = None

    async def stop(self) -> RecordingInfo:
        """Stop taking media, let the writer finish the file, and return its info (the same on every call)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        return await asyncio.shield(self._stopping)

    async def _stop(self) -> RecordingInfo:
        if self.paused:  # paused until the end: the span ends with the file
            self.paused = False
            self._end_span()
        for tap in self.taps.values():
            tap.close()
        self._stop_event.set()
        thread = self._thread
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._info = self.info()
        return self._info

    def info(self) -> RecordingInfo:
        """What has been written so far (final once `stop` has returned)."""
        if self._info is not None:
            return self._info
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        used = [t for t in self.tracks if t.packets]
        return RecordingInfo(
            path=self.path, container=self.container, started_at=self._t0_wall, duration_s=round(self._duration_s, 3),
            size_bytes=size, paused_spans=tuple(self.paused_spans), dropped_packets=self.stats.dropped,
            tracks=tuple({"participant": t.participant, "kind": t.kind, "codec": t.codec, "index": t.index,
                          "packets": t.packets} for t in used))

    def snapshot(self) -> dict[str, Any]:
        """For stats: state and counters."""
        return {"path": self.path, "paused": self.paused, "frames_written": self.stats.frames_written,
                "tracks": {t.index: t.packets for t in self.tracks},
                "bytes_written": self.stats.bytes_written, "dropped": self.stats.dropped,
                "failed": self._failed}

    # -- the writer thread
    _duration_s = 0.0

    def _run(self) -> None:
        pending: list[_Item] = []
        started = time.monotonic()
        header = False
        last_flush = time.monotonic()
        queued = self._queue
        while True:
            stopping = self._stop_event.wait(DRAIN_INTERVAL_S)
            items = [queued.popleft() for _ in range(len(queued))]
            if self._failed is not None:
                if stopping:
                    break
                continue
            try:
                if header:
                    for item in items:
                        self._mux(item)
                else:
                    pending += items
                if not header and pending and self._header_ready(pending, started):
                    self._write_header(pending)
                    header = True
                    for waiting in pending:
                        self._mux(waiting)
                    pending = []
                if header and time.monotonic() - last_flush >= FLUSH_INTERVAL_S:
                    self._flush()
                    last_flush = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - a failing disk ends the recording, never the call
                self._fail(exc)
            if stopping:
                break
        self._finish(pending, header)

    def _header_ready(self, pending: list[_Item], started: float) -> bool:
        if self.video_codec is None:
            return True
        if any(i.track == 0 and i.keyframe for i in pending):
            return True
        return time.monotonic() - started > HEADER_WAIT_S or len(pending) > QUEUE_ITEMS

    def _write_header(self, pending: list[_Item]) -> None:
        container = self._container
        if self.title:
            container.metadata["title"] = self.title
        container.metadata[STARTED_AT_TAG] = f"{self._t0_wall:.3f}"  # for `describe`, after a crash
        for track in self.tracks:
            if track.kind == "video":
                key = next((i for i in pending if i.track == track.index and i.keyframe), None)
                size = None
                if key is not None:
                    size = vp8_size(key.data) if track.codec == "vp8" else h264_size(key.data)
                width, height = size or DEFAULT_SIZE
                stream = container.add_mux_stream(track.codec, width=width, height=height)
            else:
                stream = container.add_mux_stream("opus", rate=48000)
            stream.metadata["title"] = track.participant or f"participant {track.index}"
            self._streams.append(stream)
        # Media queued before the header was written: in order of time, video from its keyframe.
        pending.sort(key=lambda i: i.pts)

    def _mux(self, item: _Item) -> None:
        track = self.tracks[item.track]
        if track.kind == "video" and track.packets == 0 and not item.keyframe:
            return
        if self._mixer is not None and track.kind == "audio":
            for data, pts in self._mixer.add(item.source, item.data, item.pts):
                self._write(track, data, pts, True)
            return
        self._write(track, item.data, item.pts, item.keyframe)

    def _write(self, track: Track, data: bytes, pts: int, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = MS
        packet.stream = self._streams[track.index]
        if keyframe:
            packet.is_keyframe = True
        try:
            self._container.mux_one(packet)
        except av.FFmpegError as exc:
            self.stats.dropped += 1
            log.debug("recording %s: a packet was refused: %s", self.path, exc)
            return
        track.packets += 1
        self.stats.frames_written += 1
        self._duration_s = max(self._duration_s, (pts + (20 if track.kind == "audio" else 0)) / 1000)

    def _flush(self) -> None:
        os.fsync(self._fd)
        self.stats.bytes_written = os.fstat(self._fd).st_size

    def _fail(self, exc: BaseException) -> None:
        self._failed = f"{type(exc).__name__}: {exc}"
        log.error("recording %s failed: %s", self.path, self._failed)

    def _finish(self, pending: list[_Item], header: bool) -> None:
        try:
            if self._failed is None:
                if not header:
                    self._write_header(pending)
                    for waiting in pending:
                        self._mux(waiting)
                if self._mixer is not None:
                    audio = next(t for t in self.tracks if t.kind == "audio")
                    for data, pts in self._mixer.flush():
                        self._write(audio, data, pts, True)
                if self.paused_spans:
                    self._container.set_chapters([
                        {"id": n + 1, "start": int(start * 1000), "end": int(end * 1000), "time_base": MS,
                         "metadata": {"title": "paused"}}
                        for n, (start, end) in enumerate(self.paused_spans)])
            self._container.close()
            self._flush()
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def describe(path: str) -> RecordingInfo:
    """A recording file read back with PyAV: the info of a recording whose writer died with its process (a media
    worker killed mid-call), or of any recording file. Tracks with media only; paused spans from the chapters (a
    file cut short by a crash has none: they are written when it is finalized)."""
    with av.open(path) as container:
        streams = list(container.streams)
        packets = [0] * len(streams)
        end = 0.0
        for packet in container.demux():
            if packet.pts is None or packet.time_base is None:
                continue
            packets[packet.stream.index] += 1
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        spans = tuple((round(float(c["start"] * c["time_base"]), 3), round(float(c["end"] * c["time_base"]), 3))
                      for c in container.chapters() if c.get("metadata", {}).get("title") == "paused")
        started = container.metadata.get(STARTED_AT_TAG)
        tracks = tuple({"participant": s.metadata.get("title"), "kind": s.type, "codec": s.codec_context.name,
                        "index": s.index, "packets": packets[s.index]} for s in streams if packets[s.index])
    return RecordingInfo(path=str(Path(path).absolute()), container="mkv" if path.endswith(".mkv") else "webm",
                         started_at=float(started) if started else os.path.getmtime(path),
                         duration_s=round(end, 3), size_bytes=os.path.getsize(path), tracks=tracks, paused_spans=spans)
