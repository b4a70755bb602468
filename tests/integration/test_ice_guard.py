"""Remote ICE candidates cannot steer the relay: refused addresses get a typed error and no datagram, the number of
candidates and of connectivity checks per leg is capped, and a leg that never connects ends the call.

Targets are UDP sockets on loopback addresses that count what reaches them (tests/support/udp.py); 127.0.0.2 stands
for a denied network (a deny-list setting covers it), 127.0.0.3 for an allowed one. Linux routes all of 127/8 to lo,
so nothing leaves the test's network namespace.
"""

from __future__ import annotations

import asyncio

import pytest
from aioice import stun
from aioice.ice import CandidatePair

from gateway.config import DEFAULT_DENIED_NETWORKS
from gateway.media import aiortc_internals as internals
from tests.support.clients import Agent, Caller, Peer, wait_until
from tests.support.media import ToneAudioTrack
from tests.support.server import running_gateway
from tests.support.udp import UdpTrap

pytestmark = pytest.mark.media

DENY_127_0_0_2 = [*DEFAULT_DENIED_NETWORKS, "127.0.0.2/32"]
TOP = 2122260223  # a host candidate's priority (component 1, highest local preference)


def without_candidates(sdp: str) -> str:
    """The offer with no candidates and no end-of-candidates: the relay learns only what the test trickles."""
    return "\r\n".join(line for line in sdp.split("\r\n")
                       if not line.startswith("a=candidate:") and line != "a=end-of-candidates")


def with_candidates(sdp: str, lines: list[str]) -> str:
    """The offer with `lines` (a=candidate:...) as its only candidates, in its first media section."""
    out = []
    for line in without_candidates(sdp).split("\r\n"):
        out.append(line)
        if line.startswith("a=ice-pwd:"):
            out.extend(lines)
            lines = []
    return "\r\n".join(out)


async def half_open(gateway, token: str, sdp_edit=without_candidates, aux_audio: bool = False) -> tuple[Caller, str]:
    """A caller whose offer is answered but whose peer never starts ICE (it never applies the answer), while its
    signaling socket stays open: the half-open leg of the attack. `aux_audio`: a second audio section, receive only,
    as the widget's offer has (a barging supervisor's voice)."""
    caller = Caller(gateway.base_url, token)
    await caller.connect()
    queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
    caller.call_id = queued["call_id"]
    caller.peer.pc.addTrack(ToneAudioTrack(500))
    if aux_audio:
        caller.peer.pc.addTransceiver("audio", direction="recvonly")
    answer = await caller.ws.request({"type": "sdp.offer", "sdp": sdp_edit(await caller.peer.offer())})
    assert answer["type"] == "sdp.answer", answer
    caller.answer_sdp = answer["sdp"]  # type: ignore[attr-defined]
    return caller, queued["call_id"]


def sdp_value(sdp: str, prefix: str) -> str:
    return next(line[len(prefix):] for line in sdp.split("\r\n") if line.startswith(prefix))


def binding_request(caller: Caller) -> bytes:
    """A connectivity check to the relay as the caller's peer would send it: valid credentials, controlling."""
    answer = caller.answer_sdp  # type: ignore[attr-defined]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = (f"{sdp_value(answer, 'a=ice-ufrag:')}:"
                                      f"{sdp_value(caller.peer.pc.localDescription.sdp, 'a=ice-ufrag:')}")
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(sdp_value(answer, "a=ice-pwd:").encode())
    request.add_fingerprint()
    return bytes(request)


def relay_address(caller: Caller) -> tuple[str, int]:
    bits = sdp_value(caller.answer_sdp, "a=candidate:").split()  # type: ignore[attr-defined]
    return bits[4], int(bits[5])


def remote_addresses(leg) -> set[tuple[str, int]]:
    """What the leg's ICE agent holds as remote candidates (including peer-reflexive ones)."""
    return {(c.host, c.port) for connection in internals.ice_connections(leg.pc) for c in connection.remote_candidates}


def pending_pairs(leg) -> int:
    """Pairs that may still start a check."""
    waiting = (CandidatePair.State.WAITING, CandidatePair.State.FROZEN)
    return sum(1 for connection in internals.ice_connections(leg.pc)
               for pair in connection._check_list if pair.state in waiting and pair.task is None)


