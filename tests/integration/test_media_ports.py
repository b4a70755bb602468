"""The relay's UDP port range (media_port_min/max) with real aiortc peers: every relay leg's host candidate and socket
lie in the range, and when the range is used up a further leg gets media_ports_exhausted at once, with nothing left
half-open, and works again once a port is free."""

from __future__ import annotations

import errno
import socket

import pytest

from gateway.media import aiortc_internals as internals
from tests.support.clients import Agent, Caller, wait_until
from tests.support.media import ToneAudioTrack
from tests.support.server import running_gateway

pytestmark = pytest.mark.media


def free_run(length: int, first: int = 22000) -> int:
    """The first of `length` consecutive UDP ports free on 127.0.0.1, below the kernel's ephemeral range (the test
    clients' own sockets come from there)."""
    for start in range(first, 32000, length):
        if all(bindable(port) for port in range(start, start + length)):
            return start
    raise AssertionError("no free run of UDP ports")


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
            return False
    return True


def candidate_ports(sdp: str) -> set[int]:
    """The ports of the host candidates in an SDP (a=candidate:foundation component udp priority host port typ ...)."""
    ports = set()
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            bits = line.split()
            assert bits[2].lower() == "udp" and bits[7] == "host", line
            ports.add(int(bits[5]))
    return ports


async def test_relay_legs_bind_inside_the_range(caller_token):
    low = free_run(10)
    high = low + 9
    async with running_gateway(media_port_min=low, media_port_max=high) as gateway:
        agent = Agent(gateway.base_url)
        caller = Caller(gateway.base_url, caller_token())
        try:
            await agent.connect()
            await caller.connect()
            queued = await caller.start("video")
            offer = await agent.wait_offer()
            await agent.accept(offer["call_id"])
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 10, 15)
            await wait_until(lambda: "audio" in caller.peer.sinks and len(caller.peer.sinks["audio"].audio) >= 10, 15)

            relay = gateway.board.relays[queued["call_id"]]
            legs = {"caller": relay.caller, "agent": relay.agents["alice"]}
            answers = {"caller": caller.peer.pc.remoteDescription.sdp, "agent": agent.peer.pc.remoteDescription.sdp}
            seen: set[int] = set()
            for who, leg in legs.items():
                announced = candidate_ports(answers[who])
                sockets = internals.bound_ports(leg.pc)
                assert announced and all(low <= port <= high for port in announced), (who, announced, low, high)
                assert sockets and {port for _, port in sockets} == announced, (who, sockets, announced)
                assert all(host == "127.0.0.1" for host, _ in sockets), sockets
                assert not seen & announced, f"two legs share a port: {seen & announced}"
                seen |= announced
                for port in announced:  # really held by the gateway
                    assert not bindable(port), port
            # The clients' own sockets are not the relay's business: they stay outside the range.
            for peer in (caller.peer, agent.peer):
                assert all(not low <= port <= high for _, port in internals.bound_ports(peer.pc))

            await caller.hangup()
            await agent.ws.wait("call.ended")
            await wait_until(lambda: all(leg.pc.connectionState == "closed" for leg in legs.values()))
            await wait_until(lambda: all(bindable(port) for port in seen))
        finally:
            await caller.close()
            await agent.close()


async def test_a_used_up_range_fails_the_next_leg_at_once_and_recovers(caller_token):
    low = free_run(2, first=23000)
    high = low + 1
    async with running_gateway(media_port_min=low, media_port_max=high) as gateway:
        agent = Agent(gateway.base_url)
        first = Caller(gateway.base_url, caller_token(sub="cust-1"))
        second = Caller(gateway.base_url, caller_token(sub="cust-2"))
        try:
            await agent.connect()
            await first.connect()
            queued = await first.start("voice")
            offer = await agent.wait_offer()
            await agent.accept(offer["call_id"])  # the caller's leg and the agent's leg: both ports in use
            await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 10, 15)
            relay = gateway.board.relays[queued["call_id"]]
            in_use = candidate_ports(first.peer.pc.remoteDescription.sdp) | candidate_ports(
                agent.peer.pc.remoteDescription.sdp)
            assert in_use == {low, high}

            # A further caller: its offer is refused at once with a typed, retryable error.
            await second.connect()
            started = await second.ws.request({"type": "call.start", "call_type": "voice"})
            assert started["type"] == "call.queued", started
            second.peer.pc.addTrack(ToneAudioTrack(660))
            refused = await second.ws.request({"type": "sdp.offer", "sdp": await second.peer.offer()}, timeout=10)
            assert refused["type"] == "error" and refused["code"] == "media_ports_exhausted", refused
            assert refused["retryable"] is True
            assert refused["reason"].startswith(f"every UDP port of the relay's media range {low}-{high} "
                                                f"(2 port(s)) is in use on 127.0.0.1"), refused
            # Nothing of the refused leg stays: the relay kept no leg for it, and the live call is unharmed.
            assert gateway.board.relays[started["call_id"]].caller is None
            assert {port for leg in (relay.caller, relay.agents["alice"]) for _, port in internals.bound_ports(leg.pc)} \
                == {low, high}
            heard = len(agent.peer.sinks["audio"].audio)
            await wait_until(lambda: len(agent.peer.sinks["audio"].audio) >= heard + 10, 15)

            # The first call ends: its ports are free again, and the waiting caller's retry gets media.
            await first.hangup()
            await agent.ws.wait("call.ended")
            await wait_until(lambda: bindable(low) and bindable(high))
            answer = await second.ws.request({"type": "sdp.offer", "sdp": second.peer.pc.localDescription.sdp})
            assert answer["type"] == "sdp.answer", answer
            assert candidate_ports(answer["sdp"]) <= {low, high}
            await second.peer.answer(answer["sdp"])
            leg = gateway.board.relays[started["call_id"]].caller
            await wait_until(lambda: leg.connected.is_set(), 15)
            ended = await second.hangup()
            assert ended["type"] != "error", ended
        finally:
            await first.close()
            await second.close()
            await agent.close()
