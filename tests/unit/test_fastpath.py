"""The native fast path against the real thing: pylibsrtp sessions (aiortc's SRTP), aiortc's RTP parser and
serializer, and a real UDP socket pair on loopback. Skipped where the module is not built (no C compiler)."""

from __future__ import annotations

import os
import struct
import time
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


# The native Inlet: a connected leg's datagram_received, taking armed (steady) streams in C.

class FakeDtls:
    """What the Inlet reads of aiortc's DTLS transport: the receive session and the state."""

    def __init__(self, session: Session) -> None:
        self._rx_srtp = session
        self._state = internals._DTLS_CONNECTED


class Owner:
    """Python's side of an armed stream (aiortc_internals._SteadyStream in the relay): notes what C hands over."""

    def __init__(self) -> None:
        self.states: list[tuple] = []
        self.synced: list[tuple] = []
        self.released: list[tuple] = []

    def sync(self, state, attention, fields) -> None:
        self.states.append(state)
        self.synced.append((attention, fields))

    def release(self, state, fields, _) -> None:
        self.states.append(state)
        self.released.append(fields)


class Inlet:
    def __init__(self, rx: Session) -> None:
        self.original: list[bytes] = []
        self.slow: list[bytes] = []
        self.dtls = FakeDtls(rx)
        native = internals.NativeSrtp(native_module)
        self.inlet = native_module.Inlet(native.unprotect, self.dtls, internals._DTLS_CONNECTED,
                                         lambda data, addr: self.original.append(data),
                                         lambda data, addr: self.slow.append(data), MID, ABS, AUDIO)

    def arm(self, ssrc: int, owner: Owner, routes: tuple, *, pt: int = 111, video: bool = False, codec: int = 0,
            clock_rate: int = 48000, estimator: bool = False, max_seq: int = 0, last_ts: int = 0,
            gop: list | None = None, taps: list | None = None) -> bool:
        return self.inlet.arm(ssrc, owner, self.dtls._rx_srtp, internals.srtp_context(self.dtls._rx_srtp), pt,
                              video, codec, clock_rate, estimator, max_seq, 0, int(time.time() * clock_rate),
                              last_ts, routes, gop, [] if taps is None else taps, MID, ABS, AUDIO)


def inlet_and_route(a: socket.socket, b: socket.socket) -> tuple[Session, Inlet, object, Session, Session]:
    """A leg's native Inlet with the session its sender protects with, and a route out from socket a to socket b
    with its sending session and the session the receiving end unprotects with. The caller keeps the route's
    sending session referenced while the route lives: the route's SRTP context points into it."""
    tx_in, rx_in = sessions()
    tx_out, rx_out = sessions()
    return tx_in, Inlet(rx_in), connected_route(a, b, tx_out), tx_out, rx_out


def rtp(seq: int, ts: int, ssrc: int = 42, pt: int = 111, payload: bytes | None = None, marker: int = 0,
        level: tuple | None = (False, 30), abs_send_time: int | None = None) -> RtpPacket:
    packet = RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                       payload=os.urandom(160) if payload is None else payload)
    packet.extensions.mid = "0"
    packet.extensions.audio_level = level
    packet.extensions.abs_send_time = abs_send_time
    return packet


def totals(states: list[tuple]) -> dict[str, int]:
    return {"taken": sum(s[0] for s in states), "packets": sum(s[2] for s in states),
            "frames": sum(s[3] for s in states), "cycles": sum(s[5] for s in states)}