REFUSED = [
    ("candidate:1 1 udp 2122260223 169.254.169.254 80 typ host", "candidate_refused"),  # cloud metadata
    ("candidate:1 1 udp 2122260223 ::ffff:169.254.169.254 80 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 fe80::1 5000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 0.0.0.0 5000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 255.255.255.255 5000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 224.0.0.251 5353 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 ff02::1 5000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 :: 5000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 127.0.0.3 0 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 example.com 3478 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 4f1b2c7e-1d2c-4a5b-9c8d-1234567890ab.local 50000 typ host", "candidate_refused"),
    ("candidate:1 1 udp 2122260223 127.0.0.3 70000 typ host", "bad_candidate"),
    ("candidate:1 1 udp 2122260223 127.0.0.3 -1 typ host", "invalid_message"),  # not the RFC 8839 grammar
    ("candidate:1 1 udp 2122260223 127.0.0.3 5000 typ bogus", "bad_candidate"),
    ("candidate:1 0 udp 2122260223 127.0.0.3 5000 typ host", "bad_candidate"),
]


async def test_refused_candidates_get_typed_errors_and_no_datagram(caller_token):
    async with running_gateway(media_remote_deny=DENY_127_0_0_2) as gateway:
        denied = await UdpTrap.open("127.0.0.2")
        allowed = await UdpTrap.open("127.0.0.3")
        caller, call_id = await half_open(gateway, caller_token())
        leg = gateway.board.relays[call_id].caller
        try:
            # The denied target comes first and with the highest priority: were it paired, it would be checked
            # before the allowed one.
            error = await caller.ws.request({"type": "ice.candidate", "candidate": denied.candidate(priority=TOP),
                                             "sdp_mid": "0"})
            assert error["type"] == "error" and error["code"] == "candidate_refused", error
            assert "127.0.0.2" in error["reason"] and "127.0.0.2/32" in error["reason"]
            for line, code in REFUSED:
                error = await caller.ws.request({"type": "ice.candidate", "candidate": line, "sdp_mid": "0"})
                assert error["type"] == "error" and error["code"] == code, (line, error)
                assert error["reason"]
            ack = await caller.ws.request({"type": "ice.candidate", "candidate": allowed.candidate(priority=1000),
                                           "sdp_mid": "0"})
            assert ack["type"] == "ack", ack

            await wait_until(lambda: allowed.stun > 0)
            assert denied.datagrams == 0
            assert remote_addresses(leg) == {allowed.address}
            refused = sum(code == "candidate_refused" for _, code in REFUSED) + 1
            assert leg.candidates.accepted == 1 and leg.candidates.refused == refused
            # Nothing was refused by tearing anything down: the leg's socket still works and the call is queued.
            assert not leg.closed and gateway.board.calls[call_id].state.value == "queued"
            before = allowed.stun
            await wait_until(lambda: allowed.stun > before)  # retransmissions still leave the same socket
        finally:
            await caller.close()
            denied.close()
            allowed.close()


async def test_offered_candidates_are_filtered_and_bad_ones_refuse_the_offer(caller_token):
    async with running_gateway(media_remote_deny=DENY_127_0_0_2, media_max_remote_candidates=3) as gateway:
        denied = await UdpTrap.open("127.0.0.2")
        allowed = await UdpTrap.open("127.0.0.3")
        caller = Caller(gateway.base_url, caller_token())
        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        call_id = queued["call_id"]
        caller.peer.pc.addTrack(ToneAudioTrack(500))
        sdp = await caller.peer.offer()
        try:
            # Malformed candidates make the offer bad_sdp; more than the cap, too_many_candidates. Neither sets up
            # the leg.
            for lines, code in [
                (["a=candidate:1 1 udp 2122260223 127.0.0.3 70000 typ host"], "bad_sdp"),
                (["a=candidate:1 1 udp 2122260223 127.0.0.3 5000 typ"], "bad_sdp"),
                ([f"a=candidate:{i} 1 udp 2122260223 127.0.0.3 {5000 + i} typ host" for i in range(4)],
                 "too_many_candidates"),
            ]:
                error = await caller.ws.request({"type": "sdp.offer", "sdp": with_candidates(sdp, lines)})
                assert error["type"] == "error" and error["code"] == code, (lines, error)
                assert error["reason"]
                assert gateway.board.relays[call_id].caller is None

            # Refused and non-UDP candidates are left out of the offer, which is answered.
            lines = [
                "a=" + denied.candidate(priority=TOP),
                "a=candidate:2 1 udp 2122260223 169.254.169.254 80 typ host",
                "a=candidate:3 1 udp 2122260223 0a1b2c3d-0000-4000-8000-000000000000.local 50000 typ host",
                "a=candidate:4 1 udp 2122260223 255.255.255.255 9 typ host",
                "a=candidate:5 1 tcp 1518280447 127.0.0.3 9 typ host tcptype active",
                "a=" + allowed.candidate(priority=1000),
            ]
            answer = await caller.ws.request({"type": "sdp.offer", "sdp": with_candidates(sdp, lines)})
            assert answer["type"] == "sdp.answer", answer
            leg = gateway.board.relays[call_id].caller
            await wait_until(lambda: allowed.stun > 0)
            assert denied.datagrams == 0
            assert remote_addresses(leg) == {allowed.address}
            assert leg.candidates.accepted == 1
        finally:
            await caller.close()
            denied.close()
            allowed.close()


