"""The only module that touches aiortc/aioice internals: the rest of gateway/media uses aiortc's public API (the names
`aiortc` exports, and aiortc.contrib.media) plus this module. Written for aiortc 1.16.0 and aioice 0.13.0, pinned
in pyproject.toml; tests/unit/test_aiortc_internals.py checks that every name listed below exists.

Three hooks make aiortc forward instead of transcode:
- `tap_receiver`: the receiver keeps doing SRTP, RTCP receiver reports, NACKs and RTX unwrapping, but its jitter
  buffer is replaced by one of our assemblers and its decoder thread gets no work (no decoder is ever created).
- `on_keyframe_request`: a PLI/FIR that reaches one of our senders calls us instead of flagging an encoder.
- `request_keyframe`: send a PLI from a receiver to the remote sender.
The sender side needs no hook: a track that yields `av.Packet` is packetized by aiortc without encoding.
`SenderPort` sends already-encoded RTP through a sender; `lean_receive` is a receive path without decoder work;
`DirectReceive` and `NativeSrtp` are the fast path's hooks (gateway/media/fastpath.py).
Plus `restrict_host_addresses`, because aioice gathers on every interface but loopback, on any port, and has no
setting for either (it also binds host candidates inside a `PortRange`); `guard_ice`, because aioice sends checks
to any remote candidate it is given, for as long as it is given more; and `LinkProbe`, which reads how much a peer
connection received and how much waits to be sent on its socket.

Relied-on names (private unless said otherwise):
- aiortc modules: aiortc.clock.current_ntp_time; aiortc.codecs.h264.h264_depayload; aiortc.codecs.vpx.vp8_depayload;
  aiortc.rtp: RTP_HISTORY_SIZE, RtpPacket, RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unwrap_rtx;
  aiortc.sdp: SessionDescription, candidate_from_sdp; aiortc.utils: uint16_add, uint16_gt;
  aiortc.rtcrtpreceiver.StreamStatistics; aiortc.rtp.HeaderExtensions; aiortc.rtcdtlstransport.State.
- Kept by the native Inlet for steady streams (DirectReceive, _SteadyStream): StreamStatistics: packets_received,
  max_seq, cycles, _jitter_q4, _last_arrival, _last_timestamp (as its `add` keeps them); NackGenerator: max_seq,
  missing; RemoteBitrateEstimator.add (fed in batches).
- pylibsrtp (aiortc's SRTP, for the native fast path): pylibsrtp._binding: ffi, lib (srtp_protect, srtp_unprotect);
  Session: _srtp.
- RtpPacket: _data (set by RTCRtpReceiver._handle_rtp_packet), padding_size, extensions (abs_send_time, mid,
  audio_level), serialize.
- RTCRtpReceiver: _RTCRtpReceiver__started, __jitter_buffer, __decoder_queue, __codecs, __remote_streams,
  __rtx_ssrc, __nack_generator, __remote_bitrate_estimator, __rtcp_ssrc; _enabled, _handle_rtp_packet, _send_rtcp,
  _send_rtcp_nack, _send_rtcp_pli.
- RTCRtpSender: _RTCRtpSender__started, __mid, __rtp_header_extensions_map, __rtp_history, __ntp_timestamp,
  __rtp_timestamp, __octet_count, __packet_count; _ssrc, _rtx_ssrc, _send_keyframe.
- RTCRtpTransceiver: _codecs. RTCDtlsTransport: _RTCDtlsTransport__rx_packets, _send_rtp, _rx_srtp, _tx_srtp,
  _state, _rtp_router (RtpRouter: route_rtp), _rtp_header_extensions_map (HeaderExtensionsMap: __ids), __rx_bytes,
  __tx_packets, __tx_bytes.
  RTCIceTransport: _connection. RTCIceGatherer: _connection.
- aioice modules: aioice.ice: CandidatePair (State.WAITING, FROZEN, FAILED), TransportPolicy.ALL,
  get_host_addresses, StunProtocol, server_reflexive_candidate; aioice.candidate: Candidate, candidate_foundation,
  candidate_priority; aioice.turn.UDP_SOCKET_BUFFER_SIZE.
- aioice Connection: _add_remote_candidate, check_start_task, request_received, check_state, check_complete,
  _check_list, _remote_candidates, _local_candidates_start, _local_candidates, _local_candidates_end, _components,
  _protocols, _closing, _nominated, _use_ipv4, _use_ipv6, _transport_policy, stun_server, gather_candidates,
  get_component_candidates. aioice Candidate: _network_host. CandidatePair: task, state. StunProtocol: transport,
  local_candidate, datagram_received (replaced per instance by `DirectReceive`).
- StunProtocol.transport is replaced by our `SendQueue` (in front of the event loop's datagram transport, which
  keeps reading; aioice calls sendto, close, get_extra_info, is_closing on it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import termios
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc.codecs.h264 import h264_depayload
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp
from aiortc.utils import uint16_add, uint16_gt

from ..errors import GatewayError
from .ports import PortRange, PortsExhausted

log = logging.getLogger(__name__)


__all__ = [
    "DirectReceive", "HookError", "LinkProbe", "NativeSrtp", "OutgoingPacket", "RtpPacket", "SenderPort", "SessionDescription", "announce_address",
    "candidate_from_sdp", "depayloaded", "forget_sent", "guard_ice", "h264_depayload", "ice_connections",
    "nominated_candidate_types", "packet_from_fields",
    "lean_receive", "negotiated_codecs", "on_keyframe_request", "receiver_codecs", "request_keyframe",
    "restrict_host_addresses", "send_now", "sender_ssrcs", "tap_receiver", "uint16_add", "uint16_gt",
    "vp8_depayload",
]


class HookError(GatewayError):
    code = "media_hook_error"


def depayloaded(packet: RtpPacket) -> bytes:
    """The codec payload of a packet that went through a tapped receiver (aiortc sets it before the jitter buffer)."""
    return packet._data  # type: ignore[attr-defined,no-any-return]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated for a transceiver, preferred first (empty before negotiation)."""
    return transceiver._codecs


class _NoDecoding:
    """Stands in for the receiver's decoder queue: its decoder thread exits at once, nothing is queued."""

    def get(self) -> None:
        return None

    def put(self, item: Any) -> None:  # only the stop sentinel (None) can arrive here
        return None


def _private(obj: object, cls: type, name: str) -> str:
    attr = f"_{cls.__name__}__{name}"
    if not hasattr(obj, attr):
        raise HookError(f"aiortc {cls.__name__} has no {name!r}: this aiortc version is not supported")
    return attr


def tap_receiver(receiver: RTCRtpReceiver, assembler: Any) -> None:
    """Route the receiver's depayloaded packets to `assembler` (an object with `add(packet)`) instead of decoding."""
    if getattr(receiver, _private(receiver, RTCRtpReceiver, "started")):
        raise HookError("the receiver is already running; tap it before the connection starts")
    setattr(receiver, _private(receiver, RTCRtpReceiver, "jitter_buffer"), assembler)
    setattr(receiver, _private(receiver, RTCRtpReceiver, "decoder_queue"), _NoDecoding())


