"""Codec facts the relay needs without decoding: frame starts and keyframes, read from the bitstream."""

from __future__ import annotations

VP8 = "VP8"
H264 = "H264"
OPUS = "opus"

CLOCK_RATES = {VP8: 90000, H264: 90000, OPUS: 48000}


def is_frame_start(codec: str, payload: bytes) -> bool:
    """Whether this RTP payload starts a new encoded frame."""
    if not payload:
        return False
    if codec == VP8:
        # VP8 payload descriptor (RFC 7741): S bit set and partition index 0.
        return bool(payload[0] & 0x10) and (payload[0] & 0x07) == 0
    if codec == H264:
        nal_type = payload[0] & 0x1F
        if nal_type == 28:  # FU-A: start bit
            return len(payload) > 1 and bool(payload[1] & 0x80)
        return 1 <= nal_type <= 24
    return True


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a whole depayloaded frame can be decoded on its own."""
    if codec == VP8:
        # VP8 frame tag (RFC 6386 9.1): bit 0 is 0 for a key frame.
        return bool(data) and (data[0] & 0x01) == 0
    if codec == H264:
        # aiortc depayloads H264 to Annex B: look for an IDR slice or an SPS.
        for nal in data.split(b"\x00\x00\x01")[1:]:
            if nal and (nal[0] & 0x1F) in (5, 7):
                return True
        return False
    return True


def _vp8_descriptor_length(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 4.2), or 0 if the payload is too short."""
    if not payload:
        return 0
    length = 1
    if payload[0] & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            return 0
        ext = payload[1]
        length = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= length:
                return 0
            length += 2 if payload[length] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            length += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            length += 1
    return length if length < len(payload) else 0


def vp8_frame_data(payload: bytes) -> bytes:
    """A VP8 RTP payload without its payload descriptor: this packet's part of the encoded frame."""
    offset = _vp8_descriptor_length(payload)
    return payload[offset:] if offset else b""


def is_keyframe_start(codec: str, payload: bytes) -> bool:
    """Whether this RTP payload is the first packet of a keyframe (packet-level forwarding starts there)."""
    if codec == VP8:
        if not is_frame_start(VP8, payload):
            return False
        offset = _vp8_descriptor_length(payload)
        return offset > 0 and (payload[offset] & 0x01) == 0
    if codec == H264:
        if not payload:
            return False
        nal_type = payload[0] & 0x1F
        if nal_type in (5, 7):
            return True
        if nal_type == 24:  # STAP-A: look at the aggregated NAL units
            pos = 1
            while pos + 2 < len(payload):
                size = int.from_bytes(payload[pos : pos + 2], "big")
                if (payload[pos + 2] & 0x1F) in (5, 7):
                    return True
                pos += 2 + size
            return False
        if nal_type == 28 and len(payload) > 1:  # FU-A start of an IDR slice
            return bool(payload[1] & 0x80) and (payload[1] & 0x1F) == 5
        return False
    return True
