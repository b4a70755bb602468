"""`callin-kiosk`: a kiosk, video teller or ATM placing a Callin call (an example of the SDK, and a probe).

    callin-kiosk --gateway https://callin.example.com --device /dev/video0        # token from $CALLIN_TOKEN
    CALLIN_CALLER_TOKEN_SECRET=... callin-kiosk --gateway http://127.0.0.1:8080 --sub kiosk-7 --name "Lobby kiosk"
    callin-kiosk --gateway http://127.0.0.1:8080 --demo                            # a `callin demo` gateway

Media: a V4L2 camera (--device), a file (--file) or, by default, the synthetic frame-counter video and a tone. The
agent's voice and video are dropped, or recorded with --record agent.mp4. Every event is printed as one JSON line;
the call is hung up after --duration seconds, on Ctrl-C, or when the agent ends it. Exit status 0 when the call
was answered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

import aiohttp

from .caller import CallEvent, CallinCaller
from .errors import CallinError
from .media import Blackhole, MediaSink, Recorder, camera, media_file, synthetic


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callin-kiosk", description="place a Callin call from a kiosk, teller or ATM")
    p.add_argument("--gateway", default=os.environ.get("CALLIN_GATEWAY", "http://127.0.0.1:8080"),
                   help="the gateway's base URL (default: $CALLIN_GATEWAY or http://127.0.0.1:8080)")
    tokens = p.add_argument_group("caller token (first that applies: --token, $CALLIN_TOKEN, a secret, --demo)")
    tokens.add_argument("--token", help="a caller JWT minted by your backend")
    tokens.add_argument("--secret", help="mint the token here with this HS256 secret (default: "
                        "$CALLIN_CALLER_TOKEN_SECRET): for demos and tests only, a kiosk should not hold it")
    tokens.add_argument("--demo", action="store_true", help="ask a `callin demo` gateway for a demo token")
    tokens.add_argument("--sub", default="kiosk-1", help="the caller's id when minting (default kiosk-1)")
    tokens.add_argument("--name", default="Kiosk", help="the name the agent sees when minting")
    tokens.add_argument("--queue", help="the queue: put in a minted token, checked against where the call lands")
    media = p.add_argument_group("media")
    choice = media.add_mutually_exclusive_group()
    choice.add_argument("--device", help="a V4L2 camera, e.g. /dev/video0")
    choice.add_argument("--file", help="a video file to send, looped")
    media.add_argument("--voice", action="store_true", help="a voice call (the synthetic tone only)")
    media.add_argument("--record", help="record the agent's voice and video to this file (e.g. agent.mp4)")
    p.add_argument("--duration", type=float, default=0, help="hang up after this many seconds (0: wait for the end)")
    p.add_argument("--chat", help="send this chat line once the agent answers")
    p.add_argument("--host-address", action="append", dest="host_addresses",
                   help="gather ICE candidates on this local address only (repeatable; e.g. 127.0.0.1 on one machine)")
    return p


async def obtain_token(args: argparse.Namespace) -> str:
    token = args.token or os.environ.get("CALLIN_TOKEN")
    if token:
        return token
    secret = args.secret or os.environ.get("CALLIN_CALLER_TOKEN_SECRET")
    if secret:
        from gateway.auth import mint_caller_token

        return mint_caller_token(secret, sub=args.sub, name=args.name, ttl_s=3600,
                                 extra={"queue": args.queue} if args.queue else None)
    if args.demo:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{args.gateway.rstrip('/')}/api/v1/demo/token",
                                 json={"sub": args.sub, "name": args.name}) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    raise CallinError(body.get("code", "token_unavailable"), body.get("reason"))
                return str(body["token"])
    raise CallinError("token_unavailable", "give --token (or $CALLIN_TOKEN), --secret (or "
                      "$CALLIN_CALLER_TOKEN_SECRET) or --demo")


def _printable(event: CallEvent) -> dict[str, Any]:
    data = {k: v for k, v in event.data.items() if k != "error"}
    return {"event": event.name, **data}


async def run(args: argparse.Namespace, out: Any = None) -> int:
    """The command's body (also used by the tests): returns the exit status."""
    out = out or sys.stdout
    token = await obtain_token(args)
    if args.device:
        source = camera(args.device)
    elif args.file:
        source = media_file(args.file)
    else:
        source = synthetic(video=not args.voice)
    sink: MediaSink = Recorder(args.record) if args.record else Blackhole()
    caller = CallinCaller(args.gateway, token, sink=sink, host_addresses=args.host_addresses)
    caller.on("*", lambda e: print(json.dumps(_printable(e), default=str), file=out, flush=True))
    if args.chat:
        caller.on("answered", lambda e: caller.send_chat(args.chat))
    done = asyncio.Event()
    caller.on("ended", lambda e: None if e["redialing"] else done.set())  # a redial places the call again
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, done.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    answered = False
    try:
        await caller.start_call(video=source, call_type="voice" if args.voice else None, queue=args.queue)
        waiter = asyncio.ensure_future(done.wait())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), args.duration or None)
        except asyncio.TimeoutError:
            pass
        finally:
            waiter.cancel()
        answered = any(e.name == "answered" for e in caller.events)
        await caller.hangup()
    except CallinError as exc:
        print(json.dumps({"event": "failed", "code": exc.code, "reason": exc.reason}), file=out, flush=True)
    finally:
        await caller.close()
        source.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    return 0 if answered else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except CallinError as exc:
        print(f"callin-kiosk: {exc.reason}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