async def test_an_offers_own_candidates_are_used_with_a_second_audio_section(caller_token):
    """A browser that gathers before it offers (the caller widget prepares its peer connection ahead of the click)
    sends its candidates inside the offer, in the first section. The widget's and the console's offers have a second
    audio section, which aiortc gives the first one's ICE transport before bundling (and files the later section's
    empty candidate list over the first one's). The relay still pairs and checks the offered candidates at once, and
    the peer's end-of-candidates does not fail the leg."""
    async with running_gateway() as gateway:
        target = await UdpTrap.open("127.0.0.3")
        offered: list[str] = []

        def edit(sdp: str) -> str:
            offered.append(with_candidates(sdp, ["a=" + target.candidate()]))
            return offered[0]

        caller, call_id = await half_open(gateway, caller_token(), sdp_edit=edit, aux_audio=True)
        try:
            assert [line[:7] for line in offered[0].split("\r\n") if line.startswith("m=")] == ["m=audio", "m=audio"]
            leg = gateway.board.relays[call_id].caller
            assert remote_addresses(leg) == {target.address}  # known from the offer, not learnt from a check
            ack = await caller.ws.request({"type": "ice.candidate", "candidate": None})
            assert ack["type"] == "ack", ack
            await wait_until(lambda: target.stun > 0)  # checked without any check from the peer
            pairs = {pair.remote_addr for c in internals.ice_connections(leg.pc) for pair in c._check_list}
            assert pairs == {target.address}
            assert leg.failure is None
        finally:
            await caller.close()
            target.close()


async def test_candidates_and_checks_per_leg_are_capped(caller_token):
    cap, checks = 12, 5
    async with running_gateway(media_max_remote_candidates=cap, media_max_ice_checks=checks) as gateway:
        traps = [await UdpTrap.open("127.0.0.3") for _ in range(cap + 1)]
        caller, call_id = await half_open(gateway, caller_token())
        leg = gateway.board.relays[call_id].caller
        try:
            for i, trap in enumerate(traps[:cap]):
                ack = await caller.ws.request({"type": "ice.candidate", "sdp_mid": "0",
                                               "candidate": trap.candidate(priority=TOP - i, foundation=str(i))})
                assert ack["type"] == "ack", ack
            again = await caller.ws.request({"type": "ice.candidate", "sdp_mid": "0", "candidate": traps[0].candidate()})
            assert again["type"] == "ack", again  # the same candidate again is no new one
            over = await caller.ws.request({"type": "ice.candidate", "sdp_mid": "0", "candidate": traps[cap].candidate()})
            assert over["type"] == "error" and over["code"] == "too_many_candidates", over
            assert str(cap) in over["reason"]
            end = await caller.ws.request({"type": "ice.candidate", "candidate": None})
            assert end["type"] == "ack", end

            # The check bound is spent, and then no pair is left that could start one.
            await wait_until(lambda: leg.checks.exhausted and pending_pairs(leg) == 0)
            await wait_until(lambda: sum(t.stun > 0 for t in traps) == checks)
            reached = [t for t in traps if t.datagrams]
            assert len(reached) == checks
            assert reached == traps[:checks]  # the highest-priority ones
            assert traps[cap].datagrams == 0
            assert len(remote_addresses(leg)) == cap
            # Each check is one STUN transaction: at most 7 transmissions (aioice's 1 + 6 retransmissions).
            assert all(t.stun <= 7 for t in reached)
        finally:
            await caller.close()
            for trap in traps:
                trap.close()


