"""The native fast path against the real thing: pylibsrtp sessions (aiortc's SRTP), aiortc's RTP parser and
serializer, and a real UDP socket pair on loopback. Skipped where the module is not built (no C compiler)."""

from __future__ import annotations

import os
import socket

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from pylibsrtp import Policy, Session

from gateway.media import aiortc_internals as internals
from gateway.media import fastpath

native_module = fastpath.native_module()
built = pytest.mark.skipif(native_module is None, reason="gateway.media._fastpath is not built")

MID, ABS, AUDIO = 4, 2, 1


def ext_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=MID, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=ABS, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        RTCRtpHeaderExtensionParameters(id=AUDIO, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level")]))
    return m


def sessions() -> tuple[Session, Session]:
    key = os.urandom(30)
    return (Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND)),
            Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND)))


@pytest.fixture
def udp():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


@built
def test_sent_natively_is_what_aiortc_would_send(udp):
    """protect_send builds the packet aiortc's serializer would (fields and extensions), protected with the sender's
    libsrtp session: the receiver's pylibsrtp session authenticates it and aiortc's parser reads it back."""
    a, b = udp
    tx, rx = sessions()
    native = internals.NativeSrtp(native_module)
    payload = os.urandom(1000)
    host, port = b.getsockname()
    sent = native_module.protect_send(native.protect, internals.srtp_context(tx), a.fileno(), host, port, 96, 1,
                                      65535, 0xFFFFFFF0, 0xDEADBEEF, payload, 7, MID, b"1", ABS, 0x123456, AUDIO,
                                      0x80 | 42)
    data = b.recv(2048)
    assert sent == len(data)
    packet = RtpPacket.parse(rx.unprotect(data), ext_map())
    assert (packet.payload_type, packet.marker, packet.sequence_number, packet.timestamp, packet.ssrc) == \
        (96, 1, 65535, 0xFFFFFFF0, 0xDEADBEEF)
    assert packet.payload == payload and packet.padding_size == 7
    assert packet.extensions.mid == "1" and packet.extensions.abs_send_time == 0x123456
    assert packet.extensions.audio_level == (True, 42)


@built
def test_received_natively_reads_what_aiortc_sent():
    """unprotect_parse authenticates and decrypts with the receiver's session and reads what aiortc serialized."""
    tx, rx = sessions()
    native = internals.NativeSrtp(native_module)
    packet = RtpPacket(payload_type=111, marker=0, sequence_number=7, timestamp=960, ssrc=42, payload=b"opus" * 20)
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 99
    packet.extensions.audio_level = (False, 30)
    data = tx.protect(packet.serialize(ext_map()))
    fields = native_module.unprotect_parse(native.unprotect, internals.srtp_context(rx), data, MID, ABS, AUDIO)
    assert fields == (111, 0, 7, 960, 42, b"opus" * 20, 0, 0, 99, (False, 30), "0")
    # The same datagram again is a replay, a changed byte fails authentication: both refused with libsrtp's code.
    assert isinstance(native_module.unprotect_parse(native.unprotect, internals.srtp_context(rx), data, MID, ABS,
                                                    AUDIO), int)
    forged = tx.protect(RtpPacket(payload_type=111, sequence_number=8, ssrc=42, payload=b"x" * 40).serialize(ext_map()))
    forged = forged[:20] + bytes([forged[20] ^ 1]) + forged[21:]
    assert isinstance(native_module.unprotect_parse(native.unprotect, internals.srtp_context(rx), forged, MID, ABS,
                                                    AUDIO), int)
    # Junk is refused, never a crash.
    for junk in (b"", b"\x80" * 11, b"\x80\x60" + os.urandom(40), os.urandom(3000)):
        assert isinstance(native_module.unprotect_parse(native.unprotect, internals.srtp_context(rx), junk, MID,
                                                        ABS, AUDIO), int)


def test_resolve_says_which_path_runs(caplog, monkeypatch):
    caplog.set_level("INFO", logger="gateway.media.fastpath")
    if native_module is not None:
        assert fastpath.resolve("auto") is fastpath.FastPath.NATIVE
    assert fastpath.resolve("off") is fastpath.FastPath.OFF
    monkeypatch.setattr(fastpath, "native_module", lambda: None)
    assert fastpath.resolve("auto") is fastpath.FastPath.PYTHON
    assert "not built" in caplog.text
    with pytest.raises(fastpath.FastPathUnavailable):
        fastpath.resolve("native")


def recv_packets(sock: socket.socket, rx: Session, count: int) -> list[RtpPacket]:
    return [RtpPacket.parse(rx.unprotect(sock.recv(2048)), ext_map()) for _ in range(count)]


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(2048)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
        sock.settimeout(5)
    return False


def connected_route(a: socket.socket, b: socket.socket, tx: Session) -> object:
    route = native_module.Route(internals.NativeSrtp(native_module).protect)
    host, port = b.getsockname()
    route.connect(internals.srtp_context(tx), a.fileno(), host, port, 0xCAFE, 100, MID, b"1", ABS, AUDIO)
    return route