@built
def test_inlet_forwards_steady_packets_and_counts_them_as_aiortc_would(udp):
    """In-order packets of an armed stream are unprotected with the receiver's session, fanned out to the armed
    routes (the receiving end authenticates and reads them: rewritten as the route says) and counted as aiortc's
    StreamStatistics counts them, across the sequence number wrap; the counters reach Python in batches."""
    from aiortc.rtcrtpreceiver import StreamStatistics

    a, b = udp
    tx_in, inlet, route, tx_out, rx_out = inlet_and_route(a, b)
    route.arm(42, 10, 0, 0, 0, -1, 0)
    owner = Owner()
    first = 65500
    expected = StreamStatistics(48000)
    expected.add(rtp(first - 1, 0))  # Python handled the packet before the stream was armed
    assert inlet.arm(42, owner, (route,), max_seq=first - 1, last_ts=0)
    assert inlet.inlet.armed() == [42]
    sent = [rtp((first + i) & 0xFFFF, 960 * (i + 1), marker=i % 5 == 0) for i in range(80)]
    wire = 0
    for packet in sent:
        expected.add(packet)
        data = tx_in.protect(packet.serialize(ext_map()))
        wire += len(data)
        inlet.inlet(data, ("127.0.0.1", 5000))
    assert inlet.original == [] and inlet.slow == []
    received = recv_packets(b, rx_out, len(sent))
    for packet, original in zip(received, sent):
        assert (packet.ssrc, packet.payload_type) == (0xCAFE, 100)
        assert packet.sequence_number == (original.sequence_number + 10) & 0xFFFF
        assert packet.payload == original.payload and packet.extensions.audio_level == (False, 30)
    assert nothing_waiting(b)
    # Batches: every 32 packets (or 100 ms), and the rest when Python takes the stream back.
    # (The route asks for its own sync each time: the Owner here never takes its counters.)
    assert len(owner.synced) >= 2 and all(attention in (None, [0]) for attention, _ in owner.synced)
    assert route.attend == 1
    owner.states.append(inlet.inlet.disarm(42))
    assert inlet.inlet.armed() == [] and inlet.inlet.disarm(42) is None
    assert totals(owner.states) == {"taken": 80, "packets": 80, "frames": 80, "cycles": 1 << 16}
    last = owner.states[-1]
    assert (last[4], last[8]) == (expected.max_seq, expected._last_timestamp)
    assert expected.cycles == sum(s[5] for s in owner.states)
    assert last[6] >= 0  # jitter (q4): from arrival times, as aiortc computes it
    assert sum(s[1] for s in owner.states) == wire  # the DTLS transport's received bytes


@built
def test_inlet_gives_back_what_is_not_steady(udp):
    """Python gets, as fields (the same as unprotect_parse's), the first packet after a gap (the NACK generator must
    see it), another payload type, a keyframe start, and any packet while a tap hangs on the producer; the stream is
    disarmed each time. Other streams and SRTP with a bad tag go where they went before, RTCP/STUN to aioice."""
    a, b = udp
    tx_in, inlet, route, tx_out, _ = inlet_and_route(a, b)
    route.arm(42, 0, 0, 0, 0, -1, 0)

    def feed(packet: RtpPacket, fresh: bool = False) -> None:
        nonlocal tx_in, inlet
        if fresh:  # new sessions: the same sequence number again would be a replay
            tx_in, rx_in = sessions()
            inlet = Inlet(rx_in)
        inlet.inlet(tx_in.protect(packet.serialize(ext_map())), ("127.0.0.1", 5000))

    for name, packet, kwargs in [
        ("gap", rtp(12, 960), {}),
        ("payload type", rtp(11, 960, pt=0), {}),
        ("tap", rtp(11, 960), {"taps": [object()]}),
        ("VP8 keyframe", rtp(11, 3000, pt=96, payload=bytes([0x10, 0x00]) + os.urandom(50), level=None),
         {"pt": 96, "video": True, "codec": 1, "clock_rate": 90000}),
    ]:
        owner = Owner()
        feed(rtp(1, 0, ssrc=7), fresh=True)  # (another stream: to Python)
        assert inlet.arm(42, owner, (route,), max_seq=10, **kwargs)
        feed(packet)
        assert len(owner.released) == 1, name
        fields = owner.released[0]
        parsed = RtpPacket.parse(packet.serialize(ext_map()), ext_map())
        assert internals.packet_from_fields(fields).payload == parsed.payload, name
        assert fields[:5] == (parsed.payload_type, parsed.marker, parsed.sequence_number, parsed.timestamp, 42), name
        assert fields[9:] == (parsed.extensions.audio_level, parsed.extensions.mid), name
        assert inlet.inlet.armed() == [], name
        assert owner.states[0][0] == 1 and owner.states[0][2] == 0, name  # taken, not counted as received in C
    assert nothing_waiting(b)
    # A VP8 packet that starts no keyframe is steady.
    owner = Owner()
    feed(rtp(1, 0, ssrc=7), fresh=True)
    gop: list = [("keyframe",)]
    assert inlet.arm(42, owner, (route,), pt=96, video=True, codec=1, clock_rate=90000, estimator=True, max_seq=10,
                     gop=gop)
    feed(rtp(11, 3000, pt=96, payload=bytes([0x10, 0x01]) + os.urandom(50), level=None, abs_send_time=0x1234))
    assert owner.released == [] and b.recv(2048)
    assert len(gop) == 2 and internals.packet_from_fields(gop[1]).sequence_number == 11  # Producer.gop: as tuples
    # Another stream, a bad authentication tag, RTCP and STUN.
    feed(rtp(12, 3000, ssrc=43))
    assert len(inlet.slow) == 2
    forged = bytearray(tx_in.protect(rtp(12, 3000, pt=96, level=None).serialize(ext_map())))
    forged[-1] ^= 1
    inlet.inlet(bytes(forged), ("127.0.0.1", 5000))
    state = inlet.inlet.disarm(42)
    assert state[0] == 2 and state[2] == 1 and owner.released == []  # both taken; 11 counted, the forged one dropped
    [(arrival_ms, abs_send_time, size)] = struct.iter_unpack("<qII", state[9])  # one input for the REMB estimator
    assert abs(arrival_ms - internals.ms_now()) < 5000 and (abs_send_time, size) == (0x1234, 52)
    assert nothing_waiting(b)
    inlet.inlet(bytes([0x80, 200]) + bytes(30), ("127.0.0.1", 5000))
    inlet.inlet(bytes([0, 1]) + bytes(30), ("127.0.0.1", 5000))
    assert len(inlet.original) == 2 and len(inlet.slow) == 2
    with pytest.raises(ValueError):
        inlet.arm(42, Owner(), (route,), video=True, codec=0)  # a video codec whose keyframes C cannot tell


