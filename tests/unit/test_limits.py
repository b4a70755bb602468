"""Rate limiters and the client address behind trusted proxies."""

from __future__ import annotations

from types import SimpleNamespace

from multidict import CIMultiDict

from gateway.clock import ManualClock
from gateway.limits import SlidingWindow, TokenBucket
from signaling.clientaddr import client_address, networks


def test_sliding_window_counts_per_key_and_forgets_quiet_keys() -> None:
    clock = ManualClock()
    window = SlidingWindow(3, 60.0, clock)
    for _ in range(3):
        assert window.check("a") is None
        window.hit("a")
    assert window.check("a") == 60.0 and window.check("b") is None
    clock.advance(30)
    assert window.check("a") == 30.0
    clock.advance(30.5)
    assert window.check("a") is None
    for i in range(100):
        window.hit(f"k{i}")
    clock.advance(61)
    window.hit("fresh")  # sweeps every key quiet for a window
    assert len(window) == 1


def test_token_bucket_burst_then_rate() -> None:
    clock = ManualClock()
    bucket = TokenBucket(burst=2, per_minute=6, clock=clock)  # one every 10 s
    bucket.hit("x")
    bucket.hit("x")
    assert bucket.check("x") == 10.0
    clock.advance(5)
    assert bucket.check("x") == 5.0
    clock.advance(5)
    assert bucket.check("x") is None
    clock.advance(3600)
    bucket.hit("x")
    bucket.hit("x")
    assert bucket.check("x") is not None  # never more than the burst


def test_token_bucket_forgets_keys_whose_bucket_is_full_again() -> None:
    clock = ManualClock()
    bucket = TokenBucket(burst=2, per_minute=6, clock=clock)  # empty to full: 20 s
    for i in range(100):
        bucket.hit(f"addr-{i}")
    clock.advance(15)
    bucket.hit("busy")  # no sweep yet (one per 20 s)
    bucket.hit("busy")
    assert len(bucket) == 101
    clock.advance(10)
    bucket.hit("fresh")  # the addr-* buckets are full again and forgotten; "busy" has refilled one token only
    assert len(bucket) == 2 and bucket.check("addr-1") is None and bucket.check("busy") is None
    bucket.hit("busy")
    assert bucket.check("busy") is not None  # it kept its count: one token, not a fresh burst of two


def _request(remote: str, forwarded: list[str]) -> object:
    headers = CIMultiDict()
    for value in forwarded:
        headers.add("X-Forwarded-For", value)
    return SimpleNamespace(remote=remote, headers=headers)


def test_client_address_trusts_only_configured_proxies() -> None:
    proxies = networks(["10.0.0.0/8"])
    assert client_address(_request("203.0.113.5", ["1.2.3.4"]), proxies) == "203.0.113.5"  # not a proxy: ignored
    assert client_address(_request("10.0.0.2", ["1.2.3.4"]), []) == "10.0.0.2"  # no proxies configured
    assert client_address(_request("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.9"]), proxies) == "1.2.3.4"
    assert client_address(_request("10.0.0.2", ["6.6.6.6", "1.2.3.4"]), proxies) == "1.2.3.4"
    assert client_address(_request("10.0.0.2", ["garbage"]), proxies) == "10.0.0.2"
    assert client_address(_request("10.0.0.2", []), proxies) == "10.0.0.2"
