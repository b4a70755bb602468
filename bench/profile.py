"""Where a relay's time per packet goes: sums up py-spy's folded stacks (`python -m bench.run --profile PY_SPY`
writes them) into the stages of the packet path.

    python -m bench.profile results/profile-callin-packet-8.txt [more files...]

Each sample is put in the first stage whose rule matches its stack (innermost stages are tried first), so the
shares add up to 100% of the samples taken in the relay's process (idle time is not sampled).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

# Samples whose innermost Python frame is one of these spent their time in the native module's call (py-spy shows
# no C frames without --native): (stage, leaf function).
LEAVES: list[tuple[str, str]] = [
    ("direct receive (+ unprotect and parse in C when native)", "DirectReceive._handler.<locals>.received"),
    ("native: build + protect + sendto (C)", "SenderPort._send_native"),
    ("native route: fanout, rewrite + protect + sendto for every armed stream (C)", "Producer.on_packet"),
]

# (stage, any of these substrings in the stack); first match wins, so the order goes from the most specific.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("SRTP unprotect", ("Session.unprotect", "unprotect_rtcp")),
    ("SRTP protect", ("Session.protect",)),
    ("sendto (syscall + asyncio transport)", ("sendto", "_SelectorDatagramTransport.sendto", "Connection.send ",
                                              "Connection.sendto", "StunProtocol.send_data")),
    ("rewrite + send bookkeeping (ours)", ("RtpForwarder.forward", "SenderPort.send", "Producer.on_packet",
                                           "send_now", "packet_sink")),
    ("RTCP (reports, NACK, PLI, REMB)", ("_handle_rtcp", "_run_rtcp", "_send_rtcp", "RtcpPacket", "remb",
                                         "RemoteBitrateEstimator")),
    ("receiver bookkeeping (stats, NACK gen.)", ("lean_receive.<locals>.handle", "_handle_rtp_packet",
                                                 "StreamStatistics", "NackGenerator")),
    ("receive + parse (aioice queue, RtpPacket.parse)", ("RtpPacket.parse", "_handle_rtp_data", "_recv_next",
                                                         "datagram_received", "Connection._recv",
                                                         "Connection.recv", "DirectReceive", "_read_ready")),
    ("records writer thread", ("RecordWriter",)),
    ("other media (watchdog, ICE, DTLS)", ("aioice", "aiortc", "gateway/media")),
    ("event loop (epoll, scheduling)", ("_run_once", "select", "Handle._run")),
]


def stage(stack: str) -> str:
    leaf = stack.rsplit(";", 1)[-1].split(" (", 1)[0]
    for name, function in LEAVES:
        if leaf == function:
            return name
    for name, needles in STAGES:
        if any(n in stack for n in needles):
            return name
    return "other"


def summarize(paths: list[Path]) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            counts[stage(stack)] += int(n)
            total += int(n)
    return counts, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    counts, total = summarize(args.files)
    if not total:
        sys.exit("no samples")
    print(f"| stage | share of samples ({total}) |\n|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