@built
def test_inlet_hands_routes_that_need_python_over_with_the_packet(udp):
    """A route that needs Python (here: its source changed under it) is named in the sync, with the packet's
    fields, so Python forwards that packet itself."""
    a, b = udp
    tx_in, inlet, route, tx_out, _ = inlet_and_route(a, b)
    route.arm(41, 0, 0, 0, 0, -1, 0)  # armed for another source
    owner = Owner()
    assert inlet.arm(42, owner, (route,), max_seq=10)
    inlet.inlet(tx_in.protect(rtp(11, 960).serialize(ext_map())), ("127.0.0.1", 5000))
    assert len(owner.synced) == 1
    attention, fields = owner.synced[0]
    assert attention == [0] and route.attend == 3 and fields[2] == 11
    assert nothing_waiting(b)


@built
@pytest.mark.parametrize("codec, kind", [("VP8", 1), ("H264", 2)])
def test_inlet_tells_keyframe_starts_as_the_python_path_does(udp, codec, kind):
    """C's keyframe test (a keyframe start goes back to Python) agrees with codecs.is_keyframe_start on crafted and
    random payloads."""
    import random

    from gateway.media.codecs import is_keyframe_start

    a, b = udp
    tx_in, inlet, route, tx_out, _ = inlet_and_route(a, b)
    rng = random.Random(11)
    crafted = [b"", b"\x10", b"\x10\x00", b"\x10\x01", b"\x90\x80\x81\x02\x00", b"\x90\xe0\x01\x02\x03\x00",
               b"\x11\x00", b"\x65\x88", b"\x67\x42", b"\x41\x9a", b"\x7c\x85", b"\x7c\x05", b"\x7c\x81",
               b"\x18\x00\x02\x67\x42\x00\x02\x68\xce", b"\x18\x00\x02\x41\x9a", b"\x18\xff\xff\x65"]
    payloads = crafted + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    decided = []
    for seq, payload in enumerate(payloads, start=1):
        owner = Owner()
        route.arm(42, 0, 0, 0, 0, -1, 0)
        assert inlet.arm(42, owner, (route,), pt=96, video=True, codec=kind, clock_rate=90000, max_seq=seq - 1)
        inlet.inlet(tx_in.protect(rtp(seq, 3000 * seq, pt=96, payload=payload, level=None).serialize(ext_map())),
                    ("127.0.0.1", 5000))
        inlet.inlet.disarm(42)
        decided.append(bool(owner.released))
    expected = [is_keyframe_start(codec, p) for p in payloads]
    assert decided == expected
    assert 5 < sum(expected) < len(payloads) - 5  # both answers were exercised