def lean_receive(receiver: RTCRtpReceiver, sink: Callable[[RtpPacket], None]) -> None:
    """Packet forwarding's receive path: aiortc's `_handle_rtp_packet` without what only a decoder needs.

    Kept: bitrate estimation (REMB to the sender), per-SSRC statistics (for receiver reports), RTX unwrapping and
    NACKs. Dropped, per packet: the wall-clock datetime for getSynchronizationSources, depayloading, the jitter
    buffer and the decoder queue (measured with py-spy under load: see docs/benchmark.md).
    """
    from aiortc.rtcrtpreceiver import StreamStatistics
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unwrap_rtx

    name = "_RTCRtpReceiver__"
    for attr in ("codecs", "remote_streams", "rtx_ssrc", "nack_generator", "remote_bitrate_estimator", "rtcp_ssrc"):
        _private(receiver, RTCRtpReceiver, attr)
    codecs: dict[int, RTCRtpCodecParameters] = getattr(receiver, name + "codecs")
    streams: dict[int, Any] = getattr(receiver, name + "remote_streams")
    rtx_ssrc: dict[int, int] = getattr(receiver, name + "rtx_ssrc")
    nack = getattr(receiver, name + "nack_generator")
    estimator = getattr(receiver, name + "remote_bitrate_estimator")

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not receiver._enabled:
            return
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(abs_send_time=packet.extensions.abs_send_time, arrival_time_ms=arrival_time_ms,
                                 payload_size=len(packet.payload) + packet.padding_size, ssrc=packet.ssrc)
            rtcp_ssrc = getattr(receiver, name + "rtcp_ssrc")
            if rtcp_ssrc is not None and remb is not None:
                await receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                                         fci=pack_remb_fci(*remb)))
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if codec.name == "rtx":
            original = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
        if nack is not None and nack.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nack.missing))
        sink(packet)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    # What the native Inlet keeps up to date for steady streams (DirectReceive._consider, _SteadyStream).
    receiver._callin_lean = (codecs, streams, nack, estimator)  # type: ignore[attr-defined]


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, RTCRtpCodecParameters]:
    """Payload type -> codec, as negotiated (filled when the receiver starts)."""
    return getattr(receiver, _private(receiver, RTCRtpReceiver, "codecs"))


def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> "asyncio.Task[None]":
    """Send a Picture Loss Indication for `media_ssrc` to the remote sender."""
    return asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the remote asks this sender for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def count_keyframe_requests(sender: RTCRtpSender) -> list[float]:
    """From now on, note the time (monotonic) of every keyframe request reaching this sender, and still serve it.
    Returns the list the times go into (for tests and benchmarks that count what reaches a caller)."""
    asked: list[float] = []
    serve = sender._send_keyframe

    def noted() -> None:
        asked.append(time.monotonic())
        serve()

    on_keyframe_request(sender, noted)
    return asked


NTP_OFFSET_S = 2208988800  # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01


def ntp_now() -> int:
    """aiortc's clock.current_ntp_time (64-bit NTP time) from time.time(), without a datetime per packet."""
    now = time.time() + NTP_OFFSET_S
    whole = int(now)
    return (whole << 32) | int((now - whole) * 4294967296.0)


def ms_now() -> int:
    """aiortc's clock.current_ms (milliseconds since NTP's epoch), without a datetime per packet."""
    return int((time.time() + NTP_OFFSET_S) * 1000)


