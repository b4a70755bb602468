"""The attacks of issue 16 against a gateway process (`callin serve`, production defaults of every limit, in a
loopback-only network namespace); prints what got through, and the ping latency of an innocent caller during a chat
flood as a ratio to its latency measured just before in the same run.

    python -m bench.hostile [--sessions 1000] [--lines 3000] [--uploads 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import ensure_loopback_namespace  # noqa: E402


async def pings(ws, count: int) -> list[float]:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        await ws.request({"type": "ping"}, timeout=30)
        times.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.01)
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    import aiohttp

    from bench.run import wait_healthy
    from gateway.auth import mint_caller_token
    from tests.support.api import Api, caller_socket
    from tests.support.clients import WsClient
    from tests.support.server import free_port

    secret = "bench-secret-0123456789-abcdefghij"
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="callin-hostile-"))
    env = dict(os.environ, CALLIN_PORT=str(port), CALLIN_HOST="127.0.0.1", CALLIN_DEMO="true",
               CALLIN_CALLER_TOKEN_SECRET=secret, CALLIN_MEDIA_HOST_ADDRESSES='["127.0.0.1"]',
               CALLIN_LOG_LEVEL="warning", CALLIN_DATA_DIR=str(data_dir), CALLIN_RESUME_GRACE_S="30")
    proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def token(sub: str) -> str:
        return mint_caller_token(secret, sub=sub, name="Bench")

    try:
        await wait_healthy(base, proc)
        admin = Api(base)
        await admin.login("admin", "admin-demo")

        # 1. one token: sessions that start a call and drop the socket without bye
        t0 = time.perf_counter()
        outcomes: dict[str, int] = {}
        for _ in range(args.sessions):
            ws = WsClient(base, "/ws/caller")
            await ws.connect()
            reply = await ws.request({"type": "hello", "token": token("flooder")})
            if reply["type"] == "welcome":
                reply = await ws.request({"type": "call.start", "call_type": "voice"})
            key = reply["type"] if reply["type"] != "error" else reply["code"]
            outcomes[key] = outcomes.get(key, 0) + 1
            await ws.close()
        elapsed = time.perf_counter() - t0
        _, queue = await admin.get("/api/v1/queues/default")
        legit, _ = await caller_socket(base, token("legit"))
        print(json.dumps({"attack": "session_flood", "sessions": args.sessions, "seconds": round(elapsed, 1),
                          "replies": outcomes, "queue_length_after": queue["length"],
                          "legit_caller_position": legit.of_type("call.queued")[-1]["position"]}))

        # 2. chat flood while queued; an innocent caller pings meanwhile
        def db_bytes() -> int:
            return sum(f.stat().st_size for f in data_dir.glob("callin.db*"))

        size_before = db_bytes()
        baseline = await pings(legit, 100)
        chatty, _ = await caller_socket(base, token("chatty"))
        line = "x" * 2000
        start = len(chatty.messages)

        async def flood() -> None:
            for i in range(args.lines):
                await chatty.send({"type": "chat.send", "id": f"c{i}", "text": line})

        flood_task = asyncio.ensure_future(flood())
        during = await pings(legit, 100)
        await flood_task
        await chatty.request({"type": "ping"}, timeout=120)
        acks = sum(1 for m in chatty.messages[start:] if m.get("type") == "ack")
        codes: dict[str, int] = {}
        for m in chatty.messages[start:]:
            if m.get("type") == "error":
                codes[m["code"]] = codes.get(m["code"], 0) + 1
        await asyncio.sleep(1)  # let the recorder write
        print(json.dumps({"attack": "chat_flood", "lines_sent": args.lines, "accepted": acks, "refused": codes,
                          "db_growth_bytes": db_bytes() - size_before,
                          "innocent_ping_ms_p50_before": round(statistics.median(baseline), 2),
                          "innocent_ping_ms_p50_during": round(statistics.median(during), 2),
                          "innocent_ping_ms_p99_before": round(p(baseline, 0.99), 2),
                          "innocent_ping_ms_p99_during": round(p(during, 0.99), 2),
                          "p50_ratio_during_vs_before": round(statistics.median(during) / statistics.median(baseline),
                                                              2)}))

        # 3. uploads from one caller
        uploader, up_call = await caller_socket(base, token("uploader"))
        statuses: dict[str, int] = {}
        data = b"y" * (5 * 1024 * 1024)
        async with aiohttp.ClientSession() as http:
            for _ in range(args.uploads):
                async with http.post(f"{base}/api/v1/calls/{up_call}/attachments", data=data,
                                     headers={"Authorization": f"Bearer {token('uploader')}",
                                              "Content-Type": "application/octet-stream"}) as r:
                    body = await r.json()
                    key = str(r.status) + ("" if r.status == 201 else " " + body["code"])
                    statuses[key] = statuses.get(key, 0) + 1
        kept = sum(f.stat().st_size for f in (data_dir / "attachments").rglob("*") if f.is_file())
        print(json.dumps({"attack": "upload_flood", "uploads": args.uploads, "replies": statuses,
                          "bytes_on_disk": kept}))
        for ws in (legit, chatty, uploader):
            await ws.close()
        await admin.close()
    finally:
        proc.terminate()
        proc.wait(10)
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--uploads", type=int, default=40)
    ensure_loopback_namespace()
    asyncio.run(main(parser.parse_args()))
