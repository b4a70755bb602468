"""The media plane. aiortc lives only in this package; its internals only in aiortc_internals.py."""

from .forward import EncodedFrame, ForwardTrack, Producer
from .leg import Leg, LegRole, MediaConfig
from .relay import Relay

__all__ = ["EncodedFrame", "ForwardTrack", "Leg", "LegRole", "MediaConfig", "Producer", "Relay"]