def send_now(coro: Any) -> None:
    """Run a send coroutine to completion now if it does not suspend (a UDP pair never does); if it suspends
    (e.g. a TURN channel being bound), finish it from the loop. Saves a Task per forwarded packet."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return
    except (ConnectionError, OSError):
        return

    def resume(_: Any = None) -> None:
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        except (ConnectionError, OSError):
            return
        _wait(pending)

    def _wait(pending: Any) -> None:
        if pending is None:
            asyncio.get_running_loop().call_soon(resume)
        else:
            pending._asyncio_future_blocking = False
            pending.add_done_callback(resume)

    _wait(waiting)


class SenderPort:
    """Sends already-encoded RTP packets through one aiortc sender: its SSRC, MID, header extension map,
    retransmission history (aiortc answers the remote's NACKs from it) and RTCP sender-report counters."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender = sender
        for name in ("started", "mid", "rtp_header_extensions_map", "rtp_history", "ntp_timestamp",
                     "rtp_timestamp", "octet_count", "packet_count"):
            _private(sender, RTCRtpSender, name)
        self.ssrc = sender._ssrc
        self._history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        self._ext_map = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
        self.mid: str | None = None
        self._native: NativeSrtp | None = None
        self.sent_natively = 0
        self._pair: Any = None
        self._transport: Any = None
        self._fd = -1
        self._ids = (0, 0, 0)
        self._mid = b""
        self._session: Any = None
        self._ctx = 0
        self.route: Any = None  # the native Route (use_native)
        self.payload_type = 0  # the one the route sends with
        # (pair, SRTP session, payload type) the route sends with; holding the session keeps the srtp_t that the route
        # protects with alive until the route is connected to another (aiortc drops its reference when DTLS closes).
        self._routed: tuple[Any, Any, int] | None = None

    @property
    def ready(self) -> bool:
        """The sender runs (negotiated, DTLS up): packets can go out."""
        sender = self._sender
        if not sender._RTCRtpSender__started or sender.transport._state is not _DTLS_CONNECTED:  # type: ignore[attr-defined]
            return False
        if self.mid is None:
            self.mid = sender._RTCRtpSender__mid  # type: ignore[attr-defined]
        return True

    def backlog(self) -> int:
        """Bytes waiting in the UDP socket's send queue (`SendQueue`: when the kernel's is full)."""
        try:
            connection = self._sender.transport.transport._connection
            pair = connection._nominated.get(1)
            return send_queue(pair.protocol).get_write_buffer_size() if pair is not None else 0
        except AttributeError:
            return 0

    def use_native(self, native: Any) -> None:
        """Protect and send through the native fast path (`gateway.media._fastpath`) from now on, and give the
        stream a native Route (steady-state forwarding in C, see packets.RtpForwarder) whose sent packets join the
        sender's retransmission history."""
        self._native = native
        self.route = native.module.Route(native.protect)
        if RTP_HISTORY_SIZE != 128:
            raise HookError(f"aiortc's RTP_HISTORY_SIZE is {RTP_HISTORY_SIZE}, the native route keeps 128")
        self._history = NativeHistory(self.route, self._history, self)
        self._sender._RTCRtpSender__rtp_history = self._history  # type: ignore[attr-defined]

    def connect_route(self, payload_type: int) -> bool:
        """Point the native route at the current socket, address and SRTP context; False when the stream cannot be
        handed to C now (not connected, or our SendQueue holds packets for this socket: sending past them would
        reorder)."""
        if not self.ready:
            return False
        dtls = self._sender.transport
        session = dtls._tx_srtp
        pair = dtls.transport._connection._nominated.get(1)
        if session is None or pair is None:
            return False
        transport = send_queue(pair.protocol)
        if transport is None or transport.is_closing() or transport.get_write_buffer_size():
            return False
        if (pair, session, payload_type) != self._routed:
            sock = transport.get_extra_info("socket")
            if sock is None:
                return False
            mid_id, abs_id, audio_id = extension_ids(self._ext_map)
            remote = pair.remote_candidate
            self.route.connect(srtp_context(session), sock.fileno(), remote.host, remote.port, self.ssrc, payload_type,
                               mid_id, (self.mid or "").encode(), abs_id, audio_id)
            self._routed = (pair, session, payload_type)
            self.payload_type = payload_type
        return True

    def route_valid(self) -> bool:
        """Whether what the route was connected to still holds (checked when it syncs, and before it is armed)."""
        if not self.ready:
            return False
        dtls = self._sender.transport
        pair = dtls.transport._connection._nominated.get(1)
        routed = self._routed
        if routed is None or pair is not routed[0] or dtls._tx_srtp is not routed[1]:
            return False
        transport = pair.protocol.transport
        return transport is not None and not transport.is_closing()

    def sent_by_route(self, packets: int, payload_bytes: int, wire_bytes: int, ntp: int, rtp_timestamp: int) -> None:
        """Counters of what the native route sent since the last call, into aiortc's sender (sender reports) and
        DTLS transport (stats)."""
        if not packets:
            return
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += payload_bytes  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]
        dtls = sender.transport
        dtls._RTCDtlsTransport__tx_packets += packets
        dtls._RTCDtlsTransport__tx_bytes += wire_bytes
        self.sent_natively += packets

    def queue(self, data: bytes) -> None:
        """A protected packet the route could not send without blocking: the SendQueue takes it (in order)."""
        routed = self._routed
        if routed is None:
            return
        pair = routed[0]
        transport = send_queue(pair.protocol)
        if transport is not None and not transport.is_closing():
            transport.sendto(data, (pair.remote_candidate.host, pair.remote_candidate.port))

    def send(self, packet: "OutgoingPacket") -> None:
        ntp = ntp_now()
        packet.mid = self.mid
        packet.abs_send_time = (ntp >> 14) & 0x00FFFFFF
        self._history[packet.sequence_number % RTP_HISTORY_SIZE] = packet  # type: ignore[assignment]
        sender = self._sender
        if self._native is not None and self._send_native(packet):
            self.sent_natively += 1
        else:
            send_now(sender.transport._send_rtp(packet.serialize(self._ext_map)))
        sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = packet.timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += len(packet.payload)  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]

    def _send_native(self, packet: "OutgoingPacket") -> bool:
        """SRTP-protect and send in C, with the DTLS transport's own SRTP session; False when this packet must take
        aiortc's path (not connected, or the SendQueue already holds packets for this socket: sending past them
        would reorder)."""
        dtls = self._sender.transport
        session = dtls._tx_srtp
        if session is None or dtls._state is not _DTLS_CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        if pair is not self._pair:
            transport = send_queue(pair.protocol)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is None:
                return False
            self._pair, self._transport, self._fd = pair, transport, sock.fileno()
            self._ids = extension_ids(self._ext_map)
            self._mid = (self.mid or "").encode()
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        if session is not self._session:
            self._session, self._ctx = session, srtp_context(session)
        mid_id, abs_id, audio_id = self._ids
        level = packet.audio_level
        remote = pair.remote_candidate
        result = self._native.module.protect_send(
            self._native.protect, self._ctx, self._fd, remote.host, remote.port, packet.payload_type,
            packet.marker, packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload, packet.padding_size,
            mid_id, self._mid, abs_id, packet.abs_send_time, audio_id,
            -1 if level is None else (0x80 if level[0] else 0) | level[1])
        if isinstance(result, bytes):  # the socket would block: the SendQueue takes it (and LinkProbe sees it there)
            transport.sendto(result, (remote.host, remote.port))
        dtls._RTCDtlsTransport__tx_packets += 1
        dtls._RTCDtlsTransport__tx_bytes += len(result) if isinstance(result, bytes) else max(result, 0)
        return True


class OutgoingPacket:
    """An RTP packet the forwarder sends: the few fields it sets, cheaper to make than aiortc's RtpPacket. Kept in
    the sender's retransmission history, where aiortc's `_retransmit` uses it like an RtpPacket."""

    __slots__ = ("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "payload", "padding_size",
                 "audio_level", "mid", "abs_send_time")

    def __init__(self, payload_type: int, marker: int, sequence_number: int, timestamp: int, ssrc: int,
                 payload: bytes, padding_size: int = 0, audio_level: Any = None) -> None:
        self.payload_type = payload_type
        self.marker = marker
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload
        self.padding_size = padding_size
        self.audio_level = audio_level
        self.mid: str | None = None
        self.abs_send_time: int | None = None

    @property
    def csrc(self) -> list[int]:
        return []

    @property
    def extensions(self) -> Any:
        from aiortc.rtp import HeaderExtensions

        return HeaderExtensions(abs_send_time=self.abs_send_time, audio_level=self.audio_level, mid=self.mid)

    def to_rtp(self) -> RtpPacket:
        packet = RtpPacket(payload_type=self.payload_type, marker=self.marker, sequence_number=self.sequence_number,
                           timestamp=self.timestamp, ssrc=self.ssrc, payload=self.payload)
        packet.padding_size = self.padding_size
        packet.extensions = self.extensions
        return packet

    def serialize(self, extensions_map: Any) -> bytes:
        return self.to_rtp().serialize(extensions_map)


class NativeHistory:
    """A sender's retransmission history (aiortc's `_retransmit` reads it with `get(seq % RTP_HISTORY_SIZE)`) that
    also holds what the native route sent: a slot the route filled is newer than what the dict holds there, since a
    packet sent in Python empties the route's slot."""

    def __init__(self, route: Any, packets: dict[int, Any], port: SenderPort) -> None:
        self._route = route
        self._packets = packets
        self._port = port

    def __setitem__(self, index: int, packet: Any) -> None:
        self._packets[index] = packet
        self._route.forget(index)

    def get(self, index: int, default: Any = None) -> Any:
        sent = self._route.history(index)
        if sent is None:
            return self._packets.get(index, default)
        marker, seq, ts, payload, padding, level, abs_send_time = sent
        packet = OutgoingPacket(0, marker, seq, ts, self._port.ssrc, payload, padding,
                                None if level < 0 else (bool(level & 0x80), level & 0x7F))
        packet.payload_type = self._port.payload_type
        packet.mid = self._port.mid
        packet.abs_send_time = abs_send_time
        return packet

    def clear(self) -> None:
        self._packets.clear()
        for index in range(RTP_HISTORY_SIZE):
            self._route.forget(index)


