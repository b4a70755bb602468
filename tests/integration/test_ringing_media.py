"""Media set up while a call rings (docs/protocol.md, "Media while ringing"), with real aiortc peers: the agent's
leg connects during the ring, nothing of the caller reaches an agent who has not accepted (nor anything of the agent
the caller), the accept opens the gate with the cached keyframe at once, and a ring that ends unanswered (declined,
rang out, the caller hung up) closes the pre-connected leg, leaving none behind."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.clients import Agent, Caller, Peer, wait_until
from tests.support.server import running_gateway

pytestmark = pytest.mark.media


async def received_packets(pc) -> int:
    """RTP packets a test peer received (inbound-rtp), whatever decoded."""
    report = await pc.getStats()
    return sum(getattr(s, "packetsReceived", 0) for s in report.values() if s.type == "inbound-rtp")


def frames_out(leg) -> int:
    return sum(c.stats.frames_out for c in leg.consumers.values())


async def ringing_and_preconnected(gateway, caller_token, agent: Agent) -> tuple[Caller, str]:
    """A video call rings at `agent`, whose console sends its offer before accepting; both legs are connected at
    the gateway and media flows into it from both sides, so that anything let through would have arrived."""
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    queued = await caller.start("video", tone_hz=880)
    call_id = queued["call_id"]
    offer = await agent.wait_offer()
    assert offer["call_id"] == call_id
    await agent.join_media(call_id, tone_hz=440)  # sdp.offer while it rings: answered, not refused
    relay = gateway.board.relays[call_id]
    leg = relay.agents[agent.username]
    await asyncio.wait_for(leg.connected.wait(), 15)
    await asyncio.wait_for(relay.caller.connected.wait(), 15)
    await wait_until(lambda: agent.peer.pc.connectionState == "connected", 15)
    video = relay.caller.producers["video"]
    since = video.frames
    await wait_until(lambda: video.frames >= since + 30, 15)  # a second of the caller's video after the leg was up
    await wait_until(lambda: leg.producers["audio"].frames >= 25, 15)  # and the agent's voice reached the gateway
    return caller, call_id


@pytest.mark.parametrize("relay_mode", ["packet", "frame"])
async def test_preconnected_leg_gets_nothing_until_accept_then_the_picture_at_once(caller_token, relay_mode):
    async with running_gateway(relay_mode=relay_mode) as gateway:
        agent = Agent(gateway.base_url)
        await agent.connect()
        caller, call_id = await ringing_and_preconnected(gateway, caller_token, agent)
        relay = gateway.board.relays[call_id]
        leg = relay.agents["alice"]
        call = gateway.board.calls[call_id]
        assert call.state.value == "offered" and call.agent is None

        # The gate: nothing between the caller and the agent who has not accepted, in either direction.
        assert await received_packets(agent.peer.pc) == 0
        assert await received_packets(caller.peer.pc) == 0
        assert all(not s.counters and s.audio_total == 0 for s in agent.peer.slots.values())
        assert all(s.audio_total == 0 for s in caller.peer.slots.values())
        assert frames_out(leg) == 0 and frames_out(relay.caller) == 0
        assert relay.hears("alice") == set() and relay.hears("caller") == set()
        assert relay.gated() == {"alice"}
        # The caller is told nothing of the agent's media before the answer.
        assert not [m for m in caller.ws.messages if m.get("type") in ("call.answered", "media.state")
                    and m.get("leg") != "caller"]

        video = relay.caller.producers["video"]
        if relay_mode == "packet":
            # The relay keeps a fresh keyframe for the accept (the caller's video reaches nobody meanwhile).
            await wait_until(lambda: video.gop and time.monotonic() - video.gop_started < 0.5, 10)
            assert relay._warmer is not None and relay._warmer.requests >= 1
        counter_at_accept = caller.video.counter
        accepted = await agent.ws.request({"type": "call.accept", "call_id": call_id})
        assert accepted["type"] == "call.accepted"
        if relay_mode == "packet":
            # The cached keyframe went out with the accept itself, not after a keyframe request's round trip.
            assert leg.consumers["video"].stats.frames_out > 0
            assert not relay._warmer.active
        assert relay.gated() == set()
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 15, 15)
        counters = agent.peer.sinks["video"].counters
        assert None not in counters
        # A recent picture: the cache holds at most a second (the warmer keeps it to about half), never stale video.
        assert counters[0] >= counter_at_accept - 40, (counters[0], counter_at_accept)
        assert all(b > a for a, b in zip(counters, counters[1:])), counters
        mark = caller.peer.sinks["audio"].mark()
        await wait_until(lambda: caller.peer.sinks["audio"].audio_since(mark) >= 25, 15)
        assert abs(caller.peer.sinks["audio"].frequency_since(mark) - 440) < 30
        await wait_until(lambda: agent.peer.sinks["audio"].audio_total >= 25, 15)
        assert abs(agent.peer.sinks["audio"].dominant_frequency(25) - 880) < 30
        # Its events are the call's agent leg's from now on (the caller hears of them).
        assert gateway.board.live.leg(gateway.board.live.leg_of(call_id, "alice"))[2] == "agent"
        await caller.hangup()
        await agent.ws.wait("call.ended")
        await wait_until(lambda: leg.closed and call_id not in gateway.board.relays)
        await caller.close()
        await agent.close()


async def test_declined_ring_closes_the_preconnected_leg_and_the_next_agent_gets_the_call(caller_token):
    async with running_gateway(reoffer_after_decline_s=30) as gateway:
        alice = Agent(gateway.base_url)
        await alice.connect()
        caller, call_id = await ringing_and_preconnected(gateway, caller_token, alice)
        relay = gateway.board.relays[call_id]
        leg = relay.agents["alice"]
        bob = Agent(gateway.base_url, "bob", "bob-demo")
        await bob.connect(available=False)  # signed in, not rung before alice declines
        declined = await alice.ws.request({"type": "call.decline", "call_id": call_id})
        assert declined["type"] == "ack"
        await wait_until(lambda: "alice" not in relay.legs and leg.closed, 10)
        assert gateway.board.live.leg_of(call_id, "alice") is None
        assert relay.gated() == set() and not relay._warmer.active
        await wait_until(lambda: alice.peer.pc.connectionState in ("closed", "failed"), 30)
        # Media sent for a ring that is over is refused, and leaves no leg.
        late = Peer()
        late.pc.addTransceiver("audio")
        again = await alice.ws.request({"type": "sdp.offer", "call_id": call_id, "sdp": await late.offer()})
        await late.close()
        assert again["code"] == "not_accepted", again
        assert "alice" not in relay.legs

        await bob.ws.request({"type": "agent.status", "status": "available"})
        offered = await bob.wait_offer()
        assert offered["call_id"] == call_id
        await bob.accept(call_id)
        await wait_until(lambda: "video" in bob.peer.sinks and len(bob.peer.sinks["video"].counters) >= 10, 15)
        # Alice never received anything of the caller, before or after bob took the call.
        assert await received_packets(alice.peer.pc) == 0
        assert set(relay.legs) == {"caller", "bob"}
        await caller.close()
        await alice.close()
        await bob.close()


async def test_ring_timeout_and_caller_hangup_close_the_preconnected_leg(caller_token):
    async with running_gateway(ring_timeout_s=3.0, reoffer_after_decline_s=30) as gateway:
        alice = Agent(gateway.base_url)
        await alice.connect()
        caller, call_id = await ringing_and_preconnected(gateway, caller_token, alice)
        relay = gateway.board.relays[call_id]
        leg = relay.agents["alice"]
        withdrawn = await alice.ws.wait("call.offer_withdrawn", timeout=15)
        assert withdrawn["reason"] == "ring_timeout"
        await wait_until(lambda: "alice" not in relay.legs and leg.closed, 10)
        assert gateway.board.live.leg_of(call_id, "alice") is None
        assert await received_packets(alice.peer.pc) == 0
        await caller.hangup()
        await caller.close()
        await alice.close()

        # The caller hangs up while it rings at a console that pre-connected: every leg of the call is closed.
        bob = Agent(gateway.base_url, "bob", "bob-demo")
        await bob.connect()
        caller, call_id = await ringing_and_preconnected(gateway, caller_token, bob)
        relay = gateway.board.relays[call_id]
        legs = list(relay.legs.values())
        await caller.hangup()
        withdrawn = await bob.ws.wait("call.offer_withdrawn")
        assert withdrawn["reason"] == "caller_hangup"
        await wait_until(lambda: call_id not in gateway.board.relays and all(leg.closed for leg in legs), 10)
        assert gateway.board.live.leg_of(call_id, "bob") is None
        await caller.close()
        await bob.close()


async def test_with_media_workers_the_preconnected_leg_lives_in_the_calls_worker_and_is_gated(caller_token):
    """`--media-workers`: the leg set up while it rings is answered by the worker that owns the call (a call never
    spans workers), gated there, and closed there when the ring is declined."""
    async with running_gateway(media_workers=1, reoffer_after_decline_s=30) as gateway:
        plane = gateway.board.plane
        alice = Agent(gateway.base_url)
        await alice.connect()
        bob = Agent(gateway.base_url, "bob", "bob-demo")
        await bob.connect(available=False)
        caller = Caller(gateway.base_url, caller_token())
        await caller.connect()
        call_id = (await caller.start("video", tone_hz=880))["call_id"]
        assert (await alice.wait_offer())["call_id"] == call_id
        await alice.join_media(call_id)

        async def stats() -> dict:
            return await plane.stats(call_id)

        async def caller_frames() -> int:
            return (await stats()).get("caller", {}).get("producers", {}).get("video", {}).get("frames", 0)

        await wait_until(lambda: alice.peer.pc.connectionState == "connected", 15)
        deadline = asyncio.get_running_loop().time() + 15
        since = await caller_frames()
        while await caller_frames() < since + 30:
            assert asyncio.get_running_loop().time() < deadline, "the caller's video did not reach the worker"
            await asyncio.sleep(0.05)
        legs = await stats()
        assert legs["alice"]["state"] == "connected"
        assert sum(c["frames_out"] for c in legs["alice"]["consumers"].values()) == 0
        assert await received_packets(alice.peer.pc) == 0

        await alice.ws.request({"type": "call.decline", "call_id": call_id})
        deadline = asyncio.get_running_loop().time() + 10
        while "alice" in await stats():
            assert asyncio.get_running_loop().time() < deadline, "alice's leg was not closed in the worker"
            await asyncio.sleep(0.05)

        await bob.ws.request({"type": "agent.status", "status": "available"})
        assert (await bob.wait_offer())["call_id"] == call_id
        await bob.join_media(call_id)
        await wait_until(lambda: bob.peer.pc.connectionState == "connected", 15)
        await bob.ws.request({"type": "call.accept", "call_id": call_id})
        await wait_until(lambda: "video" in bob.peer.sinks and len(bob.peer.sinks["video"].counters) >= 15, 15)
        assert None not in bob.peer.sinks["video"].counters
        assert await received_packets(alice.peer.pc) == 0
        assert set(await stats()) == {"caller", "bob"}
        await caller.close()
        await alice.close()
        await bob.close()