async def test_checks_from_refused_addresses_get_no_answer_and_learning_is_capped(caller_token):
    cap = 3
    async with running_gateway(media_remote_deny=DENY_127_0_0_2, media_max_remote_candidates=cap) as gateway:
        denied = await UdpTrap.open("127.0.0.2")
        sources = [await UdpTrap.open("127.0.0.3") for _ in range(cap + 1)]
        caller, call_id = await half_open(gateway, caller_token())
        leg = gateway.board.relays[call_id].caller
        relay = relay_address(caller)
        try:
            # A check from a denied address first, then from allowed ones: the relay answers a check in the order
            # the datagrams reach its socket.
            denied.send(binding_request(caller), relay)
            for source in sources[:cap]:
                source.send(binding_request(caller), relay)
                await wait_until(lambda: source.responses() == 1)
            sources[cap].send(binding_request(caller), relay)  # one address too many to learn
            sources[0].send(binding_request(caller), relay)  # a known one: still answered
            await wait_until(lambda: sources[0].responses() == 2)
            assert denied.datagrams == 0
            assert sources[cap].responses() == 0
            learned = {s.address for s in sources[:cap]}
            await wait_until(lambda: remote_addresses(leg) == learned)
        finally:
            await caller.close()
            for trap in (denied, *sources):
                trap.close()


async def test_a_normal_call_connects_under_tight_limits(caller_token):
    async with running_gateway(media_max_remote_candidates=2, media_max_ice_checks=4, media_connect_timeout_s=5,
                               media_remote_deny=DENY_127_0_0_2) as gateway:
        agent = Agent(gateway.base_url)
        caller = Caller(gateway.base_url, caller_token())
        await agent.connect()
        await caller.connect()
        try:
            queued = await caller.start("video")
            leg = gateway.board.relays[queued["call_id"]].caller
            await asyncio.wait_for(leg.connected.wait(), 10)
            offer = await agent.wait_offer()
            await agent.accept(offer["call_id"])
            await caller.ws.wait("call.answered")
            await wait_until(lambda: "video" in agent.peer.sinks)
            sink = agent.peer.sinks["video"]
            await wait_until(lambda: sum(c is not None for c in sink.counters) > 10)
            assert leg._connect_timer is None  # connected: the connect timeout no longer runs
            assert gateway.board.calls[queued["call_id"]].state.value == "connected"
        finally:
            await caller.close()
            await agent.close()


async def test_half_open_legs_end_after_the_connect_timeout(caller_token):
    async with running_gateway(media_connect_timeout_s=1.0) as gateway:
        # A good caller first: its connect timeout would fire before the half-open ones'.
        good = Caller(gateway.base_url, caller_token(sub="good"))
        await good.connect()
        good_call = await good.start("voice")
        good_leg = gateway.board.relays[good_call["call_id"]].caller
        await asyncio.wait_for(good_leg.connected.wait(), 10)

        half = [await half_open(gateway, caller_token(sub=f"half-{i}"), sdp_edit=lambda sdp: sdp) for i in range(3)]
        legs = [gateway.board.relays[call_id].caller for _, call_id in half]
        try:
            for (caller, call_id), leg in zip(half, legs, strict=True):
                ended = await caller.ws.wait(lambda m: m["type"] == "call.ended", timeout=15)
                assert ended["call_id"] == call_id and ended["reason"] == "media_failed" and ended["by"] == "system"
                assert caller.ws.close_code is None  # the caller's socket stayed open: only the media timed out
                await wait_until(lambda: call_id not in gateway.board.relays)
                assert gateway.board.calls[call_id].state.value == "ended"
                assert leg.connect_timed_out and leg.closed
            assert gateway.board.calls[good_call["call_id"]].state.value == "queued"
            assert not good_leg.closed and good_leg.state == "connected"
        finally:
            for caller, _ in half:
                await caller.close()
            await good.close()


async def test_an_agent_leg_that_never_connects_ends_the_call(caller_token):
    async with running_gateway(media_connect_timeout_s=1.5) as gateway:
        agent = Agent(gateway.base_url)
        caller = Caller(gateway.base_url, caller_token())
        await agent.connect()
        await caller.connect()
        try:
            queued = await caller.start("voice")
            caller_leg = gateway.board.relays[queued["call_id"]].caller
            await asyncio.wait_for(caller_leg.connected.wait(), 10)
            offer = await agent.wait_offer()
            accepted = await agent.ws.request({"type": "call.accept", "call_id": offer["call_id"]})
            assert accepted["type"] == "call.accepted", accepted
            agent.peer = Peer()  # the console's peer connection offers, but never applies the answer
            agent.peer.pc.addTrack(ToneAudioTrack(440))
            answer = await agent.ws.request({"type": "sdp.offer", "call_id": offer["call_id"],
                                             "sdp": await agent.peer.offer()})
            assert answer["type"] == "sdp.answer", answer
            for ws in (caller.ws, agent.ws):
                ended = await ws.wait("call.ended", timeout=15)
                assert ended["reason"] == "media_failed" and ended["by"] == "system", ended
            assert caller_leg.closed and not caller_leg.connect_timed_out  # the caller's own leg had connected
        finally:
            await caller.close()
            await agent.close()
