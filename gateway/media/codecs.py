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
