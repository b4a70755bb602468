"""A real call through the gateway: real aiortc peers, real media frames, content checked."""

from __future__ import annotations

import asyncio

import pytest

from gateway.media import aiortc_internals as internals
from gateway.media import fastpath
from tests.support.clients import Agent, Caller, answered_call, wait_until

from tests.support.server import running_gateway

pytestmark = pytest.mark.media


@pytest.fixture(params=["packet", "packet-python", "packet-aiortc", "frame"])
async def gateway(request):
    """Every call test runs against both forwarding modes of the relay, and packet forwarding on each of its
    per-packet paths: native (the C module), python (its fallback) and aiortc's own (relay_fast_path=off)."""
    mode, _, path = request.param.partition("-")
    fast = {"": "native", "python": "python", "aiortc": "off"}[path]
    if mode == "packet" and fast == "native" and fastpath.native_module() is None:
        pytest.skip("gateway.media._fastpath is not built (pip install -e . with a C compiler: scripts/setup.sh)")
    async with running_gateway(relay_mode=mode, relay_fast_path=fast) as gw:
        yield gw

LOCATION = {"lat": 52.52, "lon": 13.405, "accuracy_m": 12.5, "timestamp": 1_790_000_000.0}
CONTEXT = {"screen": "card-blocked", "steps": ["login", "cards", "block card"], "crm": {"account": "DE-1234", "tier": "gold"}}


def in_order(values: list[int]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


class PacketCounter:
    """A read-only tap of a Producer (Producer.taps, as a recording's or a transcript's): notes the sequence numbers
    it is handed."""

    def __init__(self) -> None:
        self.sequence_numbers: list[int] = []

    def on_packet(self, packet, keyframe_start: bool) -> None:
        self.sequence_numbers.append(packet.sequence_number)


async def test_video_call_end_to_end(gateway, caller_token):
    agent = Agent(gateway.base_url)
    caller = Caller(gateway.base_url, caller_token(sub="cust-42", name="Dana Caller", email="dana@example.com"))
    await agent.connect()
    welcome = await caller.connect()
    assert welcome["caller"]["subject"] == "cust-42" and welcome["caller"]["verified"] is True
    assert welcome["ice_servers"] == []

    queued = await caller.start("video", tone_hz=880, location=LOCATION, context=CONTEXT)
    assert queued["position"] == 1

    offer = await agent.wait_offer()
    card = offer["card"]
    assert card["identity"]["subject"] == "cust-42"
    assert card["identity"]["name"] == "Dana Caller"
    assert card["identity"]["email"] == "dana@example.com"
    assert card["identity"]["verified"] is True
    assert card["location"]["lat"] == 52.52 and card["location"]["lon"] == 13.405
    assert card["location"]["accuracy_m"] == 12.5 and card["location"]["source"] == "device"
    assert card["context"]["steps"] == ["login", "cards", "block card"]
    assert card["context"]["crm"]["account"] == "DE-1234"
    assert card["call_type"] == "video"

    # The caller's leg is up while queued: media already flows into the gateway before the answer.
    caller_leg = gateway.board.relays[queued["call_id"]].caller
    await asyncio.wait_for(caller_leg.connected.wait(), 10)
    await wait_until(lambda: caller_leg.producers["video"].frames > 5)
    tap = PacketCounter()  # a Python tap beside the agent's stream (what a recorder or speech tap is)
    if gateway.settings.relay_mode == "packet":
        caller_leg.producers["video"].taps.append(tap)

    await agent.accept(offer["call_id"], tone_hz=440)
    answered = await caller.ws.wait("call.answered")
    assert answered["agent_name"] == "Alice (demo agent)"

    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 60, 15)
    await wait_until(lambda: "audio" in caller.peer.sinks and len(caller.peer.sinks["audio"].audio) >= 50, 15)
    await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 15)

    # Video: the frames the caller sent, in order, pixels intact (counter readable in every frame).
    counters = agent.peer.sinks["video"].counters
    assert None not in counters, counters
    assert in_order(counters), counters
    assert counters[-1] - counters[0] >= len(counters) - 1
    gaps = sum(b - a - 1 for a, b in zip(counters, counters[1:]))
    assert gaps <= len(counters) // 10, f"{gaps} frames lost of {len(counters)}"
    assert counters[-1] <= caller.video.counter

    # The per-packet path the gateway was set to is the one that carried the media.
    agent_leg = next(iter(gateway.board.relays[queued["call_id"]].agents.values()))
    fast = gateway.settings.relay_fast_path if gateway.settings.relay_mode == "packet" else "off"
    direct = caller_leg.direct.packets if caller_leg.direct is not None else 0
    video_out = agent_leg.consumers["video"]
    native, sent = (video_out.sent_natively, video_out.stats.frames_out) if fast != "off" else (0, 0)
    assert (direct > 50) == (fast != "off"), (fast, direct)
    assert (native >= 0.9 * sent > 30) == (fast == "native"), (fast, native, sent)
    # Natively, the steady stream is forwarded by the C route (one fan-out call per packet), not packet by packet
    # in Python: after the first packets, until the hang-up.
    in_c = video_out.stats.forwarded_in_c if fast != "off" else 0
    assert (in_c >= 0.8 * sent > 30) == (fast == "native"), (fast, in_c, sent)
    # The tap got every packet, the ones the C route forwarded included (it gets them after the C fan-out).
    if gateway.settings.relay_mode == "packet":
        assert len(set(tap.sequence_numbers)) >= max(sent, 60), (len(tap.sequence_numbers), sent)

    # Audio both ways, told apart by their tones.
    assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
    assert abs(caller.peer.sinks["audio"].dominant_frequency() - 440) < 30

    # Hang-up from the caller: both legs close, the agent is told and becomes available again.
    await caller.hangup()
    ended = await agent.ws.wait("call.ended")
    assert ended["reason"] == "caller_hangup" and ended["by"] == "caller"
    status = await agent.ws.wait(lambda m: m["type"] == "agent.status" and m["status"] == "available"
                                 and m.get("id") is None)
    assert status["status"] == "available"
    assert queued["call_id"] not in gateway.board.relays
    await wait_until(lambda: caller_leg.pc.connectionState == "closed")
    await caller.close()
    await agent.close()


