"""The UDP ports the relay binds its ICE host candidates in (a firewall opens just these), and how a range is
split between media worker processes.

A `PortRange` hands each gathering its ports in a rotating order: the next gathering starts after the last port the
previous one took, so legs spread over the range instead of all probing its first (busy) ports. The rotation is
state of the range object, which each process (each worker, with its own slice) creates for itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import MediaError

LOWEST_PORT = 1024  # below: privileged ports, never the relay's
HIGHEST_PORT = 65535


class PortsExhausted(MediaError):
    """Every port of the relay's UDP range is in use: no new leg can be set up until one ends."""

    code = "media_ports_exhausted"
    status = 503
    retryable = True


def check_port_range(low: int, high: int) -> None:
    """Raise ValueError, with a reason for a person, unless [low, high] is a usable range of UDP ports."""
    if not LOWEST_PORT <= low <= HIGHEST_PORT:
        raise ValueError(f"the lowest media port ({low}) must be between {LOWEST_PORT} and {HIGHEST_PORT}")
    if not LOWEST_PORT <= high <= HIGHEST_PORT:
        raise ValueError(f"the highest media port ({high}) must be between {LOWEST_PORT} and {HIGHEST_PORT}")
    if low > high:
        raise ValueError(f"the lowest media port ({low}) must not be above the highest ({high})")


class PortRange:
    """UDP ports `low`..`high` (both included), offered in a rotating order."""

    __slots__ = ("low", "high", "_next")

    def __init__(self, low: int, high: int) -> None:
        check_port_range(low, high)
        self.low = low
        self.high = high
        self._next = low  # where the next gathering starts looking

    @classmethod
    def of(cls, ports: range) -> "PortRange":
        """The range of a slice from `port_slices`."""
        if len(ports) == 0 or ports.step != 1:
            raise ValueError("a port slice must be a non-empty run of consecutive ports")
        return cls(ports.start, ports.stop - 1)

    def __len__(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __repr__(self) -> str:
        return f"PortRange({self.low}, {self.high})"

    def candidates(self) -> Iterator[int]:
        """Every port of the range once, starting where the previous gathering left off."""
        start = self._next
        for offset in range(len(self)):
            yield self.low + (start - self.low + offset) % len(self)

    def taken(self, port: int) -> None:
        """`port` was bound: the next gathering starts after it."""
        if port in self:
            self._next = port + 1 if port < self.high else self.low


def port_slices(low: int, high: int, n: int) -> list[range]:
    """Split ports `low`..`high` into `n` contiguous, non-overlapping slices that cover the range, as even as can be
    (the first slices get one port more when it does not divide). Each worker process binds in its own slice."""
    check_port_range(low, high)
    if n < 1:
        raise ValueError(f"the port range must be split into at least one slice, not {n}")
    total = high - low + 1
    if n > total:
        raise ValueError(f"{total} port(s) ({low}-{high}) cannot be split into {n} slices: "
                         f"each worker needs at least one port; widen the range or run fewer workers")
    size, extra = divmod(total, n)
    slices: list[range] = []
    start = low
    for index in range(n):
        stop = start + size + (1 if index < extra else 0)
        slices.append(range(start, stop))
        start = stop
    return slices
