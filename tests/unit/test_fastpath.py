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
