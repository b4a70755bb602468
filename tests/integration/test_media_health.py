"""Dead legs and slow viewers: nothing is left hanging, and one slow viewer does not cost the others.

Real aiortc peers; the network faults are real too: the caller's address is taken away from the namespace
(`ip addr del`), a supervisor's link is shaped to a few hundred kbit/s (`tc htb`).
"""

from __future__ import annotations

import time

import pytest

from tests.support import netns
from tests.support.api import Api
from tests.support.clients import Agent, Caller, wait_until
from tests.support.server import running_gateway

pytestmark = pytest.mark.media

CALLER_HZ, ALICE_HZ, SAM_HZ = 880, 440, 660


async def hears(sink, expected_hz: float, frames: int = 30, timeout: float = 10) -> None:
    mark = sink.mark()
    await wait_until(lambda: sink.audio_since(mark) >= frames, timeout)
    freq = sink.frequency_since(mark, at_most=frames)
    assert abs(freq - expected_hz) < 30, f"heard {freq:.0f} Hz, expected {expected_hz} Hz"


async def connected_call(gw, caller_token, caller_addresses=None):
    alice = Agent(gw.base_url)
    await alice.connect()
    caller = Caller(gw.base_url, caller_token(), addresses=caller_addresses)
    await caller.connect()
    await caller.start("video", tone_hz=CALLER_HZ)
    offer = await alice.wait_offer()
    await alice.accept(offer["call_id"], tone_hz=ALICE_HZ)
    await wait_until(lambda: "audio" in alice.peer.slots and "audio" in caller.peer.slots, 10)
    await hears(alice.peer.slots["audio"], CALLER_HZ)
    return caller, alice, offer["call_id"]


async def ended_as_media_failed(gw, alice: Agent, call_id: str, timeout: float) -> dict:
    ended = await alice.ws.wait("call.ended", timeout=timeout)
    assert ended["call_id"] == call_id and ended["reason"] == "media_failed" and ended["by"] == "system", ended
    api = Api(gw.base_url)
    await api.login("admin", "admin-demo")
    record = await api.ended_record(call_id)
    await api.close()
    assert record["outcome"] == "failed" and record["end_reason"] == "media_failed", record
    return record


@pytest.mark.parametrize("relay_mode", ["packet", "frame"])
async def test_caller_closing_its_peer_connection_ends_the_call(caller_token, relay_mode):
    """No hang-up, the caller's app just closed its peer connection: the call must not stay connected."""
    async with running_gateway(relay_mode=relay_mode, media_failure_grace_s=30) as gw:
        caller, alice, call_id = await connected_call(gw, caller_token)
        await caller.peer.pc.close()
        # The remote closed DTLS: a failure at once, no grace needed (there is no way back without ICE restart).
        await ended_as_media_failed(gw, alice, call_id, timeout=10)
        closed = [m for m in alice.ws.of_type("media.state") if m["leg"] == "caller" and m["state"] == "closed"]
        assert closed, alice.ws.of_type("media.state")
        failed = [e for e in gw.board.calls[call_id].events if e.kind == "media_failed"]
        assert failed and failed[0].detail == {"leg": "caller", "cause": "closed_by_remote"}, failed
        assert gw.board.agents["alice"].status.value == "available"
        assert call_id not in gw.board.relays
        await caller.close()
        await alice.close()


async def test_caller_losing_its_address_is_reported_then_recovers_then_fails(caller_token):
    """The caller's only address disappears mid-call (network change): the agent is told `disconnected` within the
    watchdog's silence; the address comes back in time: `connected`, media flows again; gone for good: after the
    grace the call ends with media_failed and a record."""
    silence, grace = 1.0, 4.0
    async with running_gateway(media_silence_s=silence, media_failure_grace_s=grace) as gw:
        async with netns.extra_address("10.77.0.2") as address:
            caller, alice, call_id = await connected_call(gw, caller_token, caller_addresses=[address])
            caller_leg = gw.board.relays[call_id].caller

            def states(since: int = 0) -> list[str]:
                return [m["state"] for m in alice.ws.messages[since:]
                        if m.get("type") == "media.state" and m["leg"] == "caller"]

            mark = len(alice.ws.messages)
            await netns.remove_address(address)
            removed_at = time.monotonic()
            await alice.ws.wait(lambda m: m.get("type") == "media.state" and m["state"] == "disconnected",
                                timeout=silence + 5, since=mark)
            assert time.monotonic() - removed_at < silence + 3
            assert caller_leg.watchdog.state.value == "disconnected"
            # The caller is told too (over its signaling socket, which still works).
            await caller.ws.wait(lambda m: m.get("type") == "media.state" and m["state"] == "disconnected", 5)
            assert gw.board.calls[call_id].state.value == "connected"

            # Back within the grace: connected again, the caller's voice with it, the call goes on.
            await netns.add_address(address)
            await alice.ws.wait(lambda m: m.get("type") == "media.state" and m["state"] == "connected"
                                and m["leg"] == "caller", timeout=5, since=mark)
            await hears(alice.peer.slots["audio"], CALLER_HZ)
            assert gw.board.calls[call_id].state.value == "connected"

            # Gone for good: disconnected, and after the grace media_failed with a record.
            mark = len(alice.ws.messages)
            await netns.remove_address(address)
            await alice.ws.wait(lambda m: m.get("type") == "media.state" and m["state"] == "disconnected",
                                timeout=silence + 5, since=mark)
            told_at = time.monotonic()
            record = await ended_as_media_failed(gw, alice, call_id, timeout=grace + 10)
            assert time.monotonic() - told_at >= grace - 1.0
            assert states(mark)[0] == "disconnected"
            causes = [e["detail"].get("cause") for e in record["events"] if e["kind"] == "media_failed"]
            assert causes == ["media_timeout"], record["events"]
            await caller.close()
            await alice.close()
