"""The `callin` command: serve, demo, token, schema, user, apikey, db."""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from pydantic import ValidationError

from gateway.auth import ConfigError, mint_caller_token
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.gcpolicy import GcPolicy
from gateway.store.accounts import AccountStore, Role
from gateway.store.apikeys import ApiKeyStore
from gateway.store.db import Database

from gateway import logs
from .hardening import server_options
from .app import create_app
from .keys import METRICS, SETTINGS
from .protocol import json_schema


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "media_workers", None) is not None:
        overrides["media_workers"] = args.media_workers
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    return Settings(**overrides)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


HANDLER_CUTOFF_S = 0.5
# The record writer is a thread of this process. Each socket call of the event loop (every media packet) lets go of
# the GIL and, when that thread is busy, waits up to the switch interval to get it back: CPython's 5 ms default
# costs media a frame's worth of delay per packet while records are written. 1 ms keeps the loop moving.
SWITCH_INTERVAL_S = 0.001


async def _gc_policy_ctx(app: web.Application) -> AsyncIterator[None]:
    """The process's garbage-collection policy (gateway/gcpolicy.py): only for a served process, which owns it."""
    settings, metrics = app[SETTINGS], app[METRICS]
    policy = GcPolicy(settings.gc_sweep_interval_s, settings.gc_complete_every,
                      lambda kind, seconds: metrics.gc_pause.labels(kind=kind).observe(seconds))
    policy.start()
    yield
    await policy.stop()


PICK_ANOTHER_PORT = "pick another with --port N or CALLIN_PORT=N (make demo: CALLIN_PORT=9000 make demo)"


