"""Which packet path a relay uses, chosen once at start (setting `relay_fast_path`, env CALLIN_RELAY_FAST_PATH):

- `native`: the C module `gateway.media._fastpath` (built from gateway/media/_fastpath.c by `pip install`, when a
  C compiler and Python's headers are there) unprotects and parses incoming SRTP and builds, protects and sends
  outgoing RTP; packets come straight from the socket's callback (`aiortc_internals.DirectReceive`). Once an
  outgoing stream runs steadily, its rewrite state moves into a native `Route` (packets.RtpForwarder arms it) and
  one `fanout` call per incoming packet forwards it to every armed stream (rewrite, protect, send, NACK history,
  sender-report counters); Python takes a stream back on anything else (a new source, a blocked socket, pause,
  resume, a keyframe wait) and consumers without a route (a recorder's or a speech tap) get each packet after the
  C fan-out, as before. When every consumer of an incoming stream forwards in C (no tap, no consumer in Python) and
  no NACK is outstanding, the receive side is in C too: the module's `Inlet` is the leg's socket callback, and it
  unprotects, counts (aiortc's receive statistics, the REMB estimator's inputs) and fans out each in-order packet
  before any Python object but its payload is made; aiortc's receiver and the producer get the counts in batches,
  and Python takes the stream back with the first packet that is not steady (a gap, a keyframe, a tap). Incoming
  SRTCP goes from the socket callback straight to aiortc's RTCP handling (no aioice queue, no task step);
- `python`: the same direct receive, with pylibsrtp and aiortc's parser/serializer doing the per-packet work;
- `off`: aiortc's own path (aioice's queue, the DTLS transport's task), as before the fast path;
- `auto` (default): `native` when the module is built, else `python`, with one log line saying so.

Python keeps the control in every case: who hears whom (the Relay's scene), when a stream's rewrite state may live in
C and what happens on every change (packets.RtpForwarder), keyframe waits and requests, RTCP and NACK answers
(aiortc's sender/receiver, answering from a history that includes what C sent: aiortc_internals.NativeHistory).
"""

from __future__ import annotations

import importlib
import logging
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class FastPath(StrEnum):
    OFF = "off"
    PYTHON = "python"
    NATIVE = "native"


class FastPathUnavailable(RuntimeError):
    pass


def native_module() -> Any | None:
    """The built native module, or None (not built: no compiler when the package was installed)."""
    try:
        return importlib.import_module("gateway.media._fastpath")
    except ImportError:
        return None


def resolve(setting: str) -> FastPath:
    """The path for a setting (auto/native/python/off), logged once by the caller's process at start."""
    if setting == "off":
        log.info("packet relay: aiortc's receive and send path (relay_fast_path=off)")
        return FastPath.OFF
    if setting == "python":
        log.info("packet relay: direct receive in Python (relay_fast_path=python)")
        return FastPath.PYTHON
    module = native_module()
    if module is None:
        if setting == "native":
            raise FastPathUnavailable("relay_fast_path=native, but gateway.media._fastpath is not built "
                                      "(reinstall with a C compiler and Python's headers: scripts/setup.sh)")
        log.warning("packet relay: the native fast path is not built (no C compiler at install?); "
                    "forwarding in Python")
        return FastPath.PYTHON
    log.info("packet relay: native fast path (gateway.media._fastpath)")
    return FastPath.NATIVE


class LegPath:
    """What one leg uses: `native` is None on the Python path."""

    def __init__(self, native: Any | None) -> None:
        self.native = native


def for_leg(path: str) -> LegPath | None:
    """The per-packet path of a new packet-mode leg; None for aiortc's own path (`off`). Quiet: `resolve` logs."""
    if path == FastPath.OFF:
        return None
    module = native_module() if path in ("native", "auto") else None
    if module is None:
        return LegPath(None)
    from .aiortc_internals import NativeSrtp

    return LegPath(NativeSrtp(module))