async def test_agent_hangup_frees_both_legs_and_no_tasks_leak(gateway, caller_token):
    baseline = len(asyncio.all_tasks())
    agent = Agent(gateway.base_url)
    await agent.connect()
    caller = Caller(gateway.base_url, caller_token())
    await caller.connect()
    queued = await caller.start("voice")
    offer = await agent.wait_offer()
    assert offer["card"]["call_type"] == "voice" and offer["card"]["location"] is None
    await agent.accept(offer["call_id"])
    await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) > 20, 15)
    relay = gateway.board.relays[queued["call_id"]]
    legs = [relay.caller, *relay.agents.values()]
    await agent.hangup(offer["call_id"])
    ended = await caller.ws.wait("call.ended")
    assert ended["reason"] == "agent_hangup" and ended["by"] == "agent"
    for leg in legs:
        assert leg.closed
        await wait_until(lambda leg=leg: leg.pc.connectionState == "closed")
    assert gateway.board.agents["alice"].status.value == "available"
    await caller.close()
    await agent.close()
    # Everything the call started has stopped (peer tasks of the test clients included).
    await wait_until(lambda: len(asyncio.all_tasks()) <= baseline + 1, 10)


async def test_keyframe_request_from_agent_reaches_caller(gateway, caller_token):
    caller, agent, call_id = await answered_call(gateway.base_url, caller_token(), video_frames=10)

    # Count keyframe requests that reach the caller's sender (the PLI arrives over RTCP at the caller's peer).
    caller_sender = next(t.sender for t in caller.peer.pc.getTransceivers() if t.kind == "video")
    received = internals.count_keyframe_requests(caller_sender)
    producer = gateway.board.relays[call_id].caller.producers["video"]
    keyframes_before = producer.keyframes

    # The agent's browser would send a PLI on its leg; send one from the agent's receiver.
    agent_receiver = next(t.receiver for t in agent.peer.pc.getTransceivers() if t.kind == "video")
    remote_ssrc = next(iter(agent_receiver._RTCRtpReceiver__remote_streams))
    await agent_receiver._send_rtcp_pli(remote_ssrc)
    await wait_until(lambda: len(received) >= 1, 5)
    # ...and the caller's next frame is a keyframe that the relay forwards.
    await wait_until(lambda: producer.keyframes > keyframes_before, 5)
    await caller.close()
    await agent.close()