def _listen_error(settings: Settings, exc: OSError) -> ConfigError:
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"port {settings.port} is already in use on {settings.host} (another callin, or another "
                           f"server); {PICK_ANOTHER_PORT}")
    if exc.errno == errno.EACCES:
        return ConfigError(f"not allowed to listen on {where} (ports below 1024 need privileges); {PICK_ANOTHER_PORT}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"{settings.host} is not an address of this machine; set --host or CALLIN_HOST")
    return ConfigError(f"cannot listen on {where}: {exc.strerror or exc}")


def check_listen(settings: Settings) -> None:
    """Before anything starts: can the server listen on host:port? (The same bind the server does, with
    SO_REUSEADDR; a port some other socket listens on is refused.) Raises ConfigError with one line for a person."""
    if settings.port == 0:
        return
    try:
        infos = socket.getaddrinfo(settings.host or None, settings.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve the host {settings.host!r}: {exc.strerror}; set --host or CALLIN_HOST") \
            from None
    for family, kind, proto, _, address in {(i[0], i[1], i[2], None, i[4]) for i in infos}:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _listen_error(settings, exc) from None


def _run(settings: Settings, banner: str | None = None) -> None:
    check_listen(settings)  # a busy port is one line, before anything starts (no banner, no traceback)
    logs.configure(settings.log_level, settings.log_format)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = create_app(settings)
    settings = app[SETTINGS]

    async def print_banner(app: web.Application) -> None:
        if banner:
            print(banner.format(base=settings.base_url), flush=True)

    app.on_startup.append(print_banner)
    if settings.gc_sweep_interval_s > 0:
        app.cleanup_ctx.append(_gc_policy_ctx)  # last: what the app loads at start is frozen with the rest
    # The sockets are told and closed in on_shutdown (signaling/shutdown.py) within shutdown_grace_s; what aiohttp
    # waits for afterwards (twice: for the handlers to finish, then after cancelling them) is only what is stuck.
    try:
        web.run_app(app, host=settings.host, port=settings.port, ssl_context=_ssl_context(settings),
                    shutdown_timeout=HANDLER_CUTOFF_S, print=None, access_log=None,
                    loop=_event_loop(settings.event_loop), **server_options(settings))
    except OSError as exc:  # taken between the check and the bind
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise _listen_error(settings, exc) from None
        raise
    structlog.get_logger("callin.cli").info("shutdown.loop_closed")


def _event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("event_loop=uvloop but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


DEMO_BANNER = """
Callin demo is running (embedded defaults: in-memory live state, SQLite records in ./data, no external servers).

  Demo caller app : {base}/demo/
  Agent console   : {base}/console/
  Demo accounts   : alice / alice-demo    bob / bob-demo  (agents)    sam / sam-demo  (supervisor)
                    admin / admin-demo  (admin)
  Health          : {base}/healthz    Metrics: {base}/metrics    API: {base}/api/v1/openapi.json

Open the console, sign in as alice, set yourself available, then place a call from the demo app
(in another window). Browsers allow camera access on http://127.0.0.1 and localhost; elsewhere use TLS.
"""


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.media_workers is None:  # a served node uses every core: one media worker per CPU
        settings = settings.model_copy(update={"media_workers": len(os.sched_getaffinity(0)) or 1})
    _run(settings, "Callin gateway on {base}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args, demo=True, log_format="console")
    if not settings.media_host_addresses and settings.host in ("127.0.0.1", "localhost"):
        # A demo on loopback: gather media candidates on loopback too, so it works with no network at all.
        settings = settings.model_copy(update={"media_host_addresses": ["127.0.0.1"]})
    if "wrap_up_s" not in settings.model_fields_set:
        # The demo shows after-call work: 30 s to write the wrap-up before the next call may ring (ended early
        # by "Ready"); a deployment chooses its own (CALLIN_WRAP_UP_S, default 0).
        settings = settings.model_copy(update={"wrap_up_s": 30.0})
    _run(settings, DEMO_BANNER)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings()
    secret = args.secret or (settings.caller_token_secret.get_secret_value() if settings.caller_token_secret else None)
    if not secret:
        print("callin token: set CALLIN_CALLER_TOKEN_SECRET or pass --secret", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {}
    for item in args.claim or []:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"callin token: --claim takes KEY=VALUE, not {item!r}", file=sys.stderr)
            return 2
        extra[key] = int(value) if value.isdigit() else value
    if args.email:
        extra["email"] = args.email
    if args.phone:
        extra["phone_number"] = args.phone
    print(mint_caller_token(secret, sub=args.sub, name=args.name, audience=args.audience or settings.caller_token_audience,
                            ttl_s=args.ttl, issuer=args.issuer or settings.caller_token_issuer, extra=extra))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


async def _with_db(job: Any) -> int:
    settings = Settings()
    db = Database(settings.db_url)
    try:
        await db.upgrade()
        return await job(settings, db)
    finally:
        await db.close()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.username}: ")
    if first != getpass.getpass("again: "):
        raise GatewayError("the passwords differ", code="password_mismatch")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def job(settings: Settings, db: Database) -> int:
        accounts = AccountStore(db, time_cost=settings.password_hash_time_cost,
                                memory_kib=settings.password_hash_memory_kib)
        skills = [s.strip() for s in (args.skills or "").split(",") if s.strip()]
        account = await accounts.add(args.username, password, role=args.role, display_name=args.display_name,
                                     skills=skills, capacity=args.capacity)
        extra = f", skills {','.join(account.skills)}" if account.skills else ""
        print(f"created {account.role} {account.username} ({account.display_name}{extra})")
        return 0

    return asyncio.run(_with_db(job))


def cmd_user_list(args: argparse.Namespace) -> int:
    async def job(settings: Settings, db: Database) -> int:
        for user in await AccountStore(db, time_cost=1, memory_kib=1024).list():
            print(f"{user['username']:24} {user['role']:11} {user['display_name']:32} {','.join(user['skills'])}")
        return 0

    return asyncio.run(_with_db(job))


def cmd_apikey(args: argparse.Namespace) -> int:
    async def job(settings: Settings, db: Database) -> int:
        keys = ApiKeyStore(db)
        if args.action == "create":
            info, key = await keys.create(args.name, created_by="cli")
            print(f"API key {info.id} ({info.name}); shown once, store it now:\n{key}")
        elif args.action == "revoke":
            info = await keys.revoke(args.name)
            print(f"revoked {info.id} ({info.name})")
        else:
            for info in await keys.list():
                state = "revoked" if info.revoked_at else "active"
                print(f"{info.id:14} {state:8} {info.name}")
        return 0

    if args.action in ("create", "revoke") and not args.name:
        print(f"callin apikey {args.action}: give a {'name' if args.action == 'create' else 'key id'}", file=sys.stderr)
        return 2
    return asyncio.run(_with_db(job))


def cmd_db(args: argparse.Namespace) -> int:
    async def run() -> int:
        db = Database(Settings().db_url)
        try:
            if args.action == "upgrade":
                await db.upgrade()
            current, head = await db.revision()
            print(f"database at revision {current} (code head {head})")
            return 0 if current == head else 1
        finally:
            await db.close()

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callin", description="Callin visual call-in gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("serve", cmd_serve, "run the gateway (config: CALLIN_* env vars, CALLIN_CONFIG_FILE)"),
                                  ("demo", cmd_demo, "run the gateway with the built-in demo")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.add_argument("--media-workers", type=int, metavar="N",
                       help="media worker processes (0: media in this process; serve's default: one per CPU)")
        p.add_argument("--redis-url", metavar="URL",
                       help="the Redis that several nodes on one database share (CALLIN_REDIS_URL)")
        p.set_defaults(func=func)
    p = sub.add_parser("token", help="print a caller token signed with the configured HS256 secret")
    p.add_argument("--sub", required=True, help="the caller's stable id in your system")
    p.add_argument("--name")
    p.add_argument("--email")
    p.add_argument("--phone")
    p.add_argument("--claim", action="append", help="extra claim KEY=VALUE (repeatable)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    p.add_argument("--audience")
    p.add_argument("--issuer")
    p.add_argument("--secret", help="HS256 secret (default: CALLIN_CALLER_TOKEN_SECRET)")
    p.set_defaults(func=cmd_token)
    p = sub.add_parser("schema", help="print the JSON Schema of the WebSocket protocol")
    p.set_defaults(func=cmd_schema)
    user = sub.add_parser("user", help="accounts: agents, supervisors, admins").add_subparsers(dest="action",
                                                                                                required=True)
    p = user.add_parser("add", help="create an account (asks for the password)")
    p.add_argument("username")
    p.add_argument("--role", choices=[r.value for r in Role], default="agent")
    p.add_argument("--display-name")
    p.add_argument("--skills", help="comma-separated skills, e.g. billing,fr (queues route by them)")
    p.add_argument("--capacity", type=int, default=1, help="simultaneous calls (default 1)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("list", help="list accounts")
    p.set_defaults(func=cmd_user_list)
    p = sub.add_parser("apikey", help="integrator API keys for the REST API")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="create: a name for the key; revoke: the key id")
    p.set_defaults(func=cmd_apikey)
    p = sub.add_parser("db", help="database schema migrations")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as exc:
        print(f"callin: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"callin: {exc.reason}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"callin: {exc.reason} ({exc.code})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
