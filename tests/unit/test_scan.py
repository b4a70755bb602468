"""Reading a caller's picture (gateway/scan.py): QR codes and barcodes found, the EXIF GPS position read, bounded
work (decompression bombs refused before decoding), and nothing for what is not a picture."""

from __future__ import annotations

import io
import struct
import zlib

import zxingcpp
from PIL import Image

from gateway.scan import MAX_PIXELS, scan_picture, scan_upload
from tests.support.pictures import picture


def test_a_qr_code_and_a_barcode_are_read_from_a_png():
    found = scan_picture(picture([("METER 04-771-3392", zxingcpp.BarcodeFormat.QRCode),
                                  ("4006381333931", zxingcpp.BarcodeFormat.EAN13)]))
    assert found is not None and found["location"] is None
    assert sorted((c["format"], c["text"]) for c in found["codes"]) == [("EAN-13", "4006381333931"),
                                                                         ("QR Code", "METER 04-771-3392")]


def test_a_jpeg_photo_gives_its_gps_position_south_and_west_too():
    paris = scan_picture(picture([("PARCEL 7781", zxingcpp.BarcodeFormat.Code128)], fmt="JPEG",
                                 gps=(48.858222, 2.2945)))
    assert paris is not None and [c["text"] for c in paris["codes"]] == ["PARCEL 7781"]
    assert abs(paris["location"]["lat"] - 48.858222) < 1e-4 and abs(paris["location"]["lon"] - 2.2945) < 1e-4
    rio = scan_picture(picture([], fmt="JPEG", gps=(-22.9519, -43.2105)))
    assert rio is not None and rio["codes"] == []
    assert abs(rio["location"]["lat"] + 22.9519) < 1e-4 and abs(rio["location"]["lon"] + 43.2105) < 1e-4


def test_a_picture_without_codes_or_gps_says_so_and_other_files_give_nothing():
    plain = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 200)).save(plain, "PNG")
    assert scan_picture(plain.getvalue()) == {"codes": [], "location": None}
    assert scan_picture(b"%PDF-1.7 not a picture") is None
    assert scan_picture(b"\x89PNG\r\n\x1a\n truncated") is None


def test_a_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 100  # a PNG header announcing more pixels than allowed (the data is tiny)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    assert scan_picture(bomb) is None


async def test_only_pictures_are_scanned():
    data = picture([("X-1", zxingcpp.BarcodeFormat.QRCode)])
    assert (await scan_upload(data, "image/png"))["codes"][0]["text"] == "X-1"
    assert await scan_upload(data, "application/pdf") is None
