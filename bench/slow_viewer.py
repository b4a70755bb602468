"""One slow viewer: what it costs the caller and the other viewers, and what it gets itself.

    unshare -rn sh -c 'ip link set lo up && python -m bench.slow_viewer --seconds 20 --rate 250kbit'
    ... --loop uvloop   (the gateway, and the test clients, on uvloop's event loop: needs uvloop installed)

A real gateway (in-process, default settings) with a caller (VP8 320x240@30 with busy pictures, ~500 kbit/s, and
Opus, ~130 kbit/s on the wire), an agent, and a supervisor (hearing the caller only, unless --aux-audio) whose link is shaped with `tc htb` (the supervisor's peer has its own address on lo;
packets to it leave at `--rate`). For `--seconds` of shaping it counts:
  - keyframe requests reaching the caller (each keyframe goes to every viewer) and keyframes the caller sent;
  - the supervisor's video delay (caller's send -> supervisor's decode, by the frame counter in the pixels) and
    frames received in the last third;
  - the supervisor's audio delay: the caller's tone changes near the end; time until the supervisor hears it;
  - the agent's video frames (should be unaffected).
Run it from another tree (e.g. an older commit with this script and tests/support copied in) for a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))

ADDRESS = "10.77.0.3"


def noisy() -> None:
    """Busy pictures below the counter cells, so that the caller's encoder really uses its ~500 kbit/s (the counter
    track draws its frames with callin_sdk.media.counter_frame)."""
    from callin_sdk import media
    from tests.support.media import busy_counter_frames

    media.counter_frame = busy_counter_frames(media.counter_frame)


async def main(seconds: float, rate: str, aux_audio: bool) -> dict:
    from gateway.auth import mint_caller_token
    from gateway.media import aiortc_internals as internals
    from tests.support import clients, netns
    from tests.support.clients import Agent, Caller, wait_until
    from tests.support.server import TEST_SECRET, running_gateway

    noisy()

    async with netns.extra_address(ADDRESS), running_gateway() as gw:
        alice = Agent(gw.base_url)
        await alice.connect()
        caller = Caller(gw.base_url, mint_caller_token(TEST_SECRET, sub="bench", name="Bench"))
        await caller.connect()
        await caller.start("video", tone_hz=880)
        offer = await alice.wait_offer()
        call_id = offer["call_id"]
        await alice.accept(call_id)
        sam = Agent(gw.base_url, "sam", "sam-demo")
        await sam.connect(available=False)
        await sam.ws.request({"type": "supervise.start", "call_id": call_id, "mode": "monitor"})
        clients.LOOPBACK[:] = [ADDRESS]  # the supervisor's peer gathers on its own address only
        try:
            await sam.join_media(call_id, aux_audio=aux_audio)
        finally:
            clients.LOOPBACK[:] = ["127.0.0.1"]
        await wait_until(lambda: "video" in sam.peer.slots and len(sam.peer.slots["video"].counters) > 30, 15)
        await wait_until(lambda: "video" in alice.peer.slots and len(alice.peer.slots["video"].counters) > 30, 15)

        sender = next(t.sender for t in caller.peer.pc.getTransceivers() if t.kind == "video")
        asked = internals.count_keyframe_requests(sender)
        producer = gw.board.relays[call_id].caller.producers["video"]
        keyframes_before = producer.keyframes
        sam_video, alice_video = sam.peer.slots["video"], alice.peer.slots["video"]
        sam_audio = sam.peer.slots["audio"]
        alice_frames = len(alice_video.counters)
        sam_frames = len(sam_video.counters)

        async with netns.shaped(ADDRESS, rate):
            start = time.monotonic()
            await asyncio.sleep(seconds * 2 / 3)
            last_third = len(sam_video.arrivals)
            await asyncio.sleep(seconds / 3 - 3)
            # The caller's tone changes: how long until the supervisor hears it?
            audio_mark = sam_audio.mark()
            tone = next(s.track for s in caller.peer.pc.getSenders() if s.track and s.track.kind == "audio")
            changed = time.monotonic()
            tone.frequency = 1320
            audio_delay = None
            while time.monotonic() - changed < 3:
                await asyncio.sleep(0.02)
                if sam_audio.audio_since(audio_mark) >= 3 and abs(sam_audio.frequency_since(audio_mark, 3) - 1320) < 60:
                    audio_delay = time.monotonic() - changed
                    break
            shaped_for = time.monotonic() - start

        sent_at = caller.video.sent_at
        delays = [arrived - sent_at[c] for c, arrived in
                  zip(sam_video.counters[sam_frames:], sam_video.arrivals[sam_frames:])
                  if c is not None and c in sent_at]
        result = {
            "shaped_s": round(shaped_for, 1),
            "rate": rate,
            "keyframe_requests_to_caller": len(asked),
            "keyframes_from_caller": producer.keyframes - keyframes_before,
            "supervisor_video_frames": len(sam_video.counters) - sam_frames,
            "supervisor_video_frames_last_third": len(sam_video.arrivals) - last_third,
            "supervisor_video_delay_p50_s": round(statistics.median(delays), 2) if delays else None,
            "supervisor_video_delay_max_s": round(max(delays), 2) if delays else None,
            "supervisor_audio_delay_s": round(audio_delay, 2) if audio_delay is not None else ">3",
            "agent_video_frames": len(alice_video.counters) - alice_frames,
            "video_events": [m for m in sam.ws.messages if m.get("type") == "media.video"],
        }
        await sam.close()
        await caller.close()
        await alice.close()
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", default="250kbit")
    parser.add_argument("--aux-audio", action="store_true", help="the supervisor also hears the agent (+130 kbit/s)")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the event loop")
    args = parser.parse_args()
    if not {name for _, name in socket.if_nameindex()} <= {"lo"}:
        raise SystemExit("run inside a loopback-only namespace: unshare -rn sh -c 'ip link set lo up && python -m ...'")
    if args.loop == "uvloop":
        import uvloop

        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=new_loop) as runner:
        result = runner.run(main(args.seconds, args.rate, args.aux_audio))
    print(json.dumps({"loop": args.loop, **result}, indent=1))
