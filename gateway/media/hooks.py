"""The only module that touches aiortc/aioice internals. Tested against aiortc 1.16 (see pyproject.toml).

Three hooks make aiortc forward instead of transcode:
- `tap_receiver`: the receiver keeps doing SRTP, RTCP receiver reports, NACKs and RTX unwrapping, but its jitter
  buffer is replaced by one of our assemblers and its decoder thread gets no work (no decoder is ever created).
- `on_keyframe_request`: a PLI/FIR that reaches one of our senders calls us instead of flagging an encoder.
- `request_keyframe`: send a PLI from a receiver to the remote sender.
The sender side needs no hook: a track that yields `av.Packet` is packetized by aiortc without encoding.
Plus `restrict_host_addresses`, because aioice gathers on every interface but loopback and has no setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from ..errors import GatewayError


class HookError(GatewayError):
    code = "media_hook_error"


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


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, RTCRtpCodecParameters]:
    """Payload type -> codec, as negotiated (filled when the receiver starts)."""
    return getattr(receiver, _private(receiver, RTCRtpReceiver, "codecs"))


def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> "asyncio.Task[None]":
    """Send a Picture Loss Indication for `media_ssrc` to the remote sender."""
    return asyncio.ensure_future(receiver._send_rtcp_pli(media_ssrc))


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the remote asks this sender for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def restrict_host_addresses(pc: RTCPeerConnection, addresses: Sequence[str]) -> None:
    """Make the connection gather host candidates on exactly `addresses` (loopback allowed)."""
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        connection = dtls.transport.iceGatherer._connection
        if id(connection) in seen:
            continue
        seen.add(id(connection))
        _patch_gather(connection, list(addresses))
    sctp = pc.sctp
    if sctp is not None:
        connection = sctp.transport.transport.iceGatherer._connection
        if id(connection) not in seen:
            _patch_gather(connection, list(addresses))


def _patch_gather(connection: Any, addresses: list[str]) -> None:
    for name in ("_local_candidates_start", "_local_candidates", "_local_candidates_end", "_components"):
        if not hasattr(connection, name):
            raise HookError(f"aioice Connection has no {name!r}: this aioice version is not supported")

    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        coros = [
            connection.get_component_candidates(component=component, addresses=addresses)
            for component in connection._components
        ]
        for candidates in await asyncio.gather(*coros):
            connection._local_candidates += candidates
        connection._local_candidates_end = True

    connection.gather_candidates = gather_candidates


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
