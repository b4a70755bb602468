"""Who is asking: a signed-in user (agent token as Bearer, or the session cookie) or an integrator's API key.
Also the Origin allow-list (cross-site WebSocket hijacking, CSRF on cookie-authenticated writes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from gateway.auth import AgentAccount, TokenError
from gateway.errors import Forbidden, Unauthorized
from gateway.store.accounts import Role
from gateway.store.apikeys import looks_like_api_key
from gateway.store.signins import SignIn

from .hardening import origin_is_public
from .keys import ACCOUNTS, API_KEYS, SETTINGS, SIGNINS

STAFF = {Role.SUPERVISOR.value, Role.ADMIN.value}  # the roles that see and control every call

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key"]
    name: str  # username, or the API key's id
    role: str  # agent / supervisor / admin, or "integrator" for API keys
    via: Literal["bearer", "cookie", "api_key"]
    session_id: str | None = None  # the sign-in session, for users

    @property
    def is_user(self) -> bool:
        return self.kind == "user"


async def signin_for_token(app: web.Application, token: str) -> tuple[SignIn, AgentAccount]:
    """The live server-side session a token (Bearer or cookie) belongs to, and its account."""
    signin = await app[SIGNINS].verify(token)
    account = await app[ACCOUNTS].get(signin.username)
    if account is None:
        raise TokenError("the agent account no longer exists or is disabled")
    return signin, account


async def account_for_token(app: web.Application, token: str) -> AgentAccount:
    return (await signin_for_token(app, token))[1]


def origin_allowed(request: web.Request) -> bool:
    """No Origin header (not a browser) is allowed; a browser's Origin must be one of the configured public origins
    (CALLIN_PUBLIC_URL, CALLIN_ALLOWED_ORIGINS), never derived from the request's own Host header."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin_is_public(request.app[SETTINGS], origin)


def check_origin(request: web.Request) -> None:
    if not origin_allowed(request):
        raise Forbidden(f"origin {request.headers.get('Origin')!r} is not allowed", code="origin_not_allowed")


async def principal(request: web.Request) -> Principal:
    app = request.app
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use 'Authorization: Bearer <token or API key>'", code="invalid_token")
        if looks_like_api_key(token):
            info = await app[API_KEYS].verify(token)
            return Principal("api_key", info.id, "integrator", "api_key")
        signin, account = await signin_for_token(app, token)
        return Principal("user", account.username, account.role, "bearer", signin.id)
    cookie = request.cookies.get(app[SETTINGS].session_cookie_name)
    if cookie:
        signin, account = await signin_for_token(app, cookie)
        if request.method not in SAFE_METHODS:
            check_origin(request)
        return Principal("user", account.username, account.role, "cookie", signin.id)
    raise Unauthorized("sign in (session cookie or agent token) or send an API key as a Bearer token",
                       code="not_authenticated")


async def require(request: web.Request, *, roles: set[str] | None = None, api_key: bool = False) -> Principal:
    """roles: user roles allowed (None: any signed-in user); api_key: whether integrator keys are allowed."""
    who = await principal(request)
    if who.kind == "api_key":
        if not api_key:
            raise Forbidden("API keys cannot use this endpoint; sign in as a user", code="forbidden")
        return who
    if roles is not None and who.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(sorted(roles))}", code="forbidden")
    return who
