"""A Leg is one peer connection between the gateway and one participant (caller, agent)."""

from __future__ import annotations

import asyncio
import ipaddress
import contextlib
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from pyee.asyncio import AsyncIOEventEmitter

from ..config import Settings
from ..errors import ClosedError, InvalidState, MediaError
from . import aiortc_internals as internals
from .aiortc_internals import SessionDescription, candidate_from_sdp, negotiated_codecs
from .assembler import AudioAssembler, VideoAssembler
from .candidates import CandidateGate, CandidatePolicy, CheckBudget, networks
from . import fastpath
from .codecs import OPUS
from .forward import ForwardTrack, Producer
from .health import Liveness, MediaWatchdog, WatchdogConfig
from .packets import IdleTrack, PacketTap, RtpForwarder
from .ports import PortRange
from ..transcript.engine import EngineName, TranscriptConfig
from .transcode import SwitchTrack
from .viewer import KeyframeBudget, ViewerConfig, ViewerGuard

log = logging.getLogger(__name__)

MAX_SECTIONS = {"audio": 3, "video": 2}
DTLS_FINGERPRINTS = frozenset({"sha-256", "sha-384", "sha-512"})  # what aiortc can verify
_SENDS = {"sendrecv", "sendonly"}
_RECEIVES = {"sendrecv", "recvonly"}


class LegRole(StrEnum):
    CALLER = "caller"
    AGENT = "agent"


@dataclass(frozen=True)
class MediaConfig:
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    host_addresses: list[str] = field(default_factory=list)
    announced_address: str | None = None
    # UDP ports the host candidates bind in (None: the OS picks); one object per process, it rotates its start.
    ports: PortRange | None = None
    video_codecs: list[str] = field(default_factory=lambda: ["VP8", "H264"])
    video_queue_frames: int = 30
    audio_queue_frames: int = 10
    keyframe_request_interval_s: float = 0.3
    max_sdp_bytes: int = 32 * 1024
    relay_mode: str = "packet"
    lean_receive: bool = True
    fast_path: str = "auto"  # packet mode: native / python / off (fastpath.FastPath), auto: native if built
    candidates: CandidatePolicy = field(default_factory=CandidatePolicy)
    connect_timeout_s: float = 30.0
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    transcript: TranscriptConfig = field(default_factory=TranscriptConfig)

    @classmethod
    def from_settings(cls, settings: Settings) -> "MediaConfig":
        return cls(
            ice_servers=[s.model_dump(exclude_none=True) for s in settings.ice_servers],
            host_addresses=list(settings.media_host_addresses),
            announced_address=settings.media_announced_address,
            ports=PortRange(settings.media_port_min, settings.media_port_max) if settings.media_port_max else None,
            video_codecs=list(settings.video_codecs),
            video_queue_frames=settings.video_queue_frames,
            audio_queue_frames=settings.audio_queue_frames,
            keyframe_request_interval_s=settings.keyframe_request_interval_s,
            max_sdp_bytes=settings.max_sdp_bytes,
            relay_mode=settings.relay_mode,
            lean_receive=settings.relay_lean_receive,
            fast_path=fastpath.resolve(settings.relay_fast_path).value if settings.relay_mode == "packet" else "off",
            candidates=CandidatePolicy(
                max_candidates=settings.media_max_remote_candidates,
                max_checks=settings.media_max_ice_checks,
                allow=networks(settings.media_remote_allow),
                deny=networks(settings.media_remote_deny),
                # A relay that gathers on loopback (demo, tests) has loopback peers; any other must never be
                # steered at the services listening on its own host.
                allow_loopback=any(ipaddress.ip_address(a).is_loopback for a in settings.media_host_addresses),
            ),
            connect_timeout_s=settings.media_connect_timeout_s,
            watchdog=WatchdogConfig(silence_s=settings.media_silence_s, grace_s=settings.media_failure_grace_s),
            viewer=ViewerConfig(keyframe_interval_s=settings.viewer_keyframe_interval_s,
                                max_backlog_bytes=settings.viewer_max_backlog_bytes,
                                resume_after_s=settings.viewer_resume_after_s),
            transcript=TranscriptConfig(
                engine=EngineName(settings.transcript_engine), workers=settings.transcript_workers,
                decoders=settings.transcript_decoders,
                grammar=str(settings.transcript_grammar) if settings.transcript_grammar else None,
                http_url=settings.transcript_http_url, http_timeout_s=settings.transcript_http_timeout_s,
                http_token=(settings.transcript_http_token.get_secret_value()
                            if settings.transcript_http_token else None),
                endpoint_silence_s=settings.transcript_endpoint_silence_s,
                partial_interval_s=settings.transcript_partial_interval_s,
                max_utterance_s=settings.transcript_max_utterance_s),
        )