def extension_ids(extensions_map: Any) -> tuple[int, int, int]:
    """(mid, abs-send-time, audio level) one-byte header extension ids of a negotiated map; 0 where absent."""
    ids = extensions_map._HeaderExtensionsMap__ids
    return ids.mid or 0, ids.abs_send_time or 0, ids.audio_level or 0


class NativeSrtp:
    """The native module and the addresses of srtp_protect/srtp_unprotect in pylibsrtp's bundled libsrtp, whose
    sessions aiortc's DTLS transports hold (so one SRTP context per direction, whichever path a packet takes)."""

    def __init__(self, module: Any) -> None:
        from pylibsrtp._binding import ffi, lib

        self.module = module
        self.protect = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect")))
        self.unprotect = int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_unprotect")))


def srtp_context(session: Any) -> int:
    """The srtp_t of a pylibsrtp Session, as an address (valid while the session lives)."""
    from pylibsrtp._binding import ffi

    return int(ffi.cast("uintptr_t", session._srtp[0]))


def _dtls_connected() -> Any:
    from aiortc.rtcdtlstransport import State

    return State.CONNECTED


_DTLS_CONNECTED = _dtls_connected()


class DirectReceive:
    """Takes a peer connection's SRTP packets (not SRTCP, not DTLS) straight from the socket's protocol callback to
    the receiver, synchronously: no aioice queue, no Task step of the DTLS transport per packet, no STUN parse
    attempt. SRTP and parsing are done by the native module when given, else by pylibsrtp and aiortc's parser.
    Everything else the socket receives takes aioice's and aiortc's usual way. Install once the leg is connected.

    With the native module and `producer_of` (receiver -> its forward.Producer), the callback itself is the module's
    `Inlet`: an incoming stream whose producer forwards only through armed native routes (no tap, no consumer in
    Python) and whose receiver has no NACK outstanding is *armed* there after a packet Python handled, and from then
    on its in-order packets are unprotected, counted and fanned out in C (see _fastpath.c); `_SteadyStream` brings
    the counters into aiortc's receive statistics, NACK generator, REMB estimator and the producer in batches, and
    Python takes the stream back with the first packet that is not steady (a gap, a keyframe, a tap, ...)."""

    steady_in_c = True  # False: the native path as before the Inlet (bench.packet_path's `native-step2`)
    rtcp_direct = True  # False: SRTCP takes aioice's queue and the DTLS transport's task (`native-step3`)

    def __init__(self, pc: RTCPeerConnection, native: NativeSrtp | None,
                 producer_of: Callable[[Any], Any] | None = None) -> None:
        self._native = native
        self._producer_of = producer_of if native is not None and self.steady_in_c else None
        self.installed = 0
        self.packets = 0  # SRTP packets taken directly (for tests and stats)
        self.rtcp_packets = 0  # SRTCP packets taken directly (for tests and stats)
        self.steady_packets = 0  # of those, taken by the native Inlet (steady streams)
        self.inlets: list[Any] = []
        self.armed: dict[Any, _SteadyStream] = {}  # receiver -> its stream armed in an Inlet
        seen: set[int] = set()
        for transceiver in pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is None or id(dtls) in seen:
                continue
            seen.add(id(dtls))
            for name in ("_rx_srtp", "_state", "_rtp_router", "_rtp_header_extensions_map", "_RTCDtlsTransport__rx_packets",
                         "_RTCDtlsTransport__rx_bytes"):
                if not hasattr(dtls, name):
                    raise HookError(f"aiortc RTCDtlsTransport has no {name!r}: this aiortc version is not supported")
            connection = dtls.transport._connection
            for protocol in connection._protocols:
                original = protocol.datagram_received
                protocol.datagram_received = self._handler(dtls, original)
                self.installed += 1

    def _handler(self, dtls: Any, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        import pylibsrtp

        router = dtls._rtp_router
        ext_map = dtls._rtp_header_extensions_map
        native = self._native
        connected = _DTLS_CONNECTED
        context: list[Any] = [None, 0]  # the rx session and its srtp_t, looked up once per session
        inlet: Any = None

        armed = self.armed

        def deliver(packet: RtpPacket) -> None:
            receiver = router.route_rtp(packet)
            if receiver is not None:
                steady = armed.get(receiver)
                if steady is not None:  # (an RTX packet, another SSRC): aiortc's state up to date first
                    steady.flush()
                send_now(receiver._handle_rtp_packet(packet, arrival_time_ms=ms_now()))
                if inlet is not None:
                    self._consider(inlet, dtls, context, deliver, packet, receiver)

        def other(data: bytes, addr: Any) -> None:
            """What is not SRTP: SRTCP straight to aiortc's RTCP handling (no aioice queue, no STUN parse attempt,
            no task step of the DTLS transport), STUN and DTLS aioice's way."""
            session = dtls._rx_srtp
            if (session is None or len(data) < 8 or not 127 < data[0] < 192 or not 191 < data[1] < 224
                    or dtls._state is not connected):
                original(data, addr)
                return
            dtls._RTCDtlsTransport__rx_packets += 1
            dtls._RTCDtlsTransport__rx_bytes += len(data)
            try:
                plain = session.unprotect_rtcp(data)
            except pylibsrtp.Error:
                return  # not authentic, replayed or malformed: dropped, as aiortc does
            self.rtcp_packets += 1
            try:
                send_now(dtls._handle_rtcp_data(plain))
            except Exception:  # aiortc's task would have ended on it (and the leg's RTCP with it); keep the leg
                log.exception("handling an RTCP packet failed")

        not_srtp = other if self.rtcp_direct else original

        def received(data: bytes, addr: Any) -> None:
            session = dtls._rx_srtp
            # SRTP: version 2 (first byte 128-191); SRTCP has packet types 192-223 in the second byte.
            if session is None or not 127 < data[0] < 192 or dtls._state is not connected or 191 < data[1] < 224:
                not_srtp(data, addr)
                return
            dtls._RTCDtlsTransport__rx_packets += 1
            dtls._RTCDtlsTransport__rx_bytes += len(data)
            self.packets += 1
            if native is not None:
                if session is not context[0]:
                    context[0], context[1] = session, srtp_context(session)
                # The ids are read per packet: the map is configured when the receivers start, which can be after
                # the leg is connected (ids read once here left every extension unparsed: no REMB, no audio level).
                fields = native.module.unprotect_parse(native.unprotect, context[1], data, *extension_ids(ext_map))
                if fields.__class__ is int:
                    return  # not authentic, replayed or malformed: dropped, as aiortc does
                packet = packet_from_fields(fields)
            else:
                try:
                    packet = RtpPacket.parse(session.unprotect(data), ext_map)
                except (pylibsrtp.Error, ValueError):
                    return
            deliver(packet)

        if self._producer_of is None:
            return received
        inlet = native.module.Inlet(native.unprotect, dtls, connected, not_srtp, received, *extension_ids(ext_map))
        self.inlets.append(inlet)
        return inlet  # type: ignore[no-any-return]

    def _consider(self, inlet: Any, dtls: Any, context: list[Any], deliver: Callable[[RtpPacket], None],
                  packet: RtpPacket, receiver: Any) -> None:
        """After Python handled a packet: arm its stream in the Inlet if its packets may be forwarded in C."""
        assert self._producer_of is not None
        producer = self._producer_of(receiver)
        if (producer is None or producer.steady is not None or producer.taps or producer.slow or producer._closed
                or not receiver._enabled):
            return
        lean = getattr(receiver, "_callin_lean", None)
        if lean is None:
            return  # aiortc's full receive path (relay_lean_receive off): not replicated in C
        codecs, streams, nack, estimator = lean
        ssrc = packet.ssrc
        codec = codecs.get(packet.payload_type)
        stats = streams.get(ssrc)
        if (codec is None or codec.name == "rtx" or stats is None or stats.max_seq != packet.sequence_number
                or stats._last_arrival is None or stats.packets_received < 2):
            return
        if nack is not None and (nack.missing or nack.max_seq != packet.sequence_number):
            return
        video = producer.kind == "video"
        kind = _STEADY_CODECS.get(codec.name, 0) if video else 0
        if video and not kind:
            return  # C cannot tell this codec's keyframes
        consumers = producer.armed
        if any(getattr(c, "source_ssrc", None) != ssrc for c in consumers) or context[0] is None:
            return
        owner = _SteadyStream(self, inlet, deliver, ssrc, receiver, stats, nack, estimator, producer, dtls, consumers)
        if inlet.arm(ssrc, owner, context[0], context[1], packet.payload_type, video, kind, codec.clockRate,
                     estimator is not None, stats.max_seq, stats._jitter_q4, stats._last_arrival,
                     stats._last_timestamp, producer.routes, producer.gop if video else None, producer.taps,
                     *extension_ids(dtls._rtp_header_extensions_map)):
            producer.steady = owner
            self.armed[receiver] = owner


_STEADY_CODECS = {"VP8": 1, "H264": 2}  # video codecs whose keyframe starts _fastpath.c recognises


class _QuietFlush:
    """One flush tick per event loop for every Inlet with armed streams (instead of a timer per stream): C syncs a
    stream's counters itself while its packets flow (every 32 packets or 100 ms, _fastpath.c SYNC_*), so the tick
    only has to bring in what a stream that went quiet (no packet for FLUSH_S/2) counted since its last sync;
    `Inlet.quiet` returns just those, so a tick over flowing streams makes no Python object. The counters of a
    quiet stream wait in C at most about FLUSH_S after its last packet; a flowing stream's at most 100 ms."""

    FLUSH_S = 0.1  # counters of a stream that went quiet do not wait in C for its next packet much longer than this
    shared = True  # False: a timer per stream, as in step 3 (bench.packet_path's `native-step3`)
    _by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _QuietFlush]" = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.inlets: dict[int, list[Any]] = {}  # id(inlet) -> [inlet, armed streams]
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0

    @classmethod
    def of_loop(cls) -> "_QuietFlush":
        loop = asyncio.get_running_loop()
        flusher = cls._by_loop.get(loop)
        if flusher is None:
            flusher = cls._by_loop[loop] = cls(loop)
        return flusher

    def add(self, inlet: Any) -> None:
        entry = self.inlets.get(id(inlet))
        if entry is None:
            self.inlets[id(inlet)] = [inlet, 1]
        else:
            entry[1] += 1
        if self._timer is None:
            self._timer = self._loop.call_later(self.FLUSH_S / 2, self._tick)

    def remove(self, inlet: Any) -> None:
        entry = self.inlets.get(id(inlet))
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self.inlets[id(inlet)]
        if not self.inlets and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        self.ticks += 1
        quiet_ns = int(self.FLUSH_S / 2 * 1e9)  # no packet for FLUSH_S/2, ticks every FLUSH_S/2: ~FLUSH_S at most
        for inlet, _ in list(self.inlets.values()):
            for owner, state in inlet.quiet(quiet_ns):
                try:
                    owner.quiet(state)
                except Exception:  # one stream's error must not stop the others' flushes (nor the tick)
                    log.exception("flushing a steady stream's counters failed")
        if self.inlets and self._timer is None:
            self._timer = self._loop.call_later(self.FLUSH_S / 2, self._tick)


