"""`--generator blaster`: the load generator's media in one C thread (bench/_blaster.c), so one core carries 50+ calls.

Call set-up stays aiortc's (signaling, ICE, DTLS, the first frame measured by aiortc's receivers, as with the
`aiortc` generator). Once a call is placed, `Blaster.take(call)` hands each of its peer connections to the C thread:
- its socket's asyncio reader is removed; the thread reads it (epoll) and hands back what is not RTP or RTCP (STUN
  consent checks and keepalives, DTLS) to aioice's protocol every ~10 ms (`_pump`);
- aiortc's sender RTP task is cancelled and its senders' and receivers' RTCP is silenced (libsrtp sessions must be
  used by one thread only), the sequence numbers and timestamps continue where aiortc's sender left them;
- the thread sends the encoded loop's VP8 frames at 30 fps and Opus at 50 packets/s with the same SSRCs, payload
  types and header extension ids, each packet tagged (call, stream, frame, packet index and count, send time), and
  times and identifies what the relay forwards by the tag.

`measure(call, window)` fills the call's CallResult from the thread's records, as MeasuredCall.measure does from its
meters: frames by the RTP marker bit (received, fps, freezes), frames complete and identified by tag (identified,
delay from the frame's first packet sent to its last packet received), audio per packet.
"""

from __future__ import annotations

import asyncio
from array import array
from typing import Any, Callable

from gateway.media import aiortc_internals as internals

CALLER_VIDEO, CALLER_AUDIO, AGENT_AUDIO = 1, 2, 3
FREEZE_S = 0.2
_RTP_HISTORY = 128


class BlasterError(RuntimeError):
    pass


def _module() -> Any:
    try:
        from bench import _blaster
    except ImportError as exc:
        raise BlasterError("bench/_blaster.c is not built: python setup.py build_ext --inplace") from exc
    return _blaster


async def _no_rtcp(*_: Any) -> None:
    return None


def _times(raw: bytes) -> list[float]:
    values = array("q")
    values.frombytes(raw)
    return [v / 1e9 for v in values]


