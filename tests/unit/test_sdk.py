"""The Python caller SDK's own parts: what it reads from the gateway (validated, size-limited, never a crash), its
synthetic media (counter through a real VP8 codec, tone), its argument checks and the kiosk's token sources."""

from __future__ import annotations

import json

import av
import pytest
from aiohttp import web

from callin_sdk import CallinCaller, CallinError, counter_frame, read_counter
from callin_sdk.kiosk import build_parser, obtain_token
from callin_sdk.media import ToneAudioTrack
from callin_sdk.messages import MAX_SERVER_MESSAGE_BYTES, CallQueued, ServerMessage, Welcome, parse
from tests.support.media import audio_frame_mono, dominant_frequency
from tests.support.server import free_port

WELCOME = {"type": "welcome", "id": "a-1", "protocol": 1, "session_id": "s1", "resume_token": "rt",
           "resumed": False, "resume_grace_s": 30.0, "ice_servers": [], "max_message_bytes": 65536,
           "caller": {"subject": "k1"}, "agent": None, "call": None, "replayed": 0, "replay_complete": True,
           "a_field_from_a_later_version": {"x": 1}}


def test_known_messages_are_validated_and_unknown_fields_and_types_are_ignored():
    welcome = parse(json.dumps(WELCOME))
    assert isinstance(welcome, Welcome) and welcome.resume_token == "rt" and welcome.caller == {"subject": "k1"}
    queued = parse('{"type":"call.queued","id":"r2","call_id":"c1","position":2,"queue_length":3,'
                   '"estimated_wait_s":null,"queue":"default"}')
    assert isinstance(queued, CallQueued) and queued.estimated_wait_s is None
    later = parse('{"type":"something.new","seq":4,"whatever":[1,2]}')
    assert type(later) is ServerMessage and later.seq == 4
    caption = parse('{"type":"caption","seq":9,"call_id":"c1","speaker":{"role":"agent","name":"Alice"},"utterance":2,'
                    '"text":"my card is [card number]","final":true,"start_s":1.0,"end_s":2.5}')
    assert type(caption).__name__ == "Caption" and caption.text == "my card is [card number]" and caption.final
    cut = parse('{"type":"call.interrupted","seq":5,"call_id":"c1","rejoined_call_id":"c2","reason":"node_lost"}')
    assert type(cut).__name__ == "CallInterrupted" and cut.rejoined_call_id == "c2" and cut.reason == "node_lost"


@pytest.mark.parametrize("text, why", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "not an object"),
    ('{"type":"call.queued","call_id":"c1","position":"first","queue_length":1,"queue":"q"}', "at position"),
    ('{"type":"welcome","id":"x"}', "at session_id"),
    ('{"type":"call.interrupted","call_id":"c1","rejoined_call_id":""}', "at rejoined_call_id"),
    ("{" + '"type":"x","pad":"' + "a" * MAX_SERVER_MESSAGE_BYTES + '"}', "over the SDK's limit"),
])
def test_a_message_the_sdk_cannot_read_is_a_typed_error_with_a_reason(text, why):
    with pytest.raises(CallinError) as caught:
        parse(text)
    assert caught.value.code == "bad_server_message" and why in caught.value.reason


def test_the_counter_pattern_survives_a_real_vp8_encode_and_decode():
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt, encoder.bit_rate = 320, 240, "yuv420p", 300_000
    decoder = av.CodecContext.create("libvpx", "r")
    seen = []
    for n in (0, 1, 2, 1000, 65535):
        frame = counter_frame(n)
        frame.pts = n
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                seen.append(read_counter(decoded))
    for packet in encoder.encode(None):
        for decoded in decoder.decode(packet):
            seen.append(read_counter(decoded))
    assert seen == [0, 1, 2, 1000, 65535]
    import numpy as np

    grey = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 128, dtype=np.uint8), format="rgb24")
    assert read_counter(grey) is None  # not our pattern
    with pytest.raises(ValueError):
        counter_frame(1, 100, 20)


async def test_the_tone_has_its_frequency():
    track = ToneAudioTrack(880)
    frames = [await track.recv() for _ in range(5)]
    import numpy as np

    assert abs(dominant_frequency(np.concatenate([audio_frame_mono(f) for f in frames]), 48000) - 880) < 15
    with pytest.raises(ValueError):
        ToneAudioTrack(5)


async def test_bad_arguments_are_refused_before_anything_is_sent():
    with pytest.raises(CallinError) as caught:
        CallinCaller("callin.example.com", "t")
    assert caught.value.code == "invalid_argument"
    caller = CallinCaller("http://127.0.0.1:9", "t")
    with pytest.raises(CallinError) as caught:
        await caller.start_call(call_type="fax")
    assert caught.value.code == "invalid_argument" and "fax" in caught.value.reason
    with pytest.raises(CallinError) as caught:
        await caller.send_chat("")
    assert caught.value.code == "invalid_argument"
    with pytest.raises(CallinError) as caught:
        await caller.send_chat("hello")
    assert caught.value.code == "invalid_state"
    with pytest.raises(CallinError) as caught:
        await caller.connect()  # nothing listens on port 9
    assert caught.value.code == "network_error" and caught.value.retryable
    assert caller.state == "idle"


async def test_the_kiosk_needs_a_token_source(monkeypatch):
    monkeypatch.delenv("CALLIN_TOKEN", raising=False)
    monkeypatch.delenv("CALLIN_CALLER_TOKEN_SECRET", raising=False)
    with pytest.raises(CallinError) as caught:
        await obtain_token(build_parser().parse_args([]))
    assert caught.value.code == "token_unavailable" and "--demo" in caught.value.reason
    monkeypatch.setenv("CALLIN_TOKEN", "from-env")
    assert await obtain_token(build_parser().parse_args([])) == "from-env"


async def test_garbage_from_the_gateway_is_reported_and_skipped_never_a_crash():
    """A fake gateway that answers hello with garbage first, then a welcome, then an oversized frame."""
    async def ws_caller(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = json.loads((await ws.receive()).data)
        await ws.send_str("{broken")
        await ws.send_str('{"type":"queue.position","call_id":7}')
        await ws.send_str(json.dumps({**WELCOME, "id": hello["id"]}))
        await ws.send_str("x" * (MAX_SERVER_MESSAGE_BYTES + 10))
        async for _ in ws:  # open until the SDK closes it (over its size limit), not a fixed 5 s
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws/caller", ws_caller)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    caller = CallinCaller(f"http://127.0.0.1:{port}", "token", resume=False)
    try:
        mark = caller.mark()
        welcome = await caller.connect()
        assert welcome.session_id == "s1" and caller.state == "ready"
        errors = [e for e in caller.events[mark:] if e.name == "error"]
        assert [e["code"] for e in errors[:2]] == ["bad_server_message", "bad_server_message"]
        assert "not valid JSON" in errors[0]["reason"] and "call_id" in errors[1]["reason"]
        # The oversized frame: the socket is closed by the SDK's size limit; without resume the caller is idle.
        await caller.wait_for("state", lambda e: e["state"] == "idle", since=mark, timeout=10)
        too_big = [e for e in caller.events[mark:] if e.name == "error"][2]
        assert too_big["code"] == "bad_server_message" and "connection failed" in too_big["reason"]
    finally:
        await caller.close()
        await runner.cleanup()
