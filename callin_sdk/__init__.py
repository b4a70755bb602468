"""Callin caller SDK for Python: kiosks, video tellers, ATMs and probes place Callin calls with asyncio and aiortc.

    from callin_sdk import CallinCaller, synthetic

    async with CallinCaller("https://callin.example.com", token=my_backend_token) as caller:
        caller.on("answered", lambda e: print("talking to", e["agent_name"]))
        await caller.start_call(video=synthetic())          # or video="/dev/video0", or a file
        await caller.wait_for("ended", timeout=3600)

Resume after a dropped socket and redial after a media failure are built in. Reference: docs/sdk-python.md.
"""

from .caller import CALL_TYPES, CallEvent, CallinCaller
from .errors import CallinError
from .media import (Blackhole, CounterVideoTrack, FrameCallback, MediaSink, MediaSource, Recorder, ToneAudioTrack,
                    camera, counter_frame, media_file, read_counter, synthetic)

__all__ = [
    "CALL_TYPES", "Blackhole", "CallEvent", "CallinCaller", "CallinError", "CounterVideoTrack", "FrameCallback",
    "MediaSink", "MediaSource", "Recorder", "ToneAudioTrack", "camera", "counter_frame", "media_file",
    "read_counter", "synthetic",
]
__version__ = "0.1.0"