@built
def test_inlet_quiet_hands_over_only_streams_with_counts_waiting_longer_than_asked(udp):
    """`Inlet.quiet(ns)` (the shared flush tick's call): a stream that counted packets and then had none for `ns`
    gives its counters (to its owner, staying armed); a stream with a packet more recently, or with nothing counted
    since its last hand-over, gives nothing, so a tick over flowing or silent streams makes no Python object."""
    a, b = udp
    tx_in, inlet, route, tx_out, _ = inlet_and_route(a, b)
    route.arm(42, 0, 0, 0, 0, -1, 0)
    owner = Owner()
    assert inlet.arm(42, owner, (route,), max_seq=10)
    assert inlet.inlet.quiet(0) == []  # armed, nothing counted yet
    for seq in range(11, 16):
        inlet.inlet(tx_in.protect(rtp(seq, 960 * seq).serialize(ext_map())), ("127.0.0.1", 5000))
    assert owner.states == []  # 5 packets within 100 ms: C keeps them for its next batch
    assert inlet.inlet.quiet(3600 * 10**9) == []  # counted, but its last packet came less than an hour ago
    handed = inlet.inlet.quiet(0)
    assert len(handed) == 1 and handed[0][0] is owner
    state = handed[0][1]
    assert (state[0], state[2], state[4]) == (5, 5, 15)  # taken, packets, highest sequence number
    assert inlet.inlet.quiet(0) == []  # taken: nothing waits any more
    assert inlet.inlet.armed() == [42]  # and the stream stays armed
    inlet.inlet(tx_in.protect(rtp(16, 960 * 16).serialize(ext_map())), ("127.0.0.1", 5000))
    rest = inlet.inlet.disarm(42)
    assert (rest[0], rest[4]) == (1, 16)
    assert inlet.inlet.quiet(0) == []


class QuietOwner(Owner):
    def __init__(self) -> None:
        super().__init__()
        self.quiet_states: list[tuple] = []

    def quiet(self, state) -> None:
        self.quiet_states.append(state)


@built
async def test_one_flush_tick_per_loop_brings_in_what_quiet_streams_counted(udp):
    """aiortc_internals._QuietFlush: one tick for every Inlet with armed streams (instead of a timer per stream);
    counters of a stream that went quiet reach its owner within a few ticks, every packet counted once, and the
    tick stops when no stream is armed any more."""
    import asyncio

    from tests.support.waiting import until

    a, b = udp
    flusher = internals._QuietFlush.of_loop()
    assert internals._QuietFlush.of_loop() is flusher
    inlets, owners = [], []
    for ssrc in (42, 43):  # two legs' Inlets, one armed stream each
        tx_in, inlet, route, tx_out, _ = inlet_and_route(a, b)
        route.arm(ssrc, 0, 0, 0, 0, -1, 0)
        owner = QuietOwner()
        assert inlet.arm(ssrc, owner, (route,), max_seq=10)
        flusher.add(inlet.inlet)
        for seq in range(11, 14):
            inlet.inlet(tx_in.protect(rtp(seq, 960 * seq, ssrc=ssrc).serialize(ext_map())), ("127.0.0.1", 5000))
        inlets.append(inlet)
        owners.append(owner)
    await until(lambda: all(o.quiet_states for o in owners), 5)
    await asyncio.sleep(3 * internals._QuietFlush.FLUSH_S)  # later ticks hand nothing over twice
    for owner in owners:
        assert owner.states == [] and totals(owner.quiet_states)["taken"] == 3
    ticks = flusher.ticks
    assert ticks >= 1
    for inlet in inlets:
        flusher.remove(inlet.inlet)
    assert flusher.inlets == {} and flusher._timer is None
    await asyncio.sleep(2 * internals._QuietFlush.FLUSH_S)
    assert flusher.ticks == ticks  # no tick without armed streams
