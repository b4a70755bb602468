"""Remote ICE candidates: which addresses the relay agrees to send connectivity checks to, and how many.

A remote candidate asks the relay to send STUN packets to an address. Unchecked, that lets any caller make the
relay probe any host and port it names (internal services, cloud metadata, broadcast), and a few hundred
candidates in one call multiply that. So every candidate, trickled or embedded in the offer, passes here first:

- it must parse, with a port in 0..65535 (`bad_candidate`, or `bad_sdp` inside an offer);
- only UDP candidates are used (the relay does ICE over UDP only): TCP ones are accepted and ignored;
- its address must be a literal IP address: host names, mDNS names (`*.local`) included, are never resolved;
- the address must be usable (not unspecified, multicast, broadcast or reserved; port not 0), outside the
  denied networks (link-local and cloud metadata by default), inside the allowed ones when a list is set, and
  not loopback unless the relay itself gathers on loopback (demo, tests) (`candidate_refused`);
- at most `max_candidates` distinct candidates per leg (`too_many_candidates`).

An offer's refused candidates are left out of it (a browser may list mDNS or link-local ones); a trickled one
gets a typed error. `CheckBudget` bounds the connectivity checks a leg may start (see aiortc_internals.guard_ice).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import DEFAULT_DENIED_NETWORKS
from ..errors import MediaError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Never a peer: "this network", multicast, reserved and broadcast, the IPv6 unspecified address and multicast.
_UNUSABLE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8",
))
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))

_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_DIGITS = re.compile(r"[0-9]{1,10}")
_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MAX_PORT = 65535


class CandidateError(MediaError):
    """A remote ICE candidate the relay will not use."""

    code = "candidate_refused"


def networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (a bare address is a /32 or /128); raises ValueError on junk."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


def _number(text: str, what: str, most: int) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > most:
        raise MediaError(f"the candidate's {what} {text[:16]!r} is not a number from 0 to {most}",
                         code="bad_candidate")
    return int(text)


@dataclass(frozen=True)
class RemoteCandidate:
    """One parsed candidate line (RFC 8839 section 5.1), as the peer sent it."""

    foundation: str
    component: int
    transport: str  # lower case
    priority: int
    address: str
    port: int
    type: str

    @classmethod
    def parse(cls, text: str) -> "RemoteCandidate":
        """Parse `candidate:...` (with or without the `a=`/`candidate:` prefix); raises `bad_candidate`."""
        line = text.strip()
        for prefix in ("a=", "candidate:"):
            if line.startswith(prefix):
                line = line[len(prefix):]
        bits = line.split()
        if len(bits) < 8 or bits[6] != "typ":
            raise MediaError("an ICE candidate needs: foundation component transport priority address port "
                             "typ type", code="bad_candidate")
        foundation, component, transport, priority, address, port, _, kind = bits[:8]
        if not _FOUNDATION.fullmatch(foundation):
            raise MediaError("the candidate's foundation must be 1-32 letters, digits, + or /", code="bad_candidate")
        if not _TOKEN.fullmatch(transport):
            raise MediaError("the candidate's transport is not a token", code="bad_candidate")
        if kind not in _TYPES:
            raise MediaError(f"unknown candidate type {kind[:16]!r} (host, srflx, prflx or relay)",
                             code="bad_candidate")
        if not address or len(address) > 253:
            raise MediaError("the candidate's address is empty or too long", code="bad_candidate")
        extensions = bits[8:]
        for name, value in zip(extensions[::2], extensions[1::2], strict=False):
            if name == "rport":
                _number(value, "related port", MAX_PORT)
        if _number(component, "component", 256) == 0:
            raise MediaError("the candidate's component must be from 1 to 256", code="bad_candidate")
        return cls(
            foundation=foundation,
            component=int(component),
            transport=transport.lower(),
            priority=_number(priority, "priority", 2**32 - 1),
            address=address,
            port=_number(port, "port", MAX_PORT),
            type=kind,
        )

    @property
    def ip(self) -> IPAddress | None:
        """The address as an IP address (an IPv4-mapped IPv6 address as IPv4); None for a name."""
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip

    @property
    def key(self) -> tuple[int, str, str, int]:
        """What makes two candidates the same one (aioice keeps only the first of equal transport addresses)."""
        ip = self.ip
        return (self.component, self.transport, str(ip) if ip is not None else self.address.lower(), self.port)


@dataclass(frozen=True)
class CandidatePolicy:
    """Which remote addresses a leg may send to, how many, and how many checks (from Settings: media_remote_*)."""

    max_candidates: int = 20
    max_checks: int = 40
    allow: tuple[IPNetwork, ...] = ()  # empty: any address not denied
    deny: tuple[IPNetwork, ...] = field(default_factory=lambda: networks(DEFAULT_DENIED_NETWORKS))
    allow_loopback: bool = False  # only when the relay itself gathers on loopback

    def refusal(self, address: str | IPAddress, port: int | None = None) -> str | None:
        """Why the relay must not send to this address (None: it may)."""
        if isinstance(address, str):
            try:
                ip: IPAddress = ipaddress.ip_address(address)
            except ValueError:
                if address.lower().rstrip(".").endswith(".local"):
                    return (f"{address[:64]} is an mDNS name, which the gateway does not resolve; its checks to "
                            "the gateway's own candidates still find this address")
                return f"{address[:64]} is not an IP address; the gateway does not resolve names in candidates"
        else:
            ip = address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if port == 0:
            return "port 0 cannot receive anything"
        for net in _UNUSABLE:
            if ip.version == net.version and ip in net:
                return f"{ip} is not a unicast address a peer can use ({net})"
        if not self.allow_loopback:
            for net in _LOOPBACK:
                if ip.version == net.version and ip in net:
                    return f"{ip} is a loopback address, and the gateway does not gather on loopback"
        for net in self.deny:
            if ip.version == net.version and ip in net:
                return f"{ip} is in a network the gateway does not send to ({net})"
        if self.allow and not any(ip.version == net.version and ip in net for net in self.allow):
            return f"{ip} is outside the networks the gateway sends to"
        return None


@dataclass(frozen=True)
class OfferCandidates:
    """What `CandidateGate.filter_offer` did to an offer."""

    sdp: str
    keys: frozenset[tuple[int, str, str, int]]  # the distinct candidates kept
    refused: tuple[str, ...]  # one reason per left-out candidate
    ignored: int  # non-UDP candidates left out

    @property
    def accepted(self) -> int:
        return len(self.keys)


class CandidateGate:
    """One leg's remote candidates: vets each one, keeps count, caps them. Validate with `check`, then hand the
    candidate to aiortc, then `record` it."""

    def __init__(self, policy: CandidatePolicy) -> None:
        self.policy = policy
        self._accepted: set[tuple[int, str, str, int]] = set()
        self.refused = 0

    @property
    def accepted(self) -> int:
        return len(self._accepted)

    def check(self, text: str) -> RemoteCandidate | None:
        """The parsed candidate if the relay will use it, None if it is ignored (not UDP); raises
        `bad_candidate`, `candidate_refused` or `too_many_candidates`."""
        candidate = RemoteCandidate.parse(text)
        if candidate.transport != "udp":
            return None
        reason = self.policy.refusal(candidate.address, candidate.port)
        if reason is not None:
            self.refused += 1
            raise CandidateError(f"ICE candidate refused: {reason}")
        if candidate.key not in self._accepted and len(self._accepted) >= self.policy.max_candidates:
            self.refused += 1
            raise CandidateError(f"at most {self.policy.max_candidates} ICE candidates per peer connection",
                                 code="too_many_candidates")
        return candidate

    def record(self, candidate: RemoteCandidate) -> None:
        self._accepted.add(candidate.key)

    def filter_offer(self, sdp: str) -> OfferCandidates:
        """Leave the refused and non-UDP candidates out of an offer. Raises `bad_sdp` for a malformed candidate and
        `too_many_candidates` for more than the cap. Records nothing: call `record_offer` once it is applied.

        If no candidate is left, `a=end-of-candidates` is left out too: the peer's own checks can still be
        answered (peer-reflexive candidates), which an early end-of-candidates would cut short."""
        newline = "\r\n" if "\r\n" in sdp else "\n"
        lines = sdp.split(newline)
        kept: list[str] = []
        keys: set[tuple[int, str, str, int]] = set()
        refused: list[str] = []
        ignored = 0
        for number, line in enumerate(lines, 1):
            if not line.startswith("a=candidate:"):
                kept.append(line)
                continue
            try:
                candidate = RemoteCandidate.parse(line)
            except MediaError as exc:
                raise MediaError(f"the offer's ICE candidate on line {number} is malformed: {exc.reason}",
                                 code="bad_sdp") from None
            if candidate.transport != "udp":
                ignored += 1
                continue
            reason = self.policy.refusal(candidate.address, candidate.port)
            if reason is not None:
                refused.append(reason)
                continue
            keys.add(candidate.key)
            kept.append(line)
        if len(keys) > self.policy.max_candidates:
            raise CandidateError(f"the offer has {len(keys)} ICE candidates; at most {self.policy.max_candidates} "
                                 "per peer connection", code="too_many_candidates")
        if not keys:
            kept = [line for line in kept if line != "a=end-of-candidates"]
        self.refused += len(refused)
        return OfferCandidates(sdp=newline.join(kept), keys=frozenset(keys), refused=tuple(refused), ignored=ignored)

    def record_offer(self, offer: OfferCandidates) -> None:
        self._accepted |= offer.keys

    def allows(self, address: str) -> bool:
        """For the aioice guard: may the relay send to (or answer) this address?"""
        return self.policy.refusal(address) is None


class CheckBudget:
    """How many connectivity checks one leg may still start; each check is at most 7 STUN requests (aioice)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.started = 0

    def take(self) -> bool:
        if self.started >= self.limit:
            return False
        self.started += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.started >= self.limit