async def test_relay_never_decodes(gateway, caller_token, monkeypatch):
    """The gateway's receivers never build a decoder: media is forwarded encoded."""
    import aiortc.rtcrtpreceiver as receiver_module

    built: list[str] = []
    real = receiver_module.get_decoder

    def counting(codec):
        built.append(codec.name)
        return real(codec)

    monkeypatch.setattr(receiver_module, "get_decoder", counting)
    caller, agent, call_id = await answered_call(gateway.base_url, caller_token(), video_frames=30)
    await wait_until(lambda: "audio" in caller.peer.sinks and len(caller.peer.sinks["audio"].audio) > 20, 15)
    # The test clients decode what they receive (2 decoders each side: agent video+audio, caller audio); the
    # gateway's four receivers (caller audio/video, agent audio) never do.
    relay = gateway.board.relays[call_id]
    assert relay.caller.producers["video"].frames > 30
    assert sorted(built) == ["VP8", "opus", "opus"], built
    await caller.close()
    await agent.close()


async def test_transcoding_baseline_still_carries_the_content(caller_token):
    """relay_mode=transcode (the benchmark's baseline) decodes and re-encodes, and must still deliver the call."""
    async with running_gateway(relay_mode="transcode") as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        await caller.start("video", tone_hz=880)
        offer = await agent.wait_offer()
        await agent.accept(offer["call_id"], tone_hz=440)
        await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 30, 20)
        await wait_until(lambda: "audio" in caller.peer.sinks and len(caller.peer.sinks["audio"].audio) >= 50, 15)
        counters = [c for c in agent.peer.sinks["video"].counters if c is not None]
        assert len(counters) >= 25 and in_order(counters)
        assert abs(caller.peer.sinks["audio"].dominant_frequency() - 440) < 30
        await caller.close()
        await agent.close()


async def test_packets_lost_towards_the_agent_are_retransmitted(gateway, caller_token):
    """NACK recovery: one in 12 of the relay's video packets to the agent is lost on the way (dropped at the
    agent's socket, first transmission only); the agent's receiver asks again (NACK) and the relay answers from its
    history, so every frame still arrives whole, in order. Without retransmission each loss breaks a frame and the
    decoder's picture until the next keyframe (frames missing from the counters)."""
    caller, agent, call_id = await answered_call(gateway.base_url, caller_token(), video_frames=10)

    video = next(t for t in agent.peer.pc.getTransceivers() if t.kind == "video")
    video_pt = internals.negotiated_codecs(video)[0].payloadType
    seen: set[int] = set()
    dropped: set[int] = set()
    repeated: list[int] = []  # retransmissions that reached the agent (RTX, or the same sequence number again)

    def lossy(original):
        def received(data: bytes, addr) -> None:
            if len(data) >= 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 223:
                pt, seq = data[1] & 0x7F, int.from_bytes(data[2:4], "big")
                if pt == video_pt:
                    if seq in dropped:
                        repeated.append(seq)
                    elif seq not in seen:
                        seen.add(seq)
                        if len(seen) % 12 == 0:
                            dropped.add(seq)
                            return
                elif pt != video_pt and pt >= 96 and pt not in (111,):  # RTX (opus is 111 in aiortc)
                    repeated.append(seq)
            original(data, addr)
        return received

    for connection in internals.ice_connections(agent.peer.pc):
        for protocol in connection._protocols:
            protocol.datagram_received = lossy(protocol.datagram_received)
    agent_leg = next(iter(gateway.board.relays[call_id].agents.values()))
    rtcp_before = agent_leg.direct.rtcp_packets if agent_leg.direct is not None else 0
    start = len(agent.peer.sinks["video"].counters)
    await wait_until(lambda: len(dropped) >= 15 and len(agent.peer.sinks["video"].counters) >= start + 90, 30)
    counters = agent.peer.sinks["video"].counters[start:]
    assert None not in counters and in_order(counters), counters
    gaps = sum(b - a - 1 for a, b in zip(counters, counters[1:]))
    assert gaps <= 3, f"{gaps} frames missing of {len(counters)} with {len(dropped)} packets lost"
    assert len(repeated) >= len(dropped) // 2, (len(repeated), len(dropped))
    if gateway.settings.relay_mode == "packet" and gateway.settings.relay_fast_path != "off":
        # The agent's NACKs (SRTCP) went straight from the socket's callback to aiortc's RTCP handling (no aioice
        # queue, no DTLS task step): at least one compound packet per lost packet asked for.
        rtcp = agent_leg.direct.rtcp_packets - rtcp_before
        assert rtcp >= len(dropped) // 2, (rtcp, len(dropped))
    if gateway.settings.relay_mode == "packet" and gateway.settings.relay_fast_path == "native":
        # Answered from the history of what the C route sent (it carried the stream: aiortc's NativeHistory view).
        video_out = next(iter(gateway.board.relays[call_id].agents.values())).consumers["video"]
        assert video_out.stats.forwarded_in_c >= 0.8 * video_out.stats.frames_out, video_out.stats
    await caller.close()
    await agent.close()


