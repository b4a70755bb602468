"""Sequence/timestamp rewriting and keyframe resume of the packet forwarder (logic only; real peers in integration)."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from gateway.media.codecs import is_keyframe_start
from gateway.media.packets import RtpForwarder


class FakePort:
    def __init__(self) -> None:
        self.ready = True
        self.ssrc = 1234
        self.sent: list[RtpPacket] = []
        self.backlog_bytes = 0

    def backlog(self) -> int:
        return self.backlog_bytes

    def send(self, packet: RtpPacket) -> None:
        self.sent.append(packet)


def forwarder(kind: str = "video") -> tuple[RtpForwarder, FakePort, list[int]]:
    requests: list[int] = []
    port = FakePort()
    fwd = RtpForwarder(kind, _StubSender(), 100)  # type: ignore[arg-type]
    fwd._port = port  # a fake port instead of the aiortc sender
    fwd._on_keyframe_needed = lambda: requests.append(1)
    return fwd, port, requests


class _StubSender:
    """Just enough of an aiortc sender for SenderPort's attribute checks."""

    _ssrc = 1234
    _RTCRtpSender__started = True
    _RTCRtpSender__mid = "1"
    _RTCRtpSender__rtp_header_extensions_map = None
    _RTCRtpSender__rtp_history: dict = {}
    _RTCRtpSender__ntp_timestamp = 0
    _RTCRtpSender__rtp_timestamp = 0
    _RTCRtpSender__octet_count = 0
    _RTCRtpSender__packet_count = 0


def pkt(seq: int, ts: int, payload: bytes, ssrc: int = 7, marker: int = 1) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=ssrc, marker=marker)
    packet.payload = payload
    return packet


KEY = b"\x90\x80\x12\x00\x9d\x01\x2a"  # descriptor X=1,S=1; I=1, 7-bit picture id; VP8 header P=0 (key)
DELTA = b"\x90\x80\x13\x01\x00"  # same descriptor, P=1 (interframe)


def test_vp8_keyframe_start_parsing():
    assert is_keyframe_start("VP8", KEY)
    assert not is_keyframe_start("VP8", DELTA)
    assert not is_keyframe_start("VP8", b"\x80\x80\x12\x00")  # not a frame start (S=0)
    assert is_keyframe_start("VP8", b"\x10\x00") and not is_keyframe_start("VP8", b"\x10\x01")
    assert is_keyframe_start("H264", bytes([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]))  # STAP-A with SPS
    assert is_keyframe_start("H264", bytes([0x7C, 0x85])) and not is_keyframe_start("H264", bytes([0x7C, 0x81]))


def test_waits_for_keyframe_then_rewrites_contiguously():
    fwd, port, _ = forwarder()
    fwd.forward(pkt(500, 9000, DELTA), False)
    assert port.sent == []
    fwd.forward(pkt(501, 12000, KEY), True)
    fwd.forward(pkt(502, 15000, DELTA), False)
    fwd.forward(pkt(503, 18000, DELTA), False)
    seqs = [p.sequence_number for p in port.sent]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
    assert all(p.ssrc == 1234 and p.payload_type == 100 for p in port.sent)
    deltas = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(port.sent, port.sent[1:])]
    assert deltas == [3000, 3000]


def test_skipped_range_leaves_no_gap_and_late_packets_are_dropped():
    fwd, port, requests = forwarder()
    fwd.forward(pkt(10, 0, KEY), True)
    fwd.forward(pkt(11, 3000, DELTA), False)
    port.backlog_bytes = 10**9  # the agent's socket is backed up: drop and wait for a keyframe
    fwd.forward(pkt(12, 6000, DELTA), False)
    assert fwd.needs_keyframe and requests == [1]
    port.backlog_bytes = 0
    fwd.forward(pkt(13, 9000, DELTA), False)
    fwd.forward(pkt(14, 12000, KEY), True)
    fwd.forward(pkt(12, 6000, DELTA), False)  # a late retransmission from the skipped range
    fwd.forward(pkt(15, 15000, DELTA), False)
    seqs = [p.sequence_number for p in port.sent]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(4)], seqs  # contiguous: nothing to NACK
    assert [bytes(p.payload) for p in port.sent] == [KEY, DELTA, KEY, DELTA]


def test_sequence_wraps_and_reordering_passes_through():
    fwd, port, _ = forwarder("audio")
    for seq in (65534, 65535, 1, 0, 2):
        fwd.forward(pkt(seq, seq * 960, b"op"), True)
    out = [p.sequence_number for p in port.sent]
    base = out[0]
    assert [(s - base) & 0xFFFF for s in out] == [0, 1, 3, 2, 4]


def test_new_source_continues_timestamps():
    fwd, port, _ = forwarder("audio")
    fwd.forward(pkt(1, 1000, b"a", ssrc=1), True)
    fwd.forward(pkt(2, 1960, b"a", ssrc=1), True)
    fwd.forward(pkt(900, 555_555, b"b", ssrc=2), True)  # e.g. the caller's stream restarted
    ts = [p.timestamp for p in port.sent]
    seqs = [p.sequence_number for p in port.sent]
    assert (seqs[2] - seqs[1]) & 0xFFFF == 1
    assert 0 < (ts[2] - ts[1]) & 0xFFFFFFFF < 48000  # continues near the previous timestamp


def test_not_ready_drops_and_asks_for_keyframe_when_up():
    fwd, port, requests = forwarder()
    port.ready = False
    fwd.forward(pkt(1, 0, KEY), True)
    assert port.sent == []
    port.ready = True
    fwd.forward(pkt(2, 3000, DELTA), False)
    assert requests == [1] and port.sent == []
    fwd.forward(pkt(3, 6000, KEY), True)
    assert len(port.sent) == 1


def test_leg_coming_up_starts_from_the_cached_keyframe():
    from gateway.media.forward import Producer

    requests: list[int] = []
    producer = Producer(kind="video", codec="VP8", send_keyframe_request=lambda: requests.append(1))
    fwd, port, _ = forwarder()
    port.ready = False
    producer.attach(fwd)
    producer.on_packet(pkt(1, 0, KEY))
    producer.on_packet(pkt(2, 3000, DELTA))
    assert port.sent == []
    port.ready = True
    producer.on_packet(pkt(3, 6000, DELTA))
    assert [bytes(p.payload) for p in port.sent] == [KEY, DELTA, DELTA]
    seqs = [p.sequence_number for p in port.sent]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
    assert len(requests) == 1  # only the one at attach: the cache answered the rest
    producer.close()


def test_paused_viewer_rewound_to_the_last_packet_really_sent_resumes_without_a_gap():
    fwd, port, requests = forwarder()
    fwd.forward(pkt(100, 9000, KEY), True)
    for i in range(1, 6):
        fwd.forward(pkt(100 + i, 9000 + i * 3000, DELTA), False)
    sent = [p.sequence_number for p in port.sent]
    assert sent == [(sent[0] + i) & 0xFFFF for i in range(6)]
    fwd.pause()
    fwd.rewind(sent[3])  # the last three were taken back from the send buffer before they left
    fwd.resume()
    fwd.forward(pkt(200, 99000, DELTA), False)  # waits for a keyframe (and asks for one)
    assert len(port.sent) == 6 and requests
    fwd.forward(pkt(201, 102000, KEY), True)
    assert port.sent[-1].sequence_number == sent[3]  # numbered on from sent[2]: the viewer sees no gap
