"""What one hostile caller can make the relay send, and whether half-open legs end: the figures of issue 16.

    python -m bench.ice_probe                          # 300 trickled candidates, 40 half-open legs
    python -m bench.ice_probe --candidates 300 --half-open 40 --connect-timeout 2

One caller trickles N candidates, each a UDP socket on 127.0.0.3 that counts what reaches it and never answers,
then end-of-candidates; the script waits until the relay has no check left to start or running (a deadline, not a
fixed window) and reports how many targets were reached and how many datagrams arrived. Then M callers each leave
a half-open leg (their peer never starts ICE, their socket stays open) and the script counts how many calls end
within connect timeout + 10 s. Runs in a loopback-only network namespace (bench/netns.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402


async def probe(candidates: int, settle_s: float) -> dict[str, object]:
    from aioice.ice import CandidatePair

    from gateway.auth import mint_caller_token
    from gateway.media import aiortc_internals as internals
    from tests.support.clients import Caller
    from tests.support.media import ToneAudioTrack
    from tests.support.server import TEST_SECRET, running_gateway
    from tests.support.udp import UdpTrap

    async with running_gateway() as gateway:
        traps = [await UdpTrap.open("127.0.0.3") for _ in range(candidates)]
        caller = Caller(gateway.base_url, mint_caller_token(TEST_SECRET, sub="prober", name="Prober"))
        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        caller.peer.pc.addTrack(ToneAudioTrack(500))
        sdp = "\r\n".join(line for line in (await caller.peer.offer()).split("\r\n")
                          if not line.startswith("a=candidate:") and line != "a=end-of-candidates")
        answer = await caller.ws.request({"type": "sdp.offer", "sdp": sdp})
        assert answer["type"] == "sdp.answer", answer
        leg = gateway.board.relays[queued["call_id"]].caller
        started = time.monotonic()
        replies: dict[str, int] = {}
        for i, trap in enumerate(traps):
            reply = await caller.ws.request({"type": "ice.candidate", "sdp_mid": "0",
                                             "candidate": trap.candidate(priority=2122260223 - i, foundation=str(i))})
            key = reply["type"] if reply["type"] != "error" else reply["code"]
            replies[key] = replies.get(key, 0) + 1
        await caller.ws.request({"type": "ice.candidate", "candidate": None})

        busy = (CandidatePair.State.WAITING, CandidatePair.State.FROZEN, CandidatePair.State.IN_PROGRESS)

        def active() -> int:
            if leg.closed:  # the call ended (ICE failed, or the connect timeout): nothing more is sent
                return 0
            return sum(1 for c in internals.ice_connections(leg.pc) for p in c._check_list if p.state in busy)

        deadline = started + settle_s
        while (active() or not any(t.datagrams for t in traps)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        settled = active() == 0
        result = {
            "candidates_sent": candidates,
            "replies": replies,
            "targets_reached": sum(1 for t in traps if t.datagrams),
            "datagrams": sum(t.datagrams for t in traps),
            "most_to_one_target": max((t.datagrams for t in traps), default=0),
            "settled": settled,
            "call_ended": [m["reason"] for m in caller.ws.of_type("call.ended")],
            "seconds": round(time.monotonic() - started, 1),
        }
        await caller.close()
        for trap in traps:
            trap.close()
        return result


async def half_open(count: int, connect_timeout: float) -> dict[str, object]:
    from gateway.auth import mint_caller_token
    from tests.support.clients import Caller
    from tests.support.media import ToneAudioTrack
    from tests.support.server import TEST_SECRET, running_gateway

    async with running_gateway(media_connect_timeout_s=connect_timeout) as gateway:
        callers = []
        for i in range(count):
            caller = Caller(gateway.base_url, mint_caller_token(TEST_SECRET, sub=f"half-{i}", name="Half"))
            await caller.connect()
            await caller.ws.request({"type": "call.start", "call_type": "voice"})
            caller.peer.pc.addTrack(ToneAudioTrack(500))
            answer = await caller.ws.request({"type": "sdp.offer", "sdp": await caller.peer.offer()})
            assert answer["type"] == "sdp.answer", answer
            callers.append(caller)
        started = time.monotonic()
        deadline = started + connect_timeout + 10
        ended = lambda: sum(1 for c in callers if c.ws.of_type("call.ended"))  # noqa: E731
        while ended() < count and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        reasons = sorted({m["reason"] for c in callers for m in c.ws.of_type("call.ended")})
        result = {"half_open_legs": count, "ended": ended(), "reasons": reasons,
                  "sockets_open": sum(1 for c in callers if c.ws.close_code is None),
                  "waited_s": round(time.monotonic() - started, 1)}
        for caller in callers:
            await caller.close()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--settle", type=float, default=120.0, help="deadline for the checks to finish, seconds")
    parser.add_argument("--half-open", type=int, default=40)
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    args = parser.parse_args()
    ensure_loopback_namespace()

    async def run() -> None:
        print(json.dumps({"probe": await probe(args.candidates, args.settle)}))
        if args.half_open:
            print(json.dumps({"half_open": await half_open(args.half_open, args.connect_timeout)}))

    asyncio.run(run())


if __name__ == "__main__":
    main()
