"""The candidate rules as logic (the proof with real sockets is tests/integration/test_ice_guard.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.errors import MediaError
from gateway.media.candidates import CandidateGate, CandidatePolicy, CheckBudget, RemoteCandidate, networks
from gateway.media.leg import MediaConfig


def line(address: str, port: int = 5000, transport: str = "udp", typ: str = "host") -> str:
    return f"candidate:1 1 {transport} 2122260223 {address} {port} typ {typ}"


def test_parse_reads_the_fields_and_normalises_the_key():
    c = RemoteCandidate.parse("a=candidate:842163049 1 UDP 1677729535 ::ffff:198.51.100.7 54321 typ srflx "
                              "raddr 0.0.0.0 rport 0 generation 0")
    assert (c.foundation, c.component, c.transport, c.priority, c.port, c.type) == \
        ("842163049", 1, "udp", 1677729535, 54321, "srflx")
    assert c.key == (1, "udp", "198.51.100.7", 54321)
    assert RemoteCandidate.parse(line("198.51.100.7", 54321).replace("candidate:", "")).port == 54321


@pytest.mark.parametrize("text, words", [
    ("candidate:garbage", "needs"),
    ("candidate:1 1 udp 1 10.0.0.1 70000 typ host", "port '70000'"),
    ("candidate:1 1 udp 1 10.0.0.1 +5 typ host", "port"),
    ("candidate:1 1 udp 1 10.0.0.1 5_000 typ host", "port"),
    ("candidate:1 1 udp 99999999999 10.0.0.1 5000 typ host", "priority"),
    ("candidate:1 0 udp 1 10.0.0.1 5000 typ host", "component"),
    ("candidate:1 1 udp 1 10.0.0.1 5000 typ relayed", "type"),
    ("candidate:1 1 udp 1 10.0.0.1 5000 type host", "needs"),
    ("candidate:1 1 udp 1 10.0.0.1 5000 typ srflx raddr 1.2.3.4 rport 99999", "related port"),
    ("candidate:f$ 1 udp 1 10.0.0.1 5000 typ host", "foundation"),
])
def test_malformed_candidates_are_bad_candidate(text, words):
    with pytest.raises(MediaError) as caught:
        RemoteCandidate.parse(text)
    assert caught.value.code == "bad_candidate" and words in caught.value.reason


@pytest.mark.parametrize("address, port, words", [
    ("0.0.0.0", 5000, "not a unicast"),
    ("0.1.2.3", 5000, "not a unicast"),
    ("255.255.255.255", 5000, "not a unicast"),
    ("224.0.0.251", 5353, "not a unicast"),
    ("::", 5000, "not a unicast"),
    ("ff02::fb", 5353, "not a unicast"),
    ("10.0.0.1", 0, "port 0"),
    ("169.254.169.254", 80, "169.254.0.0/16"),
    ("::ffff:169.254.169.254", 80, "169.254.0.0/16"),
    ("fe80::1", 5000, "fe80::/10"),
    ("fd00:ec2::254", 80, "fd00:ec2::254/128"),
    ("100.100.100.200", 80, "100.100.100.200/32"),
    ("127.0.0.1", 6379, "loopback"),
    ("::1", 6379, "loopback"),
    ("abc.local", 5000, "mDNS"),
    ("ABC.LOCAL.", 5000, "mDNS"),
    ("metadata.google.internal", 80, "does not resolve names"),
])
def test_the_default_policy_refuses(address, port, words):
    reason = CandidatePolicy().refusal(address, port)
    assert reason is not None and words in reason


@pytest.mark.parametrize("address", ["198.51.100.7", "10.0.0.1", "192.168.1.20", "2001:db8::1", "100.64.0.1"])
def test_the_default_policy_accepts_ordinary_unicast(address):
    assert CandidatePolicy().refusal(address, 5000) is None


def test_allow_list_deny_list_and_loopback():
    policy = CandidatePolicy(allow=networks(["10.0.0.0/8", "2001:db8::/32"]), deny=networks(["10.9.0.0/16"]),
                             allow_loopback=True)
    assert policy.refusal("10.1.2.3", 1) is None
    assert policy.refusal("2001:db8::5", 1) is None
    assert "outside" in policy.refusal("192.168.1.1", 1)
    assert "10.9.0.0/16" in policy.refusal("10.9.1.1", 1)  # deny wins over allow
    assert "outside" in policy.refusal("127.0.0.1", 1)  # loopback is allowed, but not in the allow list
    assert CandidatePolicy(allow_loopback=True).refusal("127.0.0.1", 1) is None


def test_the_gate_caps_distinct_candidates_and_ignores_non_udp():
    gate = CandidateGate(CandidatePolicy(max_candidates=2))
    assert gate.check(line("10.0.0.1", transport="tcp")) is None
    for address in ("10.0.0.1", "10.0.0.2"):
        gate.record(gate.check(line(address)))
    again = gate.check(line("10.0.0.2"))  # the same transport address: not a new candidate
    assert again is not None
    with pytest.raises(MediaError) as caught:
        gate.check(line("10.0.0.3"))
    assert caught.value.code == "too_many_candidates" and "at most 2" in caught.value.reason
    with pytest.raises(MediaError) as caught:
        gate.check(line("169.254.1.1"))
    assert caught.value.code == "candidate_refused"
    assert gate.accepted == 2 and gate.refused == 2


OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0", "a=ice-ufrag:abcd", "a=ice-pwd:0123456789012345678901",
    "a=" + line("198.51.100.7"), "a=" + line("x.local"), "a=" + line("198.51.100.7", 9, "tcp"),
    "a=end-of-candidates",
    "m=video 9 UDP/TLS/RTP/SAVPF 97", "a=mid:1",
    "a=" + line("198.51.100.7"),  # the same candidate in the bundled section
    "a=end-of-candidates", "",
])


def test_filter_offer_leaves_out_refused_and_tcp_and_counts_distinct():
    gate = CandidateGate(CandidatePolicy(max_candidates=1))
    offer = gate.filter_offer(OFFER)
    assert offer.accepted == 1 and offer.ignored == 1 and len(offer.refused) == 1 and "mDNS" in offer.refused[0]
    assert offer.sdp.count("a=candidate:") == 2 and "x.local" not in offer.sdp and " tcp " not in offer.sdp
    assert offer.sdp.count("a=end-of-candidates") == 2
    assert gate.accepted == 0  # nothing recorded before the offer is applied
    gate.record_offer(offer)
    assert gate.accepted == 1


def test_filter_offer_drops_end_of_candidates_when_nothing_is_left():
    offer = CandidateGate(CandidatePolicy()).filter_offer(OFFER.replace("198.51.100.7", "169.254.9.9"))
    assert offer.accepted == 0 and "a=candidate:" not in offer.sdp and "a=end-of-candidates" not in offer.sdp


def test_filter_offer_refuses_malformed_and_too_many():
    with pytest.raises(MediaError) as caught:
        CandidateGate(CandidatePolicy()).filter_offer(OFFER.replace("198.51.100.7 5000", "198.51.100.7 70000"))
    assert caught.value.code == "bad_sdp" and "line 10" in caught.value.reason
    many = OFFER.replace("a=end-of-candidates\r\nm=video", "\r\n".join(
        "a=" + line(f"198.51.100.{i}") for i in range(10, 30)) + "\r\na=end-of-candidates\r\nm=video")
    with pytest.raises(MediaError) as caught:
        CandidateGate(CandidatePolicy(max_candidates=20)).filter_offer(many)
    assert caught.value.code == "too_many_candidates" and "21" in caught.value.reason


def test_check_budget():
    budget = CheckBudget(2)
    assert budget.take() and budget.take() and not budget.take()
    assert budget.exhausted and budget.started == 2


def test_settings_build_the_policy():
    config = MediaConfig.from_settings(Settings(media_host_addresses=["127.0.0.1"], media_remote_allow=["10.0.0.0/8"],
                                                media_max_remote_candidates=7, media_max_ice_checks=9))
    policy = config.candidates
    assert (policy.max_candidates, policy.max_checks, policy.allow_loopback) == (7, 9, True)
    assert [str(n) for n in policy.allow] == ["10.0.0.0/8"]
    assert "169.254.0.0/16" in [str(n) for n in policy.deny]
    assert MediaConfig.from_settings(Settings()).candidates.allow_loopback is False
    with pytest.raises(ValidationError):
        Settings(media_remote_deny=["not-a-network"])