@built
def test_route_rewrites_across_sequence_and_timestamp_wraparound(udp):
    """An armed route forwards each source packet in one fanout call: rewritten (its SSRC and payload type, sequence
    numbers and timestamps shifted, wrapping at 2^16 and 2^32 on both sides), protected with the sender's session
    (the receiver's pylibsrtp authenticates it: the rollover counter follows the wrap), kept for NACKs."""
    a, b = udp
    tx, rx = sessions()
    route = connected_route(a, b, tx)
    seq_offset, ts_offset = 3, 0x800
    route.arm(42, seq_offset, ts_offset, 65530, 0, -1, 0)
    assert route.armed
    source = [((65528 + i) & 0xFFFF, (0xFFFFF000 + 960 * i) & 0xFFFFFFFF, os.urandom(100 + i)) for i in range(20)]
    for i, (seq, ts, payload) in enumerate(source):
        attention = native_module.fanout((route,), 42, seq, ts, i % 2, payload, 0, 0x80 | 30 if i % 3 else -1)
        assert attention is None or (attention == [0] and route.attend == 1 and route.armed)  # counters to sync
    packets = recv_packets(b, rx, len(source))
    for i, (packet, (seq, ts, payload)) in enumerate(zip(packets, source)):
        assert (packet.ssrc, packet.payload_type, packet.marker) == (0xCAFE, 100, i % 2)
        assert packet.sequence_number == (seq + seq_offset) & 0xFFFF
        assert packet.timestamp == (ts + ts_offset) & 0xFFFFFFFF
        assert packet.payload == payload and packet.extensions.mid == "1"
        assert packet.extensions.audio_level == ((True, 30) if i % 3 else None)
    assert [p.sequence_number for p in packets[3:10]] == [65534, 65535, 0, 1, 2, 3, 4]  # the source wraps at 8
    # The NACK history has the newest 128 packets by sequence number, as aiortc's sender keeps them.
    marker, seq, ts, payload, padding, level, abs_send_time = route.history(packets[5].sequence_number % 128)
    assert (marker, seq, ts, payload, level) == (1, packets[5].sequence_number, packets[5].timestamp, source[5][2],
                                                 0x80 | 30)
    assert abs_send_time == packets[5].extensions.abs_send_time
    route.forget(packets[5].sequence_number % 128)
    assert route.history(packets[5].sequence_number % 128) is None
    # Counters for aiortc's sender reports, then the state handed back to Python: the newest sequence number sent.
    sent, payload_bytes, wire_bytes, ntp, rtp_ts = route.take_counters()
    assert sent <= len(source) and (sent == len(source) or sent < 32)
    last_seq, last_ts, age, resume, _ = route.disarm()
    assert (last_seq, last_ts, resume) == (packets[-1].sequence_number, packets[-1].timestamp, -1)
    assert age is not None and 0 <= age < 60 and not route.armed
    assert native_module.fanout((route,), 42, 12, 0, 0, b"x", 0, -1) is None and nothing_waiting(b)


@built
def test_route_hands_a_new_source_back_and_drops_packets_from_before_the_resume_point(udp):
    a, b = udp
    tx, rx = sessions()
    route = connected_route(a, b, tx)
    route.arm(42, 100, 0, 0, 0, 500, 0)  # resumed at the keyframe that began with source packet 500
    assert native_module.fanout((route,), 42, 499, 0, 0, b"late", 0, -1) is None  # before the resume point
    assert native_module.fanout((route,), 42, 501, 0, 0, b"next", 0, -1) is None
    assert [p.sequence_number for p in recv_packets(b, rx, 1)] == [601] and nothing_waiting(b)
    # Another source stream (the caller's leg was replaced): nothing sent, the route disarmed, Python told why.
    assert native_module.fanout((route,), 43, 7, 0, 0, b"new", 0, -1) == [0]
    assert route.attend == 3 and not route.armed and nothing_waiting(b)
    last_seq, _, _, resume, since = route.disarm()
    assert (last_seq, resume, since) == (601, 500, 1)
    with pytest.raises(TypeError):
        native_module.fanout((object(),), 42, 1, 0, 0, b"x", 0, -1)


@built
def test_route_sends_on_its_own_socket_duplicate_until_closed(udp):
    """The route never writes to a bare descriptor number: it keeps its own duplicate, so asyncio closing the socket
    (and the number being reused) cannot redirect it; close() ends it for good."""
    a, b = udp
    tx, rx = sessions()
    route = connected_route(a, b, tx)
    a.close()
    reused = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # likely takes the closed number
    try:
        route.arm(42, 0, 0, 0, 0, -1, 0)
        native_module.fanout((route,), 42, 1, 0, 0, b"still", 0, -1)
        assert [p.payload for p in recv_packets(b, rx, 1)] == [b"still"]
        route.close()
        assert not route.armed and route.history(1) is None
        assert native_module.fanout((route,), 42, 2, 0, 0, b"gone", 0, -1) is None and nothing_waiting(b)
        with pytest.raises(RuntimeError):
            route.arm(42, 0, 0, 0, 0, -1, 0)  # closed: connect() first
    finally:
        reused.close()