class _SteadyStream:
    """Python's side of an incoming stream armed in a native Inlet: what C counted goes into aiortc's receiver
    (statistics for receiver reports, the NACK generator's highest sequence number, the REMB estimator, whose REMB
    is sent as aiortc's receiver would), the DTLS transport's counters and the producer; the packets that are not
    steady come back here (`release`) and take Python's way."""

    __slots__ = ("direct", "inlet", "deliver", "ssrc", "receiver", "stats", "nack", "estimator", "producer", "dtls",
                 "consumers", "_flusher", "_timer")

    def __init__(self, direct: DirectReceive, inlet: Any, deliver: Callable[[RtpPacket], None], ssrc: int,
                 receiver: Any, stats: Any, nack: Any, estimator: Any, producer: Any, dtls: Any,
                 consumers: tuple[Any, ...]) -> None:
        self.direct = direct
        self.inlet = inlet
        self.deliver = deliver
        self.ssrc = ssrc
        self.receiver = receiver
        self.stats = stats
        self.nack = nack
        self.estimator = estimator
        self.producer = producer
        self.dtls = dtls
        self.consumers = consumers  # the producer's armed consumers, in the order of the routes C was given
        self._flusher: _QuietFlush | None = None
        self._timer: asyncio.TimerHandle | None = None
        if _QuietFlush.shared:
            self._flusher = _QuietFlush.of_loop()
            self._flusher.add(inlet)
        else:  # step 3's timer per stream, kept for bench.packet_path's same-run comparison (`native-step3`)
            self._timer = asyncio.get_running_loop().call_later(_QuietFlush.FLUSH_S, self._flush)

    def flush(self) -> None:
        """What C counted so far, into aiortc's receiver and the producer now."""
        state = self.inlet.take(self.ssrc) if self.producer.steady is self else None
        if state is not None:
            self._apply(state)

    def _flush(self) -> None:
        if self.producer.steady is not self:
            self._timer = None
            return
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(_QuietFlush.FLUSH_S, self._flush)

    def quiet(self, state: tuple[Any, ...]) -> None:
        """What C counted before the stream went quiet (_QuietFlush's tick; C took it from this owner's stream)."""
        self._apply(state)

    def _stop(self) -> None:
        if self.producer.steady is self:
            self.producer.steady = None
        if self.direct.armed.get(self.receiver) is self:
            del self.direct.armed[self.receiver]
        if self._flusher is not None:
            self._flusher.remove(self.inlet)
            self._flusher = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _apply(self, state: tuple[Any, ...]) -> None:
        taken, wire_bytes, packets, frames, max_seq, cycles, jitter_q4, last_arrival, last_ts, remb = state
        if taken:
            dtls = self.dtls
            dtls._RTCDtlsTransport__rx_packets += taken
            dtls._RTCDtlsTransport__rx_bytes += wire_bytes
            self.direct.packets += taken
            self.direct.steady_packets += taken
        if packets:
            stats = self.stats
            stats.packets_received += packets
            stats.max_seq = max_seq
            stats.cycles += cycles
            stats._jitter_q4 = jitter_q4
            stats._last_arrival = last_arrival
            stats._last_timestamp = last_ts
            if self.nack is not None:
                self.nack.max_seq = max_seq
            self.producer._frames += frames
            self.producer.last_frame_at = time.monotonic()
        if remb is not None and self.estimator is not None:
            latest = None
            add = self.estimator.add
            ssrc = self.ssrc
            for arrival_ms, abs_send_time, size in struct.iter_unpack("<qII", remb):
                estimate = add(arrival_ms, abs_send_time, size, ssrc)  # (arrival_time_ms, abs_send_time, size, ssrc)
                if estimate is not None:
                    latest = estimate
            rtcp_ssrc = getattr(self.receiver, "_RTCRtpReceiver__rtcp_ssrc")
            if latest is not None and rtcp_ssrc is not None:
                from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

                send_now(self.receiver._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                                                 fci=pack_remb_fci(*latest))))

    def sync(self, state: tuple[Any, ...], attention: list[int] | None, fields: tuple[Any, ...] | None) -> None:
        """C's batch: counters, and the routes that need Python (their packet at hand is `fields`)."""
        self._apply(state)
        if attention is not None:
            packet = None
            consumers = self.consumers
            for index in attention:
                if consumers[index].attend():  # handed back before sending this packet: Python forwards it
                    if packet is None:
                        packet = packet_from_fields(fields)  # type: ignore[arg-type]
                    consumers[index].forward(packet, False)
        if not self.receiver._enabled:
            self.disarm()

    def release(self, state: tuple[Any, ...], fields: tuple[Any, ...], _: Any) -> None:
        """C gave the stream back (already disarmed there) with a packet that is not steady: Python's way."""
        self._apply(state)
        self._stop()
        self.deliver(packet_from_fields(fields))

    def disarm(self) -> None:
        """Take the stream back from C (the producer's routes changed, the receiver stopped)."""
        if self.producer.steady is not self:
            return  # given back already (and the SSRC may be armed again for another owner)
        self._stop()
        state = self.inlet.disarm(self.ssrc)
        if state is not None:
            self._apply(state)


