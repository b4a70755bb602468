"""Every aiortc/aioice internal that gateway/media/aiortc_internals.py relies on exists in the installed versions.

An upgrade that renames or drops one fails here, naming it and the installed versions, instead of failing calls.
The same names are listed in the module's docstring; the last test keeps the two lists together.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver

from gateway.media import aiortc_internals

INSTALLED = f"installed: aiortc {version('aiortc')}, aioice {version('aioice')}"

MODULE_NAMES: list[tuple[str, str]] = [
    ("aiortc.clock", "current_ntp_time"),
    ("aiortc.codecs.h264", "h264_depayload"),
    ("aiortc.codecs.vpx", "vp8_depayload"),
    *[("aiortc.rtp", name) for name in ("RTP_HISTORY_SIZE", "RtpPacket", "RTCP_PSFB_APP", "RtcpPsfbPacket",
                                        "pack_remb_fci", "unwrap_rtx")],
    ("aiortc.sdp", "SessionDescription"),
    ("aiortc.sdp", "candidate_from_sdp"),
    ("aiortc.utils", "uint16_add"),
    ("aiortc.utils", "uint16_gt"),
    ("aiortc.rtcrtpreceiver", "StreamStatistics"),
    ("aiortc.rtp", "HeaderExtensions"),
    ("aiortc.rtcdtlstransport", "State"),
    ("pylibsrtp._binding", "ffi"),
    ("pylibsrtp._binding", "lib"),
    *[("aioice.ice", name) for name in ("CandidatePair", "TransportPolicy", "get_host_addresses", "StunProtocol",
                                        "server_reflexive_candidate")],
    ("aioice.candidate", "Candidate"),
    ("aioice.candidate", "candidate_foundation"),
    ("aioice.candidate", "candidate_priority"),
    ("aioice.turn", "UDP_SOCKET_BUFFER_SIZE"),
]

# Attributes of the objects of a freshly created peer connection with one video transceiver (before negotiation).
OBJECT_NAMES: list[tuple[str, str]] = [
    *[("RTCRtpReceiver", f"_RTCRtpReceiver__{name}") for name in (
        "started", "jitter_buffer", "decoder_queue", "codecs", "remote_streams", "rtx_ssrc", "nack_generator",
        "remote_bitrate_estimator", "rtcp_ssrc")],
    *[("RTCRtpReceiver", name) for name in ("_enabled", "_handle_rtp_packet", "_send_rtcp", "_send_rtcp_nack",
                                            "_send_rtcp_pli")],
    *[("RTCRtpSender", f"_RTCRtpSender__{name}") for name in (
        "started", "mid", "rtp_header_extensions_map", "rtp_history", "ntp_timestamp", "rtp_timestamp", "octet_count",
        "packet_count")],
    *[("RTCRtpSender", name) for name in ("_ssrc", "_rtx_ssrc", "_send_keyframe")],
    ("RTCRtpTransceiver", "_codecs"),
    ("RTCDtlsTransport", "_RTCDtlsTransport__rx_packets"),
    ("RTCDtlsTransport", "_send_rtp"),
    *[("RTCDtlsTransport", name) for name in (
        "_rx_srtp", "_tx_srtp", "_state", "_rtp_router", "_rtp_header_extensions_map", "_RTCDtlsTransport__rx_bytes",
        "_RTCDtlsTransport__tx_packets", "_RTCDtlsTransport__tx_bytes")],
    ("HeaderExtensionsMap", "_HeaderExtensionsMap__ids"),
    ("RtpRouter", "route_rtp"),
    ("Session", "_srtp"),
    ("RTCIceTransport", "_connection"),
    ("RTCIceGatherer", "_connection"),
    *[("Connection", name) for name in (
        "_add_remote_candidate", "check_start_task", "request_received", "check_state", "check_complete",
        "_check_list", "_remote_candidates", "_local_candidates_start", "_local_candidates", "_local_candidates_end",
        "_components", "_protocols", "_closing", "_nominated", "_use_ipv4", "_use_ipv6", "_transport_policy",
        "stun_server", "gather_candidates", "get_component_candidates")],
    *[("RtpPacket", name) for name in ("padding_size", "extensions", "serialize")],
    *[("RtpPacket.extensions", name) for name in ("abs_send_time", "mid", "audio_level")],
    ("Candidate", "_network_host"),
    ("CandidatePair", "task"),
    ("CandidatePair", "state"),
    ("StunProtocol", "transport"),
    ("StunProtocol", "local_candidate"),
    ("StunProtocol", "datagram_received"),
]


def _missing(owner: str, name: str) -> str:
    return (f"{owner} has no {name!r} ({INSTALLED}): gateway/media/aiortc_internals.py relies on it; adapt that "
            f"module to this version or install the pinned one (pyproject.toml)")


@pytest.mark.parametrize(("module", "name"), MODULE_NAMES, ids=[f"{m}.{n}" for m, n in MODULE_NAMES])
def test_module_names_exist(module: str, name: str) -> None:
    try:
        imported = importlib.import_module(module)
    except ImportError:
        pytest.fail(_missing("the installed packages", module))
    assert hasattr(imported, name), _missing(module, name)


@pytest.fixture
async def objects() -> AsyncIterator[dict[str, Any]]:
    from aioice.candidate import Candidate
    from aioice.ice import CandidatePair, StunProtocol
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video")
    dtls = transceiver.sender.transport
    ice = dtls.transport
    connection = ice.iceGatherer._connection
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(connection),
                                                              local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    protocol.local_candidate = Candidate(foundation="1", component=1, transport="udp", priority=1, host=host,
                                         port=port, type="host")
    remote = Candidate(foundation="2", component=1, transport="udp", priority=1, host="127.0.0.1", port=9,
                       type="host")
    packet = RtpPacket()
    from pylibsrtp import Policy, Session

    session = Session(Policy(key=bytes(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    try:
        yield {
            "RTCRtpReceiver": transceiver.receiver, "RTCRtpSender": transceiver.sender,
            "RTCRtpTransceiver": transceiver, "RTCDtlsTransport": dtls, "RTCIceTransport": ice,
            "RTCIceGatherer": ice.iceGatherer, "Connection": connection, "RtpPacket": packet,
            "RtpPacket.extensions": packet.extensions, "Candidate": remote,
            "CandidatePair": CandidatePair(protocol, remote), "StunProtocol": protocol, "DatagramTransport": transport,
            "HeaderExtensionsMap": dtls._rtp_header_extensions_map, "RtpRouter": dtls._rtp_router, "Session": session,
        }
    finally:
        transport.close()
        await pc.close()


@pytest.mark.parametrize(("owner", "name"), OBJECT_NAMES, ids=[f"{o}.{n}" for o, n in OBJECT_NAMES])
async def test_object_names_exist(objects: dict[str, Any], owner: str, name: str) -> None:
    assert hasattr(objects[owner], name), _missing(owner, name)


def test_enum_members_exist() -> None:
    from aioice.ice import CandidatePair, TransportPolicy

    for member in ("WAITING", "FROZEN", "FAILED"):
        assert hasattr(CandidatePair.State, member), _missing("aioice CandidatePair.State", member)
    assert hasattr(TransportPolicy, "ALL"), _missing("aioice TransportPolicy", "ALL")


def test_receiver_sets_the_depayloaded_data() -> None:
    """`depayloaded(packet)` reads `packet._data`, which aiortc's receiver sets before its jitter buffer."""
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "packet._data =" in source and "self.__jitter_buffer.add(packet)" in source, \
        _missing("RTCRtpReceiver._handle_rtp_packet", "packet._data = ... before the jitter buffer")


def test_docstring_lists_every_relied_on_name() -> None:
    doc = aiortc_internals.__doc__ or ""
    for module, name in MODULE_NAMES:
        assert name in doc and module in doc, f"{module}.{name} is missing from aiortc_internals' docstring"
    for owner, name in OBJECT_NAMES:
        short = (name.replace("_RTCRtpReceiver", "").replace("_RTCRtpSender", "").replace("_RTCDtlsTransport", "")
                 .replace("_HeaderExtensionsMap", ""))
        assert short in doc, f"{owner}.{name} is missing from aiortc_internals' docstring"
    assert "aiortc 1.16.0 and aioice 0.13.0" in doc


def test_installed_versions_are_the_pinned_ones() -> None:
    assert version("aiortc").startswith("1.16.") and version("aioice").startswith("0.13."), INSTALLED
