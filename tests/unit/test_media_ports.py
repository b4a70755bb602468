"""The relay's UDP port range: settings validation, the rotating order, binding in the range, and the split into
per-worker slices."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.media.aiortc_internals import _bind_first_free
from gateway.media.leg import MediaConfig
from gateway.media.ports import PortRange, PortsExhausted, port_slices


def _error(**values: int) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    return str(caught.value)


def test_default_is_os_chosen_ports() -> None:
    settings = Settings()
    assert (settings.media_port_min, settings.media_port_max) == (0, 0)
    assert MediaConfig.from_settings(settings).ports is None


def test_a_valid_range_reaches_the_media_config() -> None:
    config = MediaConfig.from_settings(Settings(media_port_min=40000, media_port_max=40099))
    assert config.ports is not None
    assert (config.ports.low, config.ports.high, len(config.ports)) == (40000, 40099, 100)
    one = MediaConfig.from_settings(Settings(media_port_min=50000, media_port_max=50000)).ports
    assert one is not None and len(one) == 1


def test_range_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLIN_MEDIA_PORT_MIN", "30000")
    monkeypatch.setenv("CALLIN_MEDIA_PORT_MAX", "30010")
    settings = Settings()
    assert (settings.media_port_min, settings.media_port_max) == (30000, 30010)


@pytest.mark.parametrize(("low", "high", "reason"), [
    (0, 5000, "set both media_port_min and media_port_max for a media port range, or neither"),
    (5000, 0, "set both media_port_min and media_port_max for a media port range, or neither"),
    (80, 5000, "the lowest media port (80) must be between 1024 and 65535"),
    (1023, 1023, "the lowest media port (1023) must be between 1024 and 65535"),
    (5000, 70000, "the highest media port (70000) must be between 1024 and 65535"),
    (6000, 5000, "the lowest media port (6000) must not be above the highest (5000)"),
    (-1, 5000, "the lowest media port (-1) must be between 1024 and 65535"),
])
def test_invalid_ranges_are_refused_with_a_reason(low: int, high: int, reason: str) -> None:
    assert reason in _error(media_port_min=low, media_port_max=high)


def test_bounds_are_inclusive() -> None:
    Settings(media_port_min=1024, media_port_max=65535)
    assert 1024 in PortRange(1024, 65535) and 65535 in PortRange(1024, 65535)
    assert 1023 not in PortRange(1024, 2000) and 2001 not in PortRange(1024, 2000)


def test_rotating_order_spreads_gatherings() -> None:
    ports = PortRange(20000, 20003)
    assert list(ports.candidates()) == [20000, 20001, 20002, 20003]
    ports.taken(20000)
    assert list(ports.candidates()) == [20001, 20002, 20003, 20000]
    ports.taken(20002)  # 20001 was busy: the next gathering starts after the port really taken
    assert list(ports.candidates()) == [20003, 20000, 20001, 20002]
    ports.taken(20003)  # the last port: wrap around
    assert list(ports.candidates()) == [20000, 20001, 20002, 20003]
    ports.taken(19999)  # not ours: nothing changes
    assert list(ports.candidates())[0] == 20000


def test_port_range_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match=r"the lowest media port \(3000\) must not be above the highest \(2000\)"):
        PortRange(3000, 2000)
    with pytest.raises(ValueError, match="non-empty run of consecutive ports"):
        PortRange.of(range(2000, 2000))
    assert (PortRange.of(range(2000, 2010)).low, PortRange.of(range(2000, 2010)).high) == (2000, 2009)


def test_port_slices_cover_the_range_without_overlap() -> None:
    assert port_slices(10000, 10009, 2) == [range(10000, 10005), range(10005, 10010)]
    assert port_slices(10000, 10009, 3) == [range(10000, 10004), range(10004, 10007), range(10007, 10010)]
    assert port_slices(10000, 10000, 1) == [range(10000, 10001)]
    for n in (1, 2, 5, 7, 16, 100):
        slices = port_slices(40000, 40099, n)
        assert len(slices) == n
        assert [p for s in slices for p in s] == list(range(40000, 40100))  # contiguous, ordered, no overlap
        assert max(map(len, slices)) - min(map(len, slices)) <= 1
        assert all(len(s) > 0 for s in slices)
    assert [len(PortRange.of(s)) for s in port_slices(40000, 40099, 16)] == [7] * 4 + [6] * 12


def test_port_slices_refuses_empty_slices_and_bad_ranges() -> None:
    with pytest.raises(ValueError, match=r"3 port\(s\) \(10000-10002\) cannot be split into 4 slices"):
        port_slices(10000, 10002, 4)
    with pytest.raises(ValueError, match="at least one slice, not 0"):
        port_slices(10000, 10002, 0)
    with pytest.raises(ValueError, match=r"the lowest media port \(10\) must be between 1024 and 65535"):
        port_slices(10, 20, 1)


def _free_run(length: int) -> int:
    """The first port of `length` consecutive ports free on 127.0.0.1 (below the usual ephemeral range)."""
    for start in range(21000, 30000, length):
        probes = []
        try:
            for port in range(start, start + length):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(sock)
                sock.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for sock in probes:
                sock.close()
    raise AssertionError("no free run of ports")


def test_binding_skips_ports_in_use_and_fails_typed_when_none_is_free() -> None:
    start = _free_run(3)
    ports = PortRange(start, start + 2)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another program holds the first port
    squatter.bind(("127.0.0.1", start))
    held = []
    try:
        first = _bind_first_free("127.0.0.1", ports)
        assert first is not None and first.getsockname() == ("127.0.0.1", start + 1)
        held.append(first)
        second = _bind_first_free("127.0.0.1", ports)
        assert second is not None and second.getsockname() == ("127.0.0.1", start + 2)
        held.append(second)
        with pytest.raises(PortsExhausted) as caught:
            _bind_first_free("127.0.0.1", ports)
        error = caught.value
        assert (error.code, error.status, error.retryable) == ("media_ports_exhausted", 503, True)
        assert error.reason.startswith(f"every UDP port of the relay's media range {start}-{start + 2} (3 port(s)) "
                                       "is in use on 127.0.0.1")
        held.pop(0).close()  # a leg ends: its port is found again, whatever the rotation
        again = _bind_first_free("127.0.0.1", ports)
        assert again is not None and again.getsockname() == ("127.0.0.1", start + 1)
        held.append(again)
        # An address this host does not have is skipped (aioice logs it and gathers on the others).
        assert _bind_first_free("192.0.2.77", ports) is None
    finally:
        squatter.close()
        for sock in held:
            sock.close()
