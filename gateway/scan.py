"""What a picture sent by a caller carries, read on the server (issue 18, item 18): the QR codes and barcodes in it
(zxing-cpp) and, when the photo has one, where it was taken (its EXIF GPS position). The agent sees both with the
file, so the caller does not have to type a meter number, an account or a parcel code.

Everything here comes from the caller: it is shown to agents as text, never as HTML, and the position is marked as
read from the photo (not the device's consented location). Decoding is bounded: pictures above `MAX_PIXELS` are
not decoded (a decompression bomb is refused before any pixel is read), at most `MAX_CODES` codes of at most
`MAX_TEXT` characters are kept, and it runs in a worker thread with a deadline.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any

import structlog

log = structlog.get_logger("callin.scan")

MAX_PIXELS = 40_000_000
MAX_CODES = 10
MAX_TEXT = 2000
DEADLINE_S = 5.0
IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
GPS_IFD = 0x8825


def _degrees(value: Any, ref: Any, positive: str) -> float | None:
    try:
        d, m, s = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    result = d + m / 60 + s / 3600
    if isinstance(ref, bytes):
        ref = ref.decode(errors="replace")
    return result if str(ref).strip().upper() == positive else -result


def photo_location(image: Any) -> dict[str, float] | None:
    """The EXIF GPS position of a Pillow image, or None (no GPS, or values out of range)."""
    try:
        gps = image.getexif().get_ifd(GPS_IFD)
    except Exception:  # a broken EXIF block is no position, not an error
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None
    lat = _degrees(gps.get(2), gps.get(1, "N"), "N")
    lon = _degrees(gps.get(4), gps.get(3, "E"), "E")
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"lat": round(lat, 6), "lon": round(lon, 6)}


def scan_picture(data: bytes) -> dict[str, Any] | None:
    """{"codes": [{"format", "text"}], "location": {"lat", "lon"} or None} for a picture, or None if it cannot be
    read (not a picture, too large, broken)."""
    from PIL import Image, ImageOps
    import zxingcpp

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return None
            location = photo_location(image)
            picture = ImageOps.exif_transpose(image).convert("L")
    except Exception:  # not a picture Pillow can read: nothing to tell
        return None
    codes = []
    try:
        for found in zxingcpp.read_barcodes(picture)[:MAX_CODES]:
            text = found.text
            if text:
                codes.append({"format": str(found.format), "text": text[:MAX_TEXT]})
    except Exception:
        log.warning("scan.decode_failed", exc_info=True)
    return {"codes": codes, "location": location}


async def scan_upload(data: bytes, mime: str) -> dict[str, Any] | None:
    """scan_picture for an uploaded picture, in a thread, within DEADLINE_S (None past it or for other files)."""
    if mime not in IMAGES:
        return None
    try:
        return await asyncio.wait_for(asyncio.to_thread(scan_picture, data), DEADLINE_S)
    except asyncio.TimeoutError:
        log.warning("scan.timeout", bytes=len(data))
        return None