def _preferences(kind: str, names: list[str]) -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for name in names for c in capabilities if c.name.lower() == name.lower()]
    rtx = [c for c in capabilities if c.name == "rtx"]
    return chosen + rtx if kind == "video" else chosen


class Leg(AsyncIOEventEmitter):
    """One RTCPeerConnection. Incoming tracks become Producers, outgoing tracks are ForwardTracks.

    Events: "state" (connection state string); "media" ("disconnected" when nothing arrived from the participant
    for the watchdog's silence, "connected" when it arrives again); "video" (paused: bool, reason: str) when the
    video sent to this participant is paused because it cannot keep up, or resumed; "failed" (reason: str), once,
    for any end of the leg that the gateway did not start: "ice_failed" / "dtls_failed" (connection state failed),
    "closed_by_remote" (the remote closed DTLS, or ICE consent expired), "media_timeout" (silent for the watchdog's
    silence plus grace); "closed".
    """

    def __init__(self, leg_id: str, role: LegRole, config: MediaConfig) -> None:
        super().__init__()
        self.id = leg_id
        self.role = role
        self._config = config
        ice = [RTCIceServer(**server) for server in config.ice_servers]  # never aiortc's public STUN default
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        # Streams by slot: "audio" and "video" for the first section of each kind, "audio:1", "audio:2", "video:1"
        # for further ones (e.g. a console's second audio section for a whispering supervisor or a consult).
        self.producers: dict[str, Producer] = {}
        # Outgoing streams: ForwardTrack (frame mode) or RtpForwarder (packet mode), created once negotiated.
        self.consumers: dict[str, Any] = {}
        self._outgoing: dict[str, MediaStreamTrack] = {}
        self._slots: dict[RTCRtpTransceiver, str] = {}
        self.packet_mode = config.relay_mode == "packet"
        self._fast = fastpath.for_leg(config.fast_path) if self.packet_mode else None  # None: aiortc's own path
        self.direct: internals.DirectReceive | None = None  # installed when connected (fast path)
        # "transcode": aiortc's stock path (decode, MediaRelay, encode). A baseline for the benchmark, and a way
        # out when two legs cannot agree on a codec. The receivers decode, so nothing is tapped.
        self.transcode = config.relay_mode == "transcode"
        self.remote_tracks: dict[str, MediaStreamTrack] = {}
        self.connected = asyncio.Event()
        self.closed = False
        self._answered = False
        self.candidates = CandidateGate(config.candidates)
        self.checks = CheckBudget(config.candidates.max_checks)
        self._connect_timer: asyncio.TimerHandle | None = None
        self._end_pending = False
        self.connect_timed_out = False
        self._close_task: asyncio.Task[None] | None = None
        self.failure: str | None = None  # why the leg ended without the gateway ending it
        self.hushed = False  # being replaced by a new offer of the participant: its events are held back
        self._monitor: asyncio.Task[None] | None = None
        self._probe: internals.LinkProbe | None = None
        self.watchdog = MediaWatchdog(config.watchdog, self._on_liveness)
        self.viewer = ViewerGuard(config.viewer, lambda: self.consumers.values(), self._on_viewer)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def state(self) -> str:
        return self.pc.connectionState

    @property
    def video_codec(self) -> str | None:
        producer = self.producers.get("video")
        if producer is not None:
            return producer.codec
        for transceiver in self.pc.getTransceivers():
            codecs = negotiated_codecs(transceiver)
            if transceiver.kind == "video" and codecs:
                return codecs[0].name
        return None

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("leg %s (%s) connection %s", self.id, self.role, state)
        if state == "connected":
            self.connected.set()
            self._stop_connect_timer()
            if self._monitor is None and not self.closed:
                self._monitor = asyncio.ensure_future(self._watch())
            if self._fast is not None and not self.closed:
                self._receive_directly()
        if not self.hushed:
            self.emit("state", state)
        if state in ("failed", "closed") and not self.closed:
            # Nobody here closed it: the participant's side went away (no hang-up), a failure of the call's media.
            self._fail(self._failure_cause() if state == "failed" else "closed_by_remote")

    def _receive_directly(self) -> None:
        fast, self._fast = self._fast, None  # once per leg
        try:
            self.direct = internals.DirectReceive(self.pc, fast.native, self._producer_of)
        except internals.HookError as exc:
            log.error("leg %s: packets take aiortc's path: %s", self.id, exc)

    def _producer_of(self, receiver: RTCRtpReceiver) -> Producer | None:
        """The producer fed by one of this leg's receivers (the native Inlet takes its steady packets)."""
        for transceiver, slot in self._slots.items():
            if transceiver.receiver is receiver:
                return self.producers.get(slot)
        return None

    def _failure_cause(self) -> str:
        for transceiver in self.pc.getTransceivers():
            if transceiver.sender.transport.state == "failed":
                return "dtls_failed"
        return "ice_failed"

    def _fail(self, reason: str) -> None:
        if self.failure is not None or self.closed:
            return
        self.failure = reason
        log.info("leg %s (%s) failed: %s", self.id, self.role, reason)
        if not self.hushed:
            self.emit("failed", reason)

    def hush(self) -> None:
        """The participant sent a new offer that will replace this leg: hold its events back (its failure must
        not end the call while the new leg is negotiated)."""
        self.hushed = True

    def unhush(self) -> None:
        """The new offer was refused: this leg is the participant's again, and a failure meanwhile is told now."""
        self.hushed = False
        if self.failure is not None and not self.closed:
            self.emit("failed", self.failure)

    async def _watch(self) -> None:
        """Every few hundred ms: did anything arrive from the participant, and does its send backlog grow?"""
        try:
            probe = internals.LinkProbe(self.pc)
        except internals.HookError as exc:
            log.error("leg %s: no media watchdog: %s", self.id, exc)
            return
        self._probe = probe
        if self.packet_mode and any(getattr(c, "kind", None) == "video" for c in self.consumers.values()):
            # Keep the kernel's send queue to a viewer short (a few dozen packets): on a slow link, what waits
            # beyond it stays in our send queue (SendQueue), where a paused viewer's video can still be dropped.
            probe.limit_send_queue(self._config.viewer.max_backlog_bytes // 4)
        interval = self._config.watchdog.check_interval_s
        while not self.closed:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if self.watchdog.check(probe.received(), now) is Liveness.DEAD:
                return
            if not self.transcode:
                self.viewer.check(probe.backlog(), now)

    def _on_liveness(self, state: Liveness) -> None:
        if state is Liveness.DEAD:
            self._fail("media_timeout")
        elif not self.closed and not self.hushed:
            self.emit("media", state.value)

    def _on_viewer(self, paused: bool, reason: str) -> None:
        log.info("leg %s (%s) video %s (%s)", self.id, self.role, "paused" if paused else "resumed", reason)
        if paused and self._probe is not None and self.packet_mode:
            # What is queued of the video would arrive late and hold the audio up: drop it, do not resend it, and
            # number the next packets on from the last one really sent (the viewer must not wait for the dropped).
            forwarders = [c for c in self.consumers.values() if isinstance(c, RtpForwarder) and c.kind == "video"]
            ssrcs: set[int] = set()
            for transceiver in self.pc.getTransceivers():
                if transceiver.kind == "video" and self._slots.get(transceiver) in self.consumers:
                    ssrcs |= internals.sender_ssrcs(transceiver.sender)
                    internals.forget_sent(transceiver.sender)
            dropped = self._probe.drop_queued(ssrcs)
            for forwarder in forwarders:
                if forwarder.ssrc in dropped:
                    forwarder.rewind(dropped[forwarder.ssrc])
        if not self.closed and not self.hushed:
            self.emit("video", paused, reason)

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"leg {self.id} is closed")

    async def answer(self, offer_sdp: str, *, video_codec: str | None = None) -> str:
        """Apply the participant's offer and return the gateway's answer.

        `video_codec` forces one codec (an agent leg must use the caller's codec: nothing is transcoded).
        """
        self._check_open()
        if self._answered:
            raise InvalidState("this leg has already been negotiated; renegotiation is not supported", code="renegotiation")
        if len(offer_sdp.encode()) > self._config.max_sdp_bytes:
            raise MediaError(f"SDP larger than {self._config.max_sdp_bytes} bytes", code="sdp_too_large")
        try:
            parsed = SessionDescription.parse(offer_sdp)
        except Exception as exc:  # aiortc's parser raises assorted errors on junk
            raise MediaError(f"malformed SDP: {exc}", code="bad_sdp") from None
        kinds = [m.kind for m in parsed.media]
        if not kinds:
            raise MediaError("the offer has no media", code="bad_sdp")
        for kind, most in MAX_SECTIONS.items():
            if kinds.count(kind) > most:
                raise MediaError(f"at most {most} {kind} section(s) are supported", code="bad_sdp")
        unsupported = [k for k in kinds if k not in ("audio", "video")]
        if unsupported:
            raise MediaError(f"unsupported media section(s): {', '.join(unsupported)}", code="bad_sdp")
        if any(m.dtls is None or m.ice is None for m in parsed.media):
            raise MediaError("the offer lacks ICE or DTLS parameters", code="bad_sdp")
        for media in parsed.media:
            if not any(f.algorithm.lower() in DTLS_FINGERPRINTS for f in media.dtls.fingerprints):
                raise MediaError(f"each media section needs an a=fingerprint with one of "
                                 f"{', '.join(sorted(DTLS_FINGERPRINTS))}", code="bad_sdp")
        offer = self.candidates.filter_offer(offer_sdp)
        if offer.refused:
            log.info("leg %s: %d offered ICE candidate(s) left out: %s", self.id, len(offer.refused),
                     "; ".join(offer.refused[:5]))

        self._answered = True
        self.candidates.record_offer(offer)
        try:
            seen: dict[str, int] = {}
            for media in parsed.media:
                n = seen[media.kind] = seen.get(media.kind, -1) + 1
                slot = media.kind if n == 0 else f"{media.kind}:{n}"
                self._prepare_transceiver(media.kind, slot, media.direction or "sendrecv", video_codec)
            if self._config.host_addresses or self._config.ports is not None:
                internals.restrict_host_addresses(self.pc, self._config.host_addresses or None, self._config.ports)
            policy = self._config.candidates
            internals.guard_ice(self.pc, self.candidates.allows, self.checks.take, max_learned=policy.max_candidates)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            if offer.accepted:
                await self._add_offer_candidates(offer.sdp)
            for transceiver in self.pc.getTransceivers():
                self._check_codec(transceiver, video_codec)
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except MediaError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise MediaError(f"the offer could not be negotiated: {exc}", code="negotiation_failed") from None
        for transceiver in self.pc.getTransceivers():
            self._bind(transceiver)
        sdp = self.pc.localDescription.sdp
        if self._config.announced_address:
            sdp = internals.announce_address(sdp, self._config.announced_address)
        if not self.connected.is_set() and not self.closed:
            self._connect_timer = asyncio.get_running_loop().call_later(
                self._config.connect_timeout_s, self._connect_timed_out)
        return sdp

    async def _add_offer_candidates(self, sdp: str) -> None:
        """Hand the offer's own candidates to the leg's ICE transport. aiortc files a description's candidates by ICE
        transport, one media section after the other, and same-kind sections share a transport before bundling: the
        later section's empty list wins over the first one's candidates (a caller's and a console's offers have a
        second audio section). A browser that gathered before it offered (a caller widget that prepared its peer
        connection ahead) would then be known only from its own checks, and its end-of-candidates would fail the leg
        at once. aioice ignores a candidate it already has."""
        transports = {t.mid: t.receiver.transport.transport for t in self.pc.getTransceivers() if t.mid is not None}
        sections: list[tuple[list[str], list[str]]] = []  # per media section: its candidate lines, its mid
        for line in sdp.splitlines():  # the lines alone: parsing the whole offer again costs milliseconds
            if line.startswith("m="):
                sections.append(([], []))
            elif sections and line.startswith("a=candidate:"):
                sections[-1][0].append(line[len("a=candidate:"):])
            elif sections and line.startswith("a=mid:"):
                sections[-1][1].append(line[len("a=mid:"):].strip())
        for lines, mid in sections:
            transport = transports.get(mid[0]) if mid else None
            for line in lines if transport is not None else ():
                try:
                    await transport.addRemoteCandidate(candidate_from_sdp(line))
                except ValueError:  # the offer also said end-of-candidates, and aiortc applied that first
                    return

    def _connect_timed_out(self) -> None:
        """Not connected (ICE and DTLS) in time after the answer: a half-open leg fails like a broken one."""
        self._connect_timer = None
        if self.closed or self.connected.is_set():
            return
        log.warning("leg %s (%s) did not connect within %.0f s (state %s)", self.id, self.role,
                    self._config.connect_timeout_s, self.state)
        self.connect_timed_out = True
        self._fail("connect_timeout")

    def _stop_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _prepare_transceiver(self, kind: str, slot: str, remote_direction: str, video_codec: str | None) -> None:
        remote_sends = remote_direction in _SENDS
        remote_receives = remote_direction in _RECEIVES
        direction = {
            (True, True): "sendrecv",
            (True, False): "recvonly",
            (False, True): "sendonly",
            (False, False): "inactive",
        }[(remote_sends, remote_receives)]
        track: MediaStreamTrack | None = None
        if remote_receives:
            if self.transcode:
                track = SwitchTrack(kind)
                self.consumers[slot] = track
            elif self.packet_mode:
                track = IdleTrack(kind)
            else:
                max_frames = self._config.video_queue_frames if kind == "video" else self._config.audio_queue_frames
                track = ForwardTrack(kind, max_frames)
                self.consumers[slot] = track
            self._outgoing[slot] = track
        transceiver = self.pc.addTransceiver(track if track is not None else kind, direction=direction)
        self._slots[transceiver] = slot
        names = [OPUS] if kind == "audio" else ([video_codec] if video_codec else self._config.video_codecs)
        transceiver.setCodecPreferences(_preferences(kind, names))
        if remote_sends and not self.transcode:
            self._tap(transceiver, slot)

    def _check_codec(self, transceiver: RTCRtpTransceiver, video_codec: str | None) -> None:
        if transceiver.kind == "video" and video_codec and negotiated_codecs(transceiver)[0].name != video_codec:
            raise MediaError(f"the offer does not support {video_codec}, the codec of this call", code="codec_mismatch")

    def _tap(self, transceiver: RTCRtpTransceiver, slot: str) -> None:
        receiver: RTCRtpReceiver = transceiver.receiver
        kind = transceiver.kind
        last_ssrc: list[int] = [0]
        wanted: list[bool] = [False]  # a keyframe was asked for before the first packet named the stream

        def send_pli() -> None:
            if last_ssrc[0]:
                internals.request_keyframe(receiver, last_ssrc[0])
            else:
                wanted[0] = True

        def first_packet(ssrc: int) -> None:
            # A new leg (e.g. one that replaced the participant's leg after a network change) whose viewers wait for
            # a picture: the request made when it was attached is sent now that the stream is known.
            last_ssrc[0] = ssrc
            if wanted[0]:
                wanted[0] = False
                internals.request_keyframe(receiver, ssrc)

        def codec_name(payload_type: int) -> str | None:
            codec = internals.receiver_codecs(receiver).get(payload_type)
            return codec.name if codec is not None else None

        def sink(data: bytes, timestamp: int, ssrc: int, discontinuity: bool) -> None:
            if last_ssrc[0] != ssrc:
                first_packet(ssrc)
            producer = self.producers.get(slot)
            if producer is not None:
                producer.on_frame(data, timestamp, discontinuity)

        self.producers[slot] = Producer(
            kind=kind,
            codec="",  # known once negotiated, see _bind
            send_keyframe_request=send_pli,
            min_request_interval=self._config.keyframe_request_interval_s,
        )
        def packet_sink(packet: Any) -> None:
            if last_ssrc[0] != packet.ssrc:
                first_packet(packet.ssrc)
            self.producers[slot].on_packet(packet)

        assembler: Any
        if self.packet_mode:
            assembler = PacketTap(packet_sink)
        elif kind == "video":
            assembler = VideoAssembler(codec_name, sink)
        else:
            assembler = AudioAssembler(sink)
        internals.tap_receiver(receiver, assembler)
        if self.packet_mode and self._config.lean_receive:
            internals.lean_receive(receiver, packet_sink)

    def _bind(self, transceiver: RTCRtpTransceiver) -> None:
        kind = transceiver.kind
        slot = self._slots[transceiver]
        codecs = negotiated_codecs(transceiver)
        codec = codecs[0] if codecs else None
        producer = self.producers.get(slot)
        if producer is not None and codec is not None:
            producer.codec = codec.name
        if self.transcode:
            if transceiver.receiver.track is not None and transceiver.direction in _RECEIVES:
                self.remote_tracks[slot] = transceiver.receiver.track
            return
        if slot not in self._outgoing or codec is None:
            return
        if self.packet_mode:
            self.consumers[slot] = RtpForwarder(kind, transceiver.sender, codec.payloadType)
            if self._fast is not None and self._fast.native is not None:
                self.consumers[slot].use_native(self._fast.native)
        consumer = self.consumers[slot]
        consumer.set_codec(codec.name)
        if kind == "video":
            consumer.budget = KeyframeBudget(self._config.viewer.keyframe_interval_s, self._config.viewer.keyframe_burst)
        internals.on_keyframe_request(transceiver.sender, consumer.request_keyframe)

    async def add_ice_candidate(self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """Add a trickled remote candidate (a=candidate line without 'a='), or None for end-of-candidates."""
        self._check_open()
        if not self._answered:
            raise InvalidState("send the offer before ICE candidates", code="no_offer")
        if not candidate:
            if self.candidates.accepted == 0:
                # End-of-candidates before any candidate would make aioice fail the leg at once, though the
                # client's connectivity checks may be on their way (e.g. it gathered nothing but is reachable as a
                # peer-reflexive candidate). Keep it until a candidate arrives.
                self._end_pending = True
                return
            await self.pc.addIceCandidate(None)
            return
        checked = self.candidates.check(candidate)  # bad_candidate, candidate_refused, too_many_candidates
        self._check_section(sdp_mid, sdp_mline_index)
        if checked is None:
            return  # not UDP: the relay does ICE over UDP only
        line = candidate[len("candidate:") :] if candidate.startswith("candidate:") else candidate
        try:
            parsed = candidate_from_sdp(line)
        except Exception as exc:
            raise MediaError(f"malformed ICE candidate: {exc}", code="bad_candidate") from None
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        if sdp_mid is None and sdp_mline_index is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)
        self.candidates.record(checked)
        if self._end_pending:
            self._end_pending = False
            await self.pc.addIceCandidate(None)

    def _check_section(self, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A trickled candidate names a media section of this leg's offer (by mid, else by index)."""
        mids = [t.mid for t in self.pc.getTransceivers()]
        if sdp_mid is not None and sdp_mid not in mids:
            shown = ", ".join(f'"{m}"' for m in mids if m is not None) or "none"
            raise MediaError(f'the offer has no media section with mid "{sdp_mid}" (its mids: {shown})',
                             code="bad_candidate")
        if sdp_mid is None and sdp_mline_index is not None and sdp_mline_index >= len(mids):
            raise MediaError(f"the offer has {len(mids)} media sections; sdp_mline_index {sdp_mline_index} names "
                             "none of them", code="bad_candidate")

    async def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "producers": {k: {"codec": p.codec, "frames": p.frames, "keyframes": p.keyframes,
                              "keyframe_requests_sent": p.keyframe_requests_sent} for k, p in self.producers.items()},
            "consumers": {k: _slots(c.stats) for k, c in self.consumers.items() if hasattr(c, "stats")},
            "media": self.watchdog.state.value,
            "video_paused": self.viewer.reason.value if self.viewer.paused and self.viewer.reason else None,
            "keyframe_budget": {k: {"sent": c.budget.sent, "deferred": c.budget.deferred}
                                for k, c in self.consumers.items() if getattr(c, "budget", None) is not None},
        }

    async def close(self) -> None:
        """Close once; later calls wait for the same close."""
        if self._close_task is None:
            self.closed = True
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        self._stop_connect_timer()
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for producer in self.producers.values():
            producer.close()
        for consumer in self.consumers.values():
            consumer.stop()
        for track in self._outgoing.values():
            track.stop()
        try:
            await self.pc.close()
        finally:
            self.emit("closed")
            self.remove_all_listeners()


def _slots(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}