def packet_from_fields(fields: tuple[Any, ...]) -> RtpPacket:
    """An RtpPacket from the native module's fields tuple (unprotect_parse, Inlet)."""
    pt, marker, seq, ts, ssrc, payload, padding, _cc, abs_send_time, audio_level, mid = fields
    packet = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)
    packet.padding_size = padding
    extensions = packet.extensions
    extensions.abs_send_time = abs_send_time
    extensions.audio_level = audio_level
    extensions.mid = mid
    return packet


def ice_connections(pc: RTCPeerConnection) -> list[Any]:
    """The aioice Connection of each of the peer connection's transports (before BUNDLE merges them)."""
    found: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        found.setdefault(id(connection), connection)
    sctp = pc.sctp
    if sctp is not None:
        connection = sctp.transport.transport.iceGatherer._connection
        found.setdefault(id(connection), connection)
    return list(found.values())


def nominated_candidate_types(pc: RTCPeerConnection) -> list[tuple[str, str]]:
    """(local, remote) candidate types of each ICE connection's nominated pair (e.g. ("relay", "host") when this
    peer's media goes through TURN); empty before ICE has nominated."""
    found = []
    for connection in ice_connections(pc):
        pair = connection._nominated.get(1)
        if pair is not None:
            found.append((pair.local_candidate.type, pair.remote_candidate.type))
    return found


def bound_ports(pc: RTCPeerConnection) -> list[tuple[str, int]]:
    """(address, port) of every UDP socket the peer connection's ICE agents hold (host candidates' sockets, and
    TURN clients' sockets if any)."""
    found: list[tuple[str, int]] = []
    for connection in ice_connections(pc):
        for protocol in connection._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None and not transport.is_closing():
                host, port = transport.get_extra_info("sockname")[:2]
                found.append((host, port))
    return found


def restrict_host_addresses(pc: RTCPeerConnection, addresses: Sequence[str] | None,
                            ports: PortRange | None = None) -> None:
    """Make the connection gather host candidates on exactly `addresses` (loopback allowed), or with None on the
    interfaces aioice itself picks; with `ports`, each component binds, on each address, the first free port of
    the range (in the range's rotating order), and a range with no free port fails the gathering with
    `PortsExhausted` (whatever it had bound is closed). Call before setLocalDescription."""
    for connection in ice_connections(pc):
        _patch_gather(connection, None if addresses is None else list(addresses), ports)


def guard_ice(pc: RTCPeerConnection, allows: Callable[[str], bool], take_check: Callable[[], bool],
              max_learned: int) -> None:
    """Bound what aioice sends, whatever reaches it (offer, trickle, mDNS resolution, the peer's own checks):

    - a remote candidate whose address `allows` refuses is dropped before it is paired;
    - a check (a STUN request sent up to 7 times) starts only if `take_check()` grants it; once refused, every
      pair still waiting fails at once, so ICE fails instead of waiting;
    - an incoming check from a refused address is not answered, and at most `max_learned` new peer-reflexive
      addresses are learned from incoming checks (each would become a pair to check).
    Call before setRemoteDescription.
    """
    from aioice.ice import CandidatePair

    pending = (CandidatePair.State.WAITING, CandidatePair.State.FROZEN)
    for connection in ice_connections(pc):
        for name in ("_add_remote_candidate", "check_start_task", "request_received", "check_state",
                     "check_complete", "_check_list", "_remote_candidates"):
            if not hasattr(connection, name):
                raise HookError(f"aioice Connection has no {name!r}: this aioice version is not supported")
        _guard_connection(connection, allows, take_check, max_learned, pending, CandidatePair.State.FAILED)


