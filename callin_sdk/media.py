"""What the caller sends (a `MediaSource`) and what becomes of the agent's media (a `MediaSink`).

Sources: `synthetic()` (a video whose pixels carry a frame counter, and a tone: for demos, self-tests and
monitoring probes), `camera("/dev/video0")` (a v4l2 device through aiortc's MediaPlayer), `media_file(path)` (a
file or stream URL, looped). Sinks: `Blackhole()` (consume and drop: the default), `FrameCallback(on_video=...,
on_audio=...)` (hand every decoded frame to your code), `Recorder(path)` (aiortc's MediaRecorder, e.g. an .mp4).

The counter pattern: frame n of `synthetic()` is a grey picture whose top 32 rows hold 16 cells, cell i white over
black when bit i of n is 1 and black over white when it is 0; `read_counter()` reads it back (None when the cells
are not clean). It survives VP8 at low bitrates, so a receiver can prove which frames arrived.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fractions
import math
import time
from collections.abc import Awaitable, Callable  # noqa: F401 (Awaitable: in a string annotation)
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError, MediaStreamTrack

VIDEO_CLOCK = 90000
COUNTER_BITS = 16
COUNTER_CELL = 16  # pixels per cell row


def counter_frame(counter: int, width: int = 320, height: int = 240) -> av.VideoFrame:
    """A yuv420p frame showing `counter` (16 bits) as cells over a grey background (see the module's doc)."""
    if width < 16 * 8 or height < 2 * COUNTER_CELL or width % 2 or height % 2:
        raise ValueError("the counter pattern needs an even size of at least 128x32")
    cell = width // 16
    top, bottom = bytearray(b"\x80" * width), bytearray(b"\x80" * width)
    for i in range(COUNTER_BITS):
        bit = (counter >> i) & 1
        x = (i % 16) * cell
        top[x : x + cell] = (b"\xff" if bit else b"\x00") * cell
        bottom[x : x + cell] = (b"\x00" if bit else b"\xff") * cell
    grey = b"\x80" * width
    luma = bytes(top) * COUNTER_CELL + bytes(bottom) * COUNTER_CELL + grey * (height - 2 * COUNTER_CELL)
    frame = av.VideoFrame(width, height, "yuv420p")
    _fill(frame.planes[0], luma, width, height)
    chroma = b"\x80" * ((width // 2) * (height // 2))
    _fill(frame.planes[1], chroma, width // 2, height // 2)
    _fill(frame.planes[2], chroma, width // 2, height // 2)
    return frame


def _fill(plane: Any, data: bytes, width: int, height: int) -> None:
    if plane.line_size == width:
        plane.update(data)
        return
    padded = bytearray(plane.line_size * height)
    for row in range(height):
        padded[row * plane.line_size : row * plane.line_size + width] = data[row * width : (row + 1) * width]
    plane.update(bytes(padded))


def read_counter(frame: av.VideoFrame) -> int | None:
    """The counter shown by a frame of `synthetic()` (after any codec), or None when the cells are not clean."""
    grey = frame.reformat(format="gray")
    plane = grey.planes[0]
    data, stride, width = bytes(plane), plane.line_size, grey.width
    cell = width // 16
    if cell < 8 or grey.height < 2 * COUNTER_CELL:
        return None

    def mean(y0: int, y1: int, x0: int, x1: int) -> float:
        total = sum(sum(data[y * stride + x0 : y * stride + x1]) for y in range(y0, y1))
        return total / ((y1 - y0) * (x1 - x0))

    value = 0
    for i in range(COUNTER_BITS):
        x = (i % 16) * cell
        upper = mean(2, COUNTER_CELL - 2, x + 3, x + cell - 3)
        lower = mean(COUNTER_CELL + 2, 2 * COUNTER_CELL - 2, x + 3, x + cell - 3)
        if abs(upper - lower) < 100:
            return None
        if upper > lower:
            value |= 1 << i
    return value


class CounterVideoTrack(MediaStreamTrack):
    """Video at `fps` whose frame n shows n (see `counter_frame`)."""

    kind = "video"

    def __init__(self, fps: int = 15, width: int = 320, height: int = 240) -> None:
        super().__init__()
        counter_frame(0, width, height)  # refuses an unusable size here, not in the sender's task
        self.fps, self.width, self.height = fps, width, height
        self.counter = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.counter / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = counter_frame(self.counter, self.width, self.height)
        frame.pts = int(self.counter * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.counter += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at `frequency` Hz: 48 kHz mono, 20 ms frames."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        if not 20 <= frequency <= 20000 or not 0 < amplitude <= 1:
            raise ValueError("the tone needs 20-20000 Hz and an amplitude in (0, 1]")
        self.frequency, self.amplitude = frequency, amplitude
        self.rate = 48000
        self.samples = int(AUDIO_PTIME * self.rate)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._pts / self.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(self.samples_from(self._pts))
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += self.samples
        return frame

    def samples_from(self, first: int) -> bytes:
        """One frame of the tone from sample `first` on: signed 16-bit mono."""
        step = 2 * math.pi * self.frequency / self.rate
        scale = self.amplitude * 32767
        return array.array("h", (int(scale * math.sin(step * (first + n))) for n in range(self.samples))).tobytes()


# ------------------------------------------------------------------------------------------------------ sources
@dataclass
class MediaSource:
    """The tracks a call sends: `audio` (the microphone's place) and `video` (camera or screen), either may be None.
    The same source can serve several calls one after the other (a redial); `stop()` ends it for good."""

    audio: MediaStreamTrack | None = None
    video: MediaStreamTrack | None = None
    label: str = "custom"
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for track in (self.audio, self.video):
            if track is not None:
                track.stop()
        for closer in self._closers:
            with contextlib.suppress(Exception):
                closer()


def synthetic(*, fps: int = 15, width: int = 320, height: int = 240, tone_hz: float | None = 440.0,
              video: bool = True) -> MediaSource:
    """A frame-counter video and a tone (no device needed): demos, self-tests, monitoring probes."""
    return MediaSource(audio=ToneAudioTrack(tone_hz) if tone_hz else None,
                       video=CounterVideoTrack(fps, width, height) if video else None, label="synthetic")


def camera(device: str = "/dev/video0", *, size: str = "640x480", fps: int = 30,
           audio_device: str | None = None, input_format: str | None = None) -> MediaSource:
    """A V4L2 camera (Linux), e.g. a kiosk's or an ATM's, through aiortc's MediaPlayer; `audio_device` an ALSA
    device (e.g. "hw:1") for the microphone. `input_format` picks the camera's pixel format (e.g. "mjpeg")."""
    from aiortc.contrib.media import MediaPlayer

    options = {"video_size": size, "framerate": str(fps)}
    if input_format:
        options["input_format"] = input_format
    try:
        player = MediaPlayer(device, format="v4l2", options=options)
    except Exception as exc:  # av raises its own errors (FileNotFoundError, PermissionError, av.FFmpegError)
        from .errors import CallinError

        raise CallinError("media_error", f"the camera {device} could not be opened: {exc}") from None
    source = MediaSource(video=player.video, label=f"camera {device}", _closers=[lambda: _stop_player(player)])
    if audio_device:
        try:
            mic = MediaPlayer(audio_device, format="alsa")
        except Exception as exc:
            source.stop()
            from .errors import CallinError

            raise CallinError("media_error", f"the microphone {audio_device} could not be opened: {exc}") from None
        source.audio = mic.audio
        source._closers.append(lambda: _stop_player(mic))
    return source


def media_file(path: str, *, loop: bool = True) -> MediaSource:
    """A video/audio file (or a stream URL ffmpeg can read), played in real time, looped by default."""
    from aiortc.contrib.media import MediaPlayer

    try:
        player = MediaPlayer(path, loop=loop)
    except Exception as exc:
        from .errors import CallinError

        raise CallinError("media_error", f"the file {path} could not be opened: {exc}") from None
    return MediaSource(audio=player.audio, video=player.video, label=f"file {path}",
                       _closers=[lambda: _stop_player(player)])


def _stop_player(player: Any) -> None:
    for track in (player.audio, player.video):
        if track is not None:
            track.stop()


# ------------------------------------------------------------------------------------------------------ sinks
class MediaSink(Protocol):
    """Receives the tracks of a call's peer connection once it is negotiated (slots: "audio" the agent's voice,
    "video" the agent's camera, "audio:1" a barging supervisor) and lets go of them when the call's media ends.
    A sink serves one call at a time and may be attached again for the next one."""

    async def attach(self, tracks: dict[str, MediaStreamTrack]) -> None: ...

    async def detach(self) -> None: ...


class _Consumer:
    """Reads tracks until they end, handing each frame to `handle` (aiortc's queues are unbounded: a track nobody
    reads piles up frames)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    async def handle(self, slot: str, frame: Any) -> None:  # pragma: no cover - overridden
        return None

    async def attach(self, tracks: dict[str, MediaStreamTrack]) -> None:
        await self.detach()
        self._tasks = [asyncio.ensure_future(self._drain(slot, track)) for slot, track in tracks.items()]

    async def _drain(self, slot: str, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            await self.handle(slot, frame)

    async def detach(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


class Blackhole(_Consumer):
    """Consume the agent's media and drop it."""


FrameHandler = Callable[[Any], "Awaitable[None] | None"]


class FrameCallback(_Consumer):
    """Hand every decoded frame of the agent to your code: `on_video(frame)` with an av.VideoFrame,
    `on_audio(frame)` with an av.AudioFrame of the agent's voice, `on_aux_audio(frame)` for a barging supervisor.
    A callback may be a plain function or a coroutine function; a slow one delays the next frame of its track."""

    def __init__(self, on_video: FrameHandler | None = None, on_audio: FrameHandler | None = None,
                 on_aux_audio: FrameHandler | None = None) -> None:
        super().__init__()
        self._handlers = {"video": on_video, "audio": on_audio, "audio:1": on_aux_audio}

    async def handle(self, slot: str, frame: Any) -> None:
        handler = self._handlers.get(slot)
        if handler is not None:
            result = handler(frame)
            if asyncio.iscoroutine(result):
                await result


class Recorder:
    """Record the agent's voice and video to a file with aiortc's MediaRecorder (format from the extension, e.g.
    "agent.mp4"; every call overwrites it unless `path` contains "{n}", numbered from 1)."""

    def __init__(self, path: str, *, video: bool = True) -> None:
        self.path = path
        self.video = video
        self._recorder: Any = None
        self._count = 0
        self._aux = Blackhole()

    async def attach(self, tracks: dict[str, MediaStreamTrack]) -> None:
        from aiortc.contrib.media import MediaRecorder

        await self.detach()
        self._count += 1
        recorder = MediaRecorder(self.path.replace("{n}", str(self._count)))
        if "audio" in tracks:
            recorder.addTrack(tracks["audio"])
        if self.video and "video" in tracks:
            recorder.addTrack(tracks["video"])
        await recorder.start()
        self._recorder = recorder
        await self._aux.attach({k: v for k, v in tracks.items() if k == "audio:1" or (k == "video" and not self.video)})

    async def detach(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            await recorder.stop()
        await self._aux.detach()
