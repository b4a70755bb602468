"""The benchmark's `--generator blaster` (bench/blaster.py, bench/_blaster.c) against a real Callin gateway: once
aiortc has set the calls up, the C thread carries their media, and the relay forwards it.

Checked by content: every frame counted as identified was reassembled from packets whose payload tag names this
call and stream (a broken tag, or a blaster that sends nothing, leaves no identified frame); 30 fps both ways'
audio at 50 packets/s. ICE consent checks are made every ~0.5 s here (aioice's CONSENT_INTERVAL, for both the relay
and the generator, which share this process), so a relay whose checks went unanswered (STUN not handed back to aioice
from the C thread) would fail the pair after ~3 s of the hold and end the call (media_failed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import time
from array import array
from pathlib import Path
from types import SimpleNamespace

import aioice.ice
import pytest
from pylibsrtp import Policy, Session

from gateway.config import DemoAgent
from gateway.media.aiortc_internals import srtp_context
from tests.support.server import TEST_SECRET, running_gateway

pytestmark = pytest.mark.media

CALLS = 2
HOLD_S = 5.0


def loadgen_args(url: str, lock: Path) -> argparse.Namespace:
    return argparse.Namespace(url=url, secret=TEST_SECRET, janus=None, admin_key="", calls=CALLS, hold=HOLD_S,
                              warmup=1.0, stagger=0.05, start_at=0.0, agent_prefix="bench", agent_offset=0,
                              agent_password="bench-password", address="127.0.0.1", lock=str(lock),
                              generator="blaster")


@pytest.mark.timeout(90)
async def test_blaster_carries_identified_media_through_the_relay(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import loadgen

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    agents = [DemoAgent(username=f"bench{i}", password="bench-password", display_name=f"Bench {i}")
              for i in range(CALLS)]
    async with running_gateway(demo_agents=agents) as gw:
        out = await loadgen.run(loadgen_args(gw.base_url, tmp_path / "lock"))

    assert out["generator"] == "blaster" and out["errors"] == 0
    for call in out["calls"]:
        assert call["error"] is None and call["ended"] is None, call  # the calls lived through the hold
        assert call["ok"]
        # ~30 fps sent by the C thread, received by the agent's peer, each frame identified by its tag
        assert call["video_sent"] >= 28 * HOLD_S, call["video_sent"]
        assert 27 <= call["video_fps"] <= 33, call["video_fps"]
        assert call["video_identified"] >= 0.95 * call["video_received"] > 0, call
        assert call["freezes"] == 0, call  # no stall (e.g. the relay failing the ICE pair on unanswered checks)
        assert len(call["video_delay_ms"]) == call["video_identified"]
        assert all(0 <= d < 500 for d in call["video_delay_ms"])
        # Opus at 50/s both ways, identified packets timed
        assert call["audio_sent"] >= 48 * HOLD_S and call["audio_received"] >= 0.95 * call["audio_sent"], call
        assert call["audio_back_received"] >= 0.95 * call["audio_back_sent"] >= 0.95 * 48 * HOLD_S, call
        assert len(call["audio_delay_ms"]) >= 0.95 * call["audio_received"]
    media = out["blaster"]
    assert media["handed_back"] > 0  # STUN (consent checks and their answers) went back to aioice
    assert media["bad_srtp"] == 0 and media["rtcp"] > 0


def count(times: bytes) -> int:
    return len(array("q", times))


def sessions() -> tuple[Session, Session]:
    """An SRTP sender and receiver sharing a key (what DTLS gives each side of a peer connection)."""
    key = os.urandom(30)
    return (Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)),
            Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)))


async def test_tags_identify_frames_of_their_own_call_and_stream_only() -> None:
    """Two sockets pairs, no relay: one receiver expects the call its sender tags (7), the other a different call (8)
    for the same stream. Only the first identifies frames; both count the frames they get by the marker bit. A PLI
    (SRTCP, to the sender) makes its next frame a keyframe."""
    from bench.blaster import Blaster

    frames = [bytes([i]) * (3000 + 100 * i) for i in range(6)]
    loop = SimpleNamespace(key=frames, delta=frames, opus=[b"\xfc" + bytes(80)] * 5)
    blaster = Blaster(loop)  # type: ignore[arg-type]
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    ports = [s.getsockname()[1] for s in socks]
    native = blaster.native
    keep = []
    received = {}
    senders = []
    for pair, expected in ((0, 7), (1, 8)):
        a, b = socks[2 * pair], socks[2 * pair + 1]
        tx, rx = sessions()
        back_tx, back_rx = sessions()
        keep += [tx, rx, back_tx, back_rx]
        sender = native.add_peer(a.fileno(), "127.0.0.1", ports[2 * pair + 1], srtp_context(tx), srtp_context(back_rx))
        native.add_send(sender, 1, 7, 1, 0x1234 + pair, 96, 1000, 5000, 0, b"", 0)
        receiver = native.add_peer(b.fileno(), "127.0.0.1", ports[2 * pair], srtp_context(back_tx), srtp_context(rx))
        received[expected] = (receiver, native.add_recv(receiver, 1, expected, 1, (96,)))
        senders.append((sender, back_tx))
        native.start_peer(sender)
        native.start_peer(receiver)
    deadline = time.monotonic() + 5
    while count(native.received(*received[8])["all"]) < 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # a PLI to the first sender (from its receiver's side): its next frame is a keyframe
    sender, back_tx = senders[0]
    keyframes = native.sent(sender, 0)["keyframes"]
    pli = struct.pack("!BBHII", 0x81, 206, 2, 1, 0x1234)
    socks[1].sendto(back_tx.protect_rtcp(pli), ("127.0.0.1", ports[0]))
    while native.sent(sender, 0)["keyframes"] == keyframes and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    plis = native.counters(sender)["plis"]
    mine, other = native.received(*received[7]), native.received(*received[8])
    await blaster.close()
    for s in socks:
        s.close()

    assert plis == 1 and native.sent(sender, 0)["keyframes"] == keyframes + 1
    for got in (mine, other):
        assert count(got["all"]) >= 30 and got["packets"] >= 3 * count(got["all"])  # 3 packets per frame
    assert count(mine["identified"]) >= count(mine["all"]) - 1 and mine["unidentified"] == 0
    delays = array("q", mine["delays"])
    assert len(delays) == count(mine["identified"]) and all(0 <= d < 200_000_000 for d in delays)
    assert other["identified"] == b"" and other["unidentified"] == other["packets"] > 0