def _guard_connection(connection: Any, allows: Callable[[str], bool], take_check: Callable[[], bool],
                      max_learned: int, pending: tuple[Any, ...], failed: Any) -> None:
    add_remote = connection._add_remote_candidate
    start_check = connection.check_start_task
    request_received = connection.request_received

    def _add_remote_candidate(remote_candidate: Any, network_host: str) -> None:
        if allows(network_host):
            add_remote(remote_candidate, network_host)

    def check_start_task(pair: Any) -> None:
        if pair.task is not None or take_check():
            start_check(pair)
            return
        for other in list(connection._check_list):
            if other.task is None and other.state in pending:
                connection.check_state(other, failed)
        connection.check_state(pair, failed)
        connection.check_complete(pair)  # may conclude that ICE failed

    def on_request(message: Any, addr: tuple[Any, ...], protocol: Any) -> None:
        host, port = addr[0], addr[1]
        if not allows(host):
            return
        known = any(c._network_host == host and c.port == port for c in connection._remote_candidates)
        if not known and sum(c.type == "prflx" for c in connection._remote_candidates) >= max_learned:
            return
        request_received(message, addr, protocol)

    connection._add_remote_candidate = _add_remote_candidate
    connection.check_start_task = check_start_task
    connection.request_received = on_request


_GATHER_NAMES = ("_local_candidates_start", "_local_candidates", "_local_candidates_end", "_components", "_protocols",
                 "_closing", "_use_ipv4", "_use_ipv6", "_transport_policy", "stun_server", "get_component_candidates")


def _patch_gather(connection: Any, addresses: list[str] | None, ports: PortRange | None) -> None:
    for name in _GATHER_NAMES:
        if not hasattr(connection, name):
            raise HookError(f"aioice Connection has no {name!r}: this aioice version is not supported")

    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        chosen = addresses if addresses is not None else _default_addresses(connection)
        if ports is None:
            coros = [connection.get_component_candidates(component=component, addresses=chosen)
                     for component in connection._components]
        else:
            bound = _bind_in_range(sorted(connection._components), chosen, ports)  # may raise PortsExhausted
            coros = [_component_candidates(connection, component, socks) for component, socks in bound.items()]
        for candidates in await asyncio.gather(*coros):
            connection._local_candidates += candidates
        connection._local_candidates_end = True

    connection.gather_candidates = gather_candidates


def _default_addresses(connection: Any) -> list[str]:
    """What aioice's own gather_candidates would use: every interface but loopback, none for relay-only."""
    from aioice.ice import TransportPolicy, get_host_addresses

    if connection._transport_policy != TransportPolicy.ALL:
        return []
    return list(get_host_addresses(use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6))


def _bind_in_range(components: list[int], addresses: list[str], ports: PortRange) -> dict[int, list[socket.socket]]:
    """Bind one UDP socket per component and address in the range, before anything is awaited (so that no other
    gathering takes the same port in between). All or nothing: on exhaustion, what was bound is closed."""
    bound: dict[int, list[socket.socket]] = {component: [] for component in components}
    try:
        for component in components:
            for address in addresses:
                sock = _bind_first_free(address, ports)
                if sock is not None:
                    bound[component].append(sock)
    except BaseException:
        for socks in bound.values():
            for sock in socks:
                sock.close()
        raise
    return bound


def _bind_first_free(address: str, ports: PortRange) -> socket.socket | None:
    """A socket bound to `address` on the first free port of `ports`; None if the address cannot be bound at all
    (as aioice does: it logs and gathers on the other addresses)."""
    from aioice import turn

    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(address, 0, type=socket.SOCK_DGRAM,
                                                       flags=socket.AI_NUMERICHOST)[0]
    except OSError as exc:
        log.info("could not bind to %s - %s", address, exc)
        return None
    for port in ports.candidates():
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue  # taken (by another leg or another program): try the next port
            log.info("could not bind to %s - %s", address, exc)
            return None
        ports.taken(port)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
        return sock
    raise PortsExhausted(
        f"every UDP port of the relay's media range {ports.low}-{ports.high} ({len(ports)} port(s)) is in use on "
        f"{address}: no new call media can be set up until a call ends; try again shortly, or widen "
        f"media_port_min/media_port_max")


async def _component_candidates(connection: Any, component: int, socks: list[socket.socket]) -> list[Any]:
    """aioice's get_component_candidates for host sockets bound by us: host candidates, server-reflexive ones
    through the same sockets (STUN), and a relayed one (TURN) from aioice itself."""
    from aioice.candidate import Candidate, candidate_foundation, candidate_priority
    from aioice.ice import StunProtocol, server_reflexive_candidate

    loop = asyncio.get_running_loop()
    protocols: list[Any] = []
    try:
        while socks:
            _, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(connection), sock=socks[0])
            socks.pop(0)
            if connection._closing:  # closed while we bound: its close() did not see this socket
                protocol.transport.close()
                return []
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host), component=component, transport="udp",
                priority=candidate_priority(component, "host"), host=host, port=port, type="host")
            connection._protocols.append(protocol)
            protocols.append(protocol)
    finally:
        for sock in socks:
            sock.close()
    candidates = [protocol.local_candidate for protocol in protocols]

    async def reflexive() -> list[Any]:
        if not connection.stun_server:
            return []
        tasks = [asyncio.ensure_future(server_reflexive_candidate(protocol, connection.stun_server))
                 for protocol in protocols if ipaddress.ip_address(protocol.local_candidate.host).version == 4]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=5)
        for task in pending:
            task.cancel()
        return [task.result()[0] for task in done if task.exception() is None]

    # With no addresses, aioice binds no host socket and gathers only the TURN candidate (if a server is set).
    found, relayed = await asyncio.gather(reflexive(), connection.get_component_candidates(component=component,
                                                                                           addresses=[]))
    return candidates + found + relayed


def announce_address(sdp: str, address: str) -> str:
    """Rewrite host candidates (and the c= line) to a public address, for a relay behind 1:1 NAT."""
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:") and " typ host" in line:
            parts = line.split(" ")
            if len(parts) > 5:
                parts[4] = address
                line = " ".join(parts)
        elif line.startswith("c=IN IP4 ") and ":" not in address:
            line = f"c=IN IP4 {address}"
        lines.append(line)
    return "\r\n".join(lines)


def _is_rtp_of(data: bytes, ssrcs: set[int]) -> bool:
    # (S)RTP: version 2, not RTCP (packet types 192-223 in the second byte); the SSRC is in the clear.
    return (len(data) >= 12 and data[0] >> 6 == 2 and not 192 <= data[1] <= 223
            and int.from_bytes(data[8:12], "big") in ssrcs)


def forget_sent(sender: RTCRtpSender) -> None:
    """Empty a sender's retransmission history (a paused viewer's NACKs must not bring its video back)."""
    history = getattr(sender, _private(sender, RTCRtpSender, "rtp_history"))
    history.clear()


def sender_ssrcs(sender: RTCRtpSender) -> set[int]:
    return {s for s in (sender._ssrc, getattr(sender, "_rtx_ssrc", None)) if s}


def _ice_connections(pc: RTCPeerConnection) -> list[Any]:
    seen: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        seen.setdefault(id(connection), connection)
    return list(seen.values())