async def test_packets_lost_from_the_caller_are_nacked_by_the_relay(gateway, caller_token):
    """The receive side's RTCP: one in 12 of the caller's video packets is lost on the way into the relay (never
    sent by the caller's transport, first transmission only). The relay's receiver must see each gap and NACK
    it, the caller retransmits, and the agent still gets every frame whole, in order; the caller's sender gets
    receiver reports that count what arrived, and REMB. On the native path the steady packets between the losses
    are taken in C (the Inlet), which keeps the statistics and the NACK generator's state for aiortc's RTCP."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, RtcpSrPacket

    caller, agent, call_id = await answered_call(gateway.base_url, caller_token(), video_frames=10)
    caller_leg = gateway.board.relays[call_id].caller
    sender = next(t.sender for t in caller.peer.pc.getTransceivers() if t.kind == "video")
    reports, nacked, rembs = [], set(), []
    handle_rtcp = sender._handle_rtcp_packet

    async def noting(packet) -> None:
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            reports.extend(r for r in packet.reports if r.ssrc == sender._ssrc)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.media_ssrc == sender._ssrc:
            nacked.update(packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            rembs.append(packet)
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = noting

    video = next(t for t in caller.peer.pc.getTransceivers() if t.kind == "video")
    video_pt = internals.negotiated_codecs(video)[0].payloadType
    seen: set[int] = set()
    dropped: list[int] = []
    send_rtp = sender.transport._send_rtp

    async def lossy(data: bytes) -> None:  # the caller's DTLS transport, before SRTP: the packet never leaves
        if data[1] & 0x7F == video_pt and int.from_bytes(data[8:12], "big") == sender._ssrc:
            seq = int.from_bytes(data[2:4], "big")
            if seq not in seen:
                seen.add(seq)
                if len(seen) % 12 == 0:
                    dropped.append(seq)
                    return
        await send_rtp(data)

    sender.transport._send_rtp = lossy
    direct = caller_leg.direct
    taken = (direct.packets, direct.steady_packets) if direct is not None else (0, 0)
    start = len(agent.peer.sinks["video"].counters)
    await wait_until(lambda: len(dropped) >= 15 and len(agent.peer.sinks["video"].counters) >= start + 90
                     and len(reports) >= 2, 30)
    counters = agent.peer.sinks["video"].counters[start:]
    assert None not in counters and in_order(counters), counters
    gaps = sum(b - a - 1 for a, b in zip(counters, counters[1:]))
    assert gaps <= 3, f"{gaps} frames missing of {len(counters)} with {len(dropped)} packets lost on the way in"
    # The relay asked for (nearly) every lost packet, and its reports count the losses that retransmission (RTX,
    # another stream) did not make up: a statistic that missed or double-counted packets would be far off.
    assert len(nacked & set(dropped)) >= len(dropped) - 2, (sorted(dropped), sorted(nacked))
    last = reports[-1]
    assert (last.highest_sequence & 0xFFFF) in seen, (last.highest_sequence, max(seen))
    assert 0 < last.packets_lost <= len(dropped), (last.packets_lost, len(dropped))
    assert rembs, "no REMB from the relay's receiver"
    if gateway.settings.relay_mode == "packet" and gateway.settings.relay_fast_path == "native":
        # Between the losses, the caller's packets were taken by the native Inlet (and its video forwarded in C).
        packets, steady = direct.packets - taken[0], direct.steady_packets - taken[1]
        assert steady >= 0.5 * packets > 100, (steady, packets)
    await caller.close()
    await agent.close()


@pytest.mark.parametrize("test", [test_video_call_end_to_end, test_packets_lost_towards_the_agent_are_retransmitted],
                         ids=["end_to_end", "retransmitted"])
def test_native_path_on_uvloop(caller_token, test):
    """The native fast path under uvloop (the server's loop with event_loop=auto where the `fast` extra is
    installed): the same end-to-end and NACK tests as above, gateway and clients on uvloop's event loop. uvloop
    looks `datagram_received` up per datagram (the native Inlet replaces it per protocol) and its UDP transport has
    no user-space buffer (aiortc_internals.SendQueue is ours on both loops)."""
    uvloop = pytest.importorskip("uvloop")
    if fastpath.native_module() is None:
        pytest.skip("gateway.media._fastpath is not built (pip install -e . with a C compiler: scripts/setup.sh)")

    async def body() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with running_gateway(relay_mode="packet", relay_fast_path="native") as gw:
            await test(gw, caller_token)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(body())