class Blaster:
    """One per load-generator process: the C thread, and the peers handed to it."""

    def __init__(self, loop: Any) -> None:
        from pylibsrtp._binding import ffi, lib

        def addr(name: str) -> int:
            return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))

        self.native = _module().Blaster(addr("srtp_protect"), addr("srtp_unprotect"), addr("srtp_unprotect_rtcp"),
                                        list(loop.key), list(loop.delta), list(loop.opus))
        self._protocols: dict[int, Callable[[bytes, Any], None]] = {}
        self._peers: dict[int, list[int]] = {}  # id(call) -> its peers
        self._streams: dict[int, dict[str, tuple[int, int]]] = {}  # id(call) -> name -> (peer, stream index)
        self._pump_task: asyncio.Task[None] | None = None
        self.handed_back = 0

    def start(self) -> None:
        if self._pump_task is None:
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.drain()

    def drain(self) -> None:
        for peer, data, addr in self.native.drain():
            self.handed_back += 1
            received = self._protocols.get(peer)
            if received is not None:
                received(data, addr)

    async def take(self, call: Any, timeout: float = 10) -> None:
        """Hand a placed call's peer connections to the C thread (loadgen.Call or loadgen.JanusCall), each once it
        is connected (a Janus subscription's can still be connecting when `place` returns)."""
        index = call.index
        if hasattr(call, "caller_pub_pc"):  # Janus: a publishing and a subscribing connection on each side
            plan = [(call.caller_pub_pc, [("video", CALLER_VIDEO), ("audio", CALLER_AUDIO)], []),
                    (call.caller_sub_pc, [], [("audio", AGENT_AUDIO, "back")]),
                    (call.agent_pub_pc, [("audio", AGENT_AUDIO)], []),
                    (call.agent_sub_pc, [], [("video", CALLER_VIDEO, "video"), ("audio", CALLER_AUDIO, "audio")])]
        else:
            plan = [(call.caller_pc, [("video", CALLER_VIDEO), ("audio", CALLER_AUDIO)],
                     [("audio", AGENT_AUDIO, "back")]),
                    (call.agent_pc, [("audio", AGENT_AUDIO)],
                     [("video", CALLER_VIDEO, "video"), ("audio", CALLER_AUDIO, "audio")])]
        streams: dict[str, tuple[int, int]] = {}
        peers: list[int] = []
        deadline = asyncio.get_running_loop().time() + timeout
        for pc, sends, recvs in plan:
            while not (pc.connectionState == "connected" and _nominated(pc)):
                if pc.connectionState in ("failed", "closed") or asyncio.get_running_loop().time() > deadline:
                    raise BlasterError(f"peer connection {pc.connectionState}, not handed to the blaster")
                await asyncio.sleep(0.01)
            peer = self._add(pc, index, sends, recvs, streams)
            peers.append(peer)
        self._peers[id(call)] = peers
        self._streams[id(call)] = streams
        for peer in peers:
            self.native.start_peer(peer)

    def _add(self, pc: Any, index: int, sends: list[tuple[str, int]], recvs: list[tuple[str, int, str]],
             streams: dict[str, tuple[int, int]]) -> int:
        connections = internals.ice_connections(pc)
        if len(connections) != 1:
            raise BlasterError(f"expected one (bundled) ICE connection, found {len(connections)}")
        pair = connections[0]._nominated.get(1)
        if pair is None:
            raise BlasterError("no nominated ICE pair")
        protocol = pair.protocol
        transport = protocol.transport
        fd = transport.get_extra_info("socket").fileno()
        transceivers = pc.getTransceivers()
        dtls = transceivers[0].sender.transport
        if dtls._tx_srtp is None or dtls._rx_srtp is None:
            raise BlasterError("DTLS is not connected")
        # From here on only the C thread touches this connection's SRTP sessions and reads its socket.
        transport.pause_reading()  # asyncio no longer reads the socket
        for transceiver in transceivers:
            transceiver.receiver._send_rtcp = _no_rtcp
            transceiver.sender._send_rtcp = _no_rtcp
            task = getattr(transceiver.sender, "_RTCRtpSender__rtp_task", None)
            if task is not None:
                task.cancel()
        peer = self.native.add_peer(fd, pair.remote_candidate.host, pair.remote_candidate.port,
                                    internals.srtp_context(dtls._tx_srtp), internals.srtp_context(dtls._rx_srtp))
        self._protocols[peer] = protocol.datagram_received
        for kind, code in sends:
            transceiver = next(t for t in transceivers if t.kind == kind)
            sender = transceiver.sender
            codec = internals.negotiated_codecs(transceiver)[0]
            mid_id, abs_id, _ = internals.extension_ids(sender._RTCRtpSender__rtp_header_extensions_map)
            seq, ts = _continuation(sender, kind)
            mid = (sender._RTCRtpSender__mid or "").encode()
            streams[_send_name(code)] = (peer, self.native.add_send(peer, kind == "video", index, code, sender._ssrc,
                                                                    codec.payloadType, seq, ts, mid_id, mid, abs_id))
        for kind, code, name in recvs:
            transceiver = next(t for t in transceivers if t.kind == kind)
            pts = tuple(c.payloadType for c in internals.negotiated_codecs(transceiver) if c.name != "rtx")
            streams[name] = (peer, self.native.add_recv(peer, kind == "video", index, code, pts))
        return peer

    def release(self, call: Any) -> None:
        """Stop the thread's work for the call's connections (before aiortc closes them)."""
        for peer in self._peers.get(id(call), []):
            self.native.stop_peer(peer)
            self._protocols.pop(peer, None)

    def counters(self, call: Any) -> list[dict[str, int]]:
        return [self.native.counters(peer) for peer in self._peers.get(id(call), [])]

    def measure(self, call: Any, window: tuple[float, float]) -> None:
        streams = self._streams.get(id(call))
        if streams is None:
            return
        start, end = window
        seconds = end - start
        r = call.result

        def inside(times: list[float]) -> list[float]:
            return [t for t in times if start <= t <= end]

        def sent(name: str) -> list[float]:
            peer, i = streams[name]
            return _times(self.native.sent(peer, i)["times"])

        def received(name: str) -> dict[str, Any]:
            peer, i = streams[name]
            return self.native.received(peer, i)

        def timed(got: dict[str, Any]) -> list[float]:
            return [d / 1e6 for t, d in zip(_times(got["identified"]), array("q", got["delays"]))
                    if start <= t <= end]

        video = received("video")
        frames = inside(_times(video["all"]))
        r.video_received = len(frames)
        r.video_sent = len(inside(sent(_send_name(CALLER_VIDEO))))
        r.video_fps = len(frames) / seconds
        r.video_identified = len(inside(_times(video["identified"])))
        r.freezes = sum(1 for a, b in zip(frames, frames[1:]) if b - a > FREEZE_S)
        r.video_packets_received = video["packets"]
        r.video_packets_expected = _expected(video)
        r.video_delay_ms = timed(video)
        audio = received("audio")
        r.audio_sent = len(inside(sent(_send_name(CALLER_AUDIO))))
        r.audio_received = len(inside(_times(audio["all"])))
        r.audio_packets_expected = _expected(audio)
        r.audio_delay_ms = timed(audio)
        back = received("back")
        r.audio_back_sent = len(inside(sent(_send_name(AGENT_AUDIO))))
        r.audio_back_received = len(inside(_times(back["all"])))
        r.ok = r.video_received > 0 and r.audio_received > 0

    async def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
        self.native.close()


def _nominated(pc: Any) -> bool:
    return all(c._nominated.get(1) is not None for c in internals.ice_connections(pc))


def _send_name(code: int) -> str:
    return f"send-{code}"


def _expected(got: dict[str, Any]) -> int:
    if got["first_seq"] < 0:
        return 0
    return int(got["max_seq"] - got["first_seq"] + 1)


def _continuation(sender: Any, kind: str) -> tuple[int, int]:
    """The next sequence number and timestamp of aiortc's sender (its RTP task is cancelled): from its history."""
    history = getattr(sender, "_RTCRtpSender__rtp_history", {})
    last = None
    for packet in history.values():
        if last is None or ((packet.sequence_number - last.sequence_number) & 0xFFFF) < 0x8000:
            last = packet
    if last is None:
        import random

        return random.randrange(1 << 16), random.randrange(1 << 32)
    step = 3000 if kind == "video" else 960
    return (last.sequence_number + 1) & 0xFFFF, (last.timestamp + step) & 0xFFFFFFFF
