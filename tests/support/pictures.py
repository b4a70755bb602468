"""Pictures for the scanning tests: a code drawn by zxing-cpp (its writer), pasted on a photo-like background, saved
as PNG or JPEG, with an EXIF GPS position when asked."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import zxingcpp
from PIL import Image

GPS_IFD = 0x8825


def dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round(((value - degrees) * 60 - minutes) * 60 * 1000), 1000)
    return Fraction(degrees), Fraction(minutes), seconds


def picture(codes: list[tuple[str, object]], *, fmt: str = "PNG", gps: tuple[float, float] | None = None) -> bytes:
    """`codes`: (text, zxingcpp.BarcodeFormat) drawn side by side on a grey background."""
    drawn = [Image.fromarray(np.array(zxingcpp.create_barcode(text, symbology).to_image(scale=4, add_quiet_zones=True)))
             for text, symbology in codes]
    canvas = Image.new("L", (max(320, sum(d.width + 40 for d in drawn) + 40),
                             max([240] + [d.height + 120 for d in drawn])), 200)
    x = 40
    for image in drawn:
        canvas.paste(image, (x, 60))
        x += image.width + 40
    out = io.BytesIO()
    if gps is None:
        canvas.convert("RGB").save(out, fmt)
    else:
        exif = Image.Exif()
        lat, lon = gps
        exif.get_ifd(GPS_IFD).update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
                                      4: dms(lon)})
        canvas.convert("RGB").save(out, fmt, exif=exif.tobytes())
    return out.getvalue()