class SendQueue:
    """The transport of one aioice protocol (one UDP socket of a leg), in front of the event loop's own, so that what
    the kernel refuses waits in a queue of ours, the same on asyncio and on uvloop (whose UDP transport queues in
    libuv, where nothing can be dropped or measured): `sendto` sends at once on the non-blocking socket (a dup of the
    loop's, so that the loop's reading is untouched); when the kernel refuses (EAGAIN, ENOBUFS) or the queue is not
    empty, the datagram is appended to the queue, which the loop's writer callback on the dup flushes in order.
    `drop_queued` takes RTP out of it (a paused viewer's video), `get_write_buffer_size` is its size in bytes.
    Everything else (get_extra_info, reading, the protocol) is the loop's transport's. Installed by `send_queue`."""

    def __init__(self, inner: Any, sock: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self._sock = socket.socket(fileno=os.dup(sock.fileno()))
        self._sock.setblocking(False)
        self._fd = self._sock.fileno()
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._size = 0
        self._writing = False
        self._retry: asyncio.TimerHandle | None = None
        self._closing = False

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._queue:
            if not self._closing:
                self._queue.append((data, addr))
                self._size += len(data)
            return
        if self._closing:
            return
        try:
            self._send(data, addr)
        except (BlockingIOError, InterruptedError):
            self._hold(data, addr)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self._hold(data, addr)
            else:
                self._error(exc)

    def _send(self, data: bytes, addr: Any) -> None:
        if addr is None:  # a connected socket (as asyncio's transport allows)
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)

    def _hold(self, data: bytes, addr: Any) -> None:
        self._queue.append((data, addr))
        self._size += len(data)
        self._start_writing()

    def _start_writing(self) -> None:
        if not self._writing and self._retry is None and not self._closing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)

    def _flush(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self._send(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # Writable, but the device's queue is full: look again shortly instead of spinning on it.
                    self._stop_writing()
                    self._retry = self._loop.call_later(0.005, self._resume)
                    return
                queue.popleft()
                self._size -= len(data)
                self._error(exc)
                continue
            queue.popleft()
            self._size -= len(data)
        self._stop_writing()

    def _resume(self) -> None:
        self._retry = None
        if self._queue:
            self._start_writing()

    def _error(self, exc: OSError) -> None:
        """As asyncio's transport does with a send error (e.g. ICMP port unreachable): the datagram is lost and
        the protocol is told."""
        try:
            self._inner.get_protocol().error_received(exc)
        except Exception:  # noqa: BLE001 - a protocol's error callback must not break the sender
            log.exception("error_received failed")

    def drop_queued(self, ssrcs: set[int]) -> dict[int, int]:
        """Take the RTP packets of these streams out of the queue; per stream, the first sequence number dropped."""
        first: dict[int, int] = {}
        if not self._queue:
            return first
        kept: collections.deque[tuple[bytes, Any]] = collections.deque()
        size = 0
        for item in self._queue:
            data = item[0]
            if _is_rtp_of(data, ssrcs):
                first.setdefault(int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big"))
            else:
                kept.append(item)
                size += len(data)
        self._queue, self._size = kept, size
        if not kept:
            self._stop_writing()
        return first

    def get_write_buffer_size(self) -> int:
        return self._size

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def get_protocol(self) -> Any:
        return self._inner.get_protocol()

    def is_closing(self) -> bool:
        return self._closing or self._inner.is_closing()

    def _shut(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_writing()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._queue.clear()
        self._size = 0
        self._sock.close()

    def close(self) -> None:
        self._shut()
        self._inner.close()

    def abort(self) -> None:
        self._shut()
        self._inner.abort()


def send_queue(protocol: Any) -> Any:
    """The transport of an aioice protocol, with our `SendQueue` put in front of the loop's first (once): a
    `SendQueue`, or the transport as it is where there is no socket to queue for (TURN) or no running loop."""
    transport = protocol.transport
    if transport is None or type(transport) is SendQueue:
        return transport
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return transport
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return transport
    queue = SendQueue(transport, sock, loop)
    protocol.transport = queue
    return queue


class LinkProbe:
    """What one peer connection received, and what waits to be sent to it, without per-packet work.

    - `received()`: datagrams received from the remote so far: SRTP/SRTCP/DTLS (the DTLS transports' own counter)
      plus ICE connectivity/consent checks (counted by wrapping aioice's `request_received`, a few per second).
    - `backlog()`: bytes queued for the remote on the nominated pair's socket: our `SendQueue` plus the
      kernel's send queue (SIOCOUTQ: what sits in the socket and the qdisc, e.g. behind a traffic shaper).
    Create it once the description is applied (the transports exist).
    """

    def __init__(self, pc: RTCPeerConnection) -> None:
        self._dtls = list({id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()}.values())
        for dtls in self._dtls:
            if not hasattr(dtls, "_RTCDtlsTransport__rx_packets"):
                raise HookError("aiortc RTCDtlsTransport has no rx counter: this aiortc version is not supported")
        self._connections = _ice_connections(pc)
        self._checks = 0
        for connection in self._connections:
            if not hasattr(connection, "request_received") or not hasattr(connection, "_nominated"):
                raise HookError("aioice Connection has no request_received: this aioice version is not supported")
            original = connection.request_received

            def counting(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self._checks += 1
                return _original(*args, **kwargs)

            connection.request_received = counting

    def received(self) -> int:
        return self._checks + sum(dtls._RTCDtlsTransport__rx_packets for dtls in self._dtls)  # type: ignore[attr-defined]

    def limit_send_queue(self, size: int) -> None:
        """Make the kernel's send queue of this connection's socket small (SO_SNDBUF; Linux doubles it): what does
        not fit waits in our SendQueue instead, where `drop_queued` can still take it back."""
        for connection in self._connections:
            transport = self._transport(connection)
            sock = transport.get_extra_info("socket") if transport is not None else None
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                except OSError:
                    pass

    def drop_queued(self, ssrcs: set[int]) -> dict[int, int]:
        """Drop the RTP packets of these streams that wait in our send queue (`SendQueue`; the kernel's cannot be
        touched): video that a viewer will not get in time, queued ahead of its audio. Returns, per stream, the
        sequence number of the first packet dropped (everything from it on was dropped: the queue holds the newest
        packets)."""
        first: dict[int, int] = {}
        for connection in self._connections:
            transport = self._transport(connection)
            if type(transport) is SendQueue:
                for ssrc, seq in transport.drop_queued(ssrcs).items():
                    first.setdefault(ssrc, seq)
        return first

    @staticmethod
    def _transport(connection: Any) -> Any:
        """The nominated pair's transport (with our SendQueue in front), or None."""
        pair = connection._nominated.get(1)
        protocol = getattr(pair, "protocol", None)
        return send_queue(protocol) if protocol is not None else None

    def backlog(self) -> int:
        total = 0
        for connection in self._connections:
            transport = self._transport(connection)
            if transport is None or transport.is_closing():
                continue
            total += transport.get_write_buffer_size()
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # == SIOCOUTQ
                    total += struct.unpack("i", queued)[0]
                except OSError:
                    pass
        return total
