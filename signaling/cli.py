"""The `callin` command: serve, demo, token, schema."""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.auth import ConfigError, mint_caller_token
from gateway.config import Settings

from . import logs
from .app import create_app
from .keys import SETTINGS
from .protocol import json_schema


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    return Settings(**overrides)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def _run(settings: Settings, banner: str | None = None) -> None:
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    settings = app[SETTINGS]

    async def print_banner(app: web.Application) -> None:
        if banner:
            print(banner.format(base=settings.base_url), flush=True)

    app.on_startup.append(print_banner)
    web.run_app(app, host=settings.host, port=settings.port, ssl_context=_ssl_context(settings),
                shutdown_timeout=settings.shutdown_grace_s, print=None, access_log=None)


DEMO_BANNER = """
Callin demo is running (embedded defaults: in-memory state, no external servers).

  Demo caller app : {base}/demo/
  Agent console   : {base}/console/
  Demo agents     : alice / alice-demo    bob / bob-demo
  Health          : {base}/healthz    Metrics: {base}/metrics    API: {base}/api/v1/openapi.json

Open the console, sign in as alice, set yourself available, then place a call from the demo app
(in another window). Browsers allow camera access on http://127.0.0.1 and localhost; elsewhere use TLS.
"""


def cmd_serve(args: argparse.Namespace) -> int:
    _run(_settings(args), "Callin gateway on {base}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args, demo=True, log_format="console")
    if not settings.media_host_addresses and settings.host in ("127.0.0.1", "localhost"):
        # A demo on loopback: gather media candidates on loopback too, so it works with no network at all.
        settings = settings.model_copy(update={"media_host_addresses": ["127.0.0.1"]})
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callin", description="Callin visual call-in gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in (("serve", cmd_serve, "run the gateway (config: CALLIN_* env vars, CALLIN_CONFIG_FILE)"),
                                  ("demo", cmd_demo, "run the gateway with the built-in demo")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
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


if __name__ == "__main__":
    sys.exit(main())
