"""REST: health, metrics, agent sign-in, the demo token endpoint, the protocol schema, and the OpenAPI document."""

from __future__ import annotations

import contextlib
import math
import secrets
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import __version__, strictjson
from gateway.auth import mint_caller_token
from gateway.models import now
from gateway.errors import GatewayError, Unauthorized

from . import protocol
from .access import principal, require
from .keys import ACCOUNTS, LIVE_SIGNINS, METRICS, READY, SETTINGS, SIGNIN_THROTTLE, SIGNINS, SWITCHBOARD

routes = web.RouteTableDef()
log = structlog.get_logger("callin.rest")
audit = structlog.get_logger("callin.audit")


class Body(BaseModel):
    """A JSON request body: unknown fields refused, JSON types as the schema says (no false for a number)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class LoginRequest(Body):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    cookie_only: bool = Field(False, description="browsers: the token stays in the HttpOnly session cookie and is "
                                                 "not returned in the body")


class LoginResponse(BaseModel):
    token: str | None = Field(description="the session token (Bearer, WebSocket hello); null with cookie_only")
    expires_in: int = Field(description="seconds until the session ends unless refreshed")
    agent: dict[str, str]


class SessionInfo(BaseModel):
    session_id: str
    expires_in: int = Field(description="seconds until the session ends unless refreshed")
    ends_in: int = Field(description="seconds until the session ends anyway")
    agent: dict[str, str]


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=10, max_length=1024)


class DemoTokenRequest(Body):
    name: str = Field("Dana Demo", min_length=1, max_length=128)
    sub: str | None = Field(None, max_length=128)
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=64)
    account_tier: str | None = Field(None, max_length=32)


class TokenResponse(BaseModel):
    token: str
    expires_in: int


class ErrorBody(BaseModel):
    code: str
    reason: str


def http_error(status: int, code: str, reason: str) -> GatewayError:
    exc = GatewayError(reason, code=code)
    exc.status = status
    return exc


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    """web.json_response written strictly: never a NaN or Infinity (written as null), which strict JSON parsers
    refuse."""
    return web.json_response(data, status=status, dumps=strictjson.dumps, **kwargs)


def json_error(status: int, code: str, reason: str) -> web.Response:
    return json_response({"code": code, "reason": reason}, status=status)


MAX_JSON_BODY = 256 * 1024


async def read_body(request: web.Request, model: type[Body]) -> Any:
    if request.content_type != "application/json":
        raise http_error(415, "unsupported_media_type", "send a JSON body (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise http_error(413, "body_too_large", f"JSON bodies are at most {MAX_JSON_BODY} bytes")
    try:
        raw = await request.read()
        if len(raw) > MAX_JSON_BODY:
            raise http_error(413, "body_too_large", f"JSON bodies are at most {MAX_JSON_BODY} bytes")
        strictjson.loads(raw or b"{}")  # NaN, Infinity, unpaired surrogates and deep nesting are refused first
        return model.model_validate_json(raw or b"{}")
    except strictjson.StrictJSONError as exc:
        raise http_error(422, "invalid_body", f"body: {exc.reason}") from None
    except web.HTTPRequestEntityTooLarge:
        raise http_error(413, "body_too_large", "request body too large") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise http_error(422, "invalid_body", f"{where}: {first['msg']}") from None


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return json_error(exc.status, exc.code, exc.reason)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "body_too_large", "request body too large")
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status in (404, 405):
            code = "not_found" if exc.status == 404 else "method_not_allowed"
            response = json_error(exc.status, code, f"{request.method} {request.path}: {exc.reason.lower()}")
            if "Allow" in exc.headers:  # a 405 says which methods the resource has
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        log.exception("rest.internal_error", path=request.path)
        return json_error(500, "internal_error", "internal error")


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the gateway is started and accepting calls, 503 while starting or shutting down."""
    ready = request.app[READY].get("ready", False) and not request.app[SWITCHBOARD].closing
    return json_response({"status": "ok" if ready else "unavailable", "version": __version__},
                             status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _set_session_cookie(request: web.Request, response: web.Response, token: str) -> None:
    settings = request.app[SETTINGS]
    secure = settings.scheme == "https" or (settings.public_url or "").startswith("https:") or request.secure
    response.set_cookie(settings.session_cookie_name, token, max_age=settings.agent_session_max_s, path="/",
                        httponly=True, secure=secure, samesite="Strict")


@routes.post("/api/v1/agent/login")
async def agent_login(request: web.Request) -> web.Response:
    """Checks the password and opens a server-side session: its token is set as the HttpOnly session cookie and,
    unless cookie_only is set (browsers), returned for the WebSocket hello and Bearer use."""
    body: LoginRequest = await read_body(request, LoginRequest)
    throttle = request.app[SIGNIN_THROTTLE]
    address = request.remote or "unknown"
    wait = throttle.retry_after(body.username, address)
    if wait > 0:  # refused before any hash is computed
        audit.warning("auth.sign_in_throttled", username=body.username, address=address, retry_after_s=round(wait, 1))
        response = json_error(429, "too_many_attempts",
                              f"too many wrong passwords; try again in {math.ceil(wait)} s")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        account = await request.app[ACCOUNTS].check_password(body.username, body.password)
    except Unauthorized:
        account_failures, address_failures = throttle.failed(body.username, address)
        audit.warning("auth.sign_in_failed", username=body.username, address=address,
                      account_failures=account_failures, address_failures=address_failures)
        raise
    throttle.succeeded(body.username, address)
    signin, token = await request.app[SIGNINS].open(account.username, address)
    audit.info("auth.signed_in", username=account.username, address=address, session=signin.id)
    response = json_response(LoginResponse(
        token=None if body.cookie_only else token, expires_in=round(signin.expires_at - signin.created_at),
        agent={"username": account.username, "display_name": account.display_name, "role": account.role},
    ).model_dump())
    _set_session_cookie(request, response, token)
    return response


@routes.post("/api/v1/agent/logout")
async def agent_logout(request: web.Request) -> web.Response:
    """Ends the session (Bearer token or cookie) on the server, closes its agent sockets, clears the cookie."""
    who = None
    with contextlib.suppress(GatewayError):
        who = await principal(request)
    if who is not None and who.session_id is not None:
        await request.app[SIGNINS].revoke(who.session_id, "signed_out")
        request.app[LIVE_SIGNINS].end([who.session_id], "signed_out")
        audit.info("auth.signed_out", username=who.name, session=who.session_id)
    response = json_response({"signed_out": True})
    response.del_cookie(request.app[SETTINGS].session_cookie_name, path="/")
    return response


@routes.post("/api/v1/agent/refresh")
async def agent_refresh(request: web.Request) -> web.Response:
    """Keeps a live session going: its expiry moves to agent_session_ttl_s from now (not past its absolute end)."""
    who = await require(request)
    assert who.session_id is not None
    signin = await request.app[SIGNINS].refresh(who.session_id)
    return await _session_info(request, signin, who.name)


@routes.get("/api/v1/agent/session")
async def agent_session(request: web.Request) -> web.Response:
    """Who this session (cookie or Bearer) belongs to and when it ends; 401 once it has ended."""
    who = await require(request)
    assert who.session_id is not None
    signin = await request.app[SIGNINS].get(who.session_id)
    return await _session_info(request, signin, who.name)


async def _session_info(request: web.Request, signin: Any, username: str) -> web.Response:
    return json_response(SessionInfo(
        session_id=signin.id, expires_in=max(0, round(signin.expires_at - now())),
        ends_in=max(0, round(signin.ends_at - now())), agent=await _agent(request, username)).model_dump())


@routes.put("/api/v1/agent/password")
async def agent_password(request: web.Request) -> web.Response:
    """Changes the signed-in user's password; every other session of the account ends (sockets closed)."""
    who = await require(request)
    body: PasswordChange = await read_body(request, PasswordChange)
    throttle = request.app[SIGNIN_THROTTLE]
    address = request.remote or "unknown"
    wait = throttle.retry_after(who.name, address)
    if wait > 0:
        response = json_error(429, "too_many_attempts", f"too many wrong passwords; try again in {math.ceil(wait)} s")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        await request.app[ACCOUNTS].check_password(who.name, body.current_password)
    except Unauthorized:
        throttle.failed(who.name, address)
        audit.warning("auth.password_change_failed", username=who.name, address=address)
        raise Unauthorized("the current password is wrong", code="bad_credentials") from None
    await request.app[ACCOUNTS].set_password(who.name, body.new_password)
    ended = await request.app[SIGNINS].revoke_user(who.name, "password_changed", keep=who.session_id)
    request.app[LIVE_SIGNINS].end(ended, "password_changed")
    audit.info("auth.password_changed", username=who.name, sessions_ended=len(ended))
    return json_response({"changed": True, "sessions_ended": len(ended)})


async def _agent(request: web.Request, username: str) -> dict[str, str]:
    account = await request.app[ACCOUNTS].get(username)
    if account is None:
        raise Unauthorized("the agent account no longer exists or is disabled", code="invalid_token")
    return {"username": account.username, "display_name": account.display_name, "role": account.role}


@routes.post("/api/v1/demo/token")
async def demo_token(request: web.Request) -> web.Response:
    """Demo mode only: what an integrator's backend does, minting a caller token for the demo app."""
    settings = request.app[SETTINGS]
    if not settings.demo or settings.caller_token_secret is None:
        return json_error(404, "not_found", "the demo token endpoint exists only in demo mode")
    body: DemoTokenRequest = await read_body(request, DemoTokenRequest)
    extra: dict[str, Any] = {}
    if body.email:
        extra["email"] = body.email
    if body.phone:
        extra["phone_number"] = body.phone
    if body.account_tier:
        extra["account_tier"] = body.account_tier
    ttl = 3600
    token = mint_caller_token(
        settings.caller_token_secret.get_secret_value(),
        sub=body.sub or f"demo-{secrets.token_hex(4)}",
        name=body.name,
        audience=settings.caller_token_audience,
        issuer=settings.caller_token_issuer,
        ttl_s=ttl,
        extra=extra,
    )
    return json_response(TokenResponse(token=token, expires_in=ttl).model_dump())


@routes.get("/api/v1/protocol/schema")
async def protocol_schema(request: web.Request) -> web.Response:
    return json_response(protocol.json_schema())


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def openapi_document() -> dict[str, Any]:
    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(ErrorBody)}}}

    def responses(ok: dict[str, Any], *codes: tuple[str, str]) -> dict[str, Any]:
        return {"200": ok, **{code: error(text) for code, text in codes}}

    from .api import openapi_paths

    api_paths, api_models = openapi_paths(ref, error)
    models = [LoginRequest, LoginResponse, SessionInfo, PasswordChange, DemoTokenRequest, TokenResponse, ErrorBody,
              *api_models]
    schemas: dict[str, Any] = {}
    for model in models:  # nested models ($defs) become components of their own, so every $ref resolves
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas[model.__name__] = schema
    secured = [{"bearer": []}, {"cookie": []}]
    json_body = {"400": "bad request", "413": "body too large", "415": "not a JSON body", "422": "invalid body"}
    signed_in = {"401": "not signed in, or the session ended", "403": "not for API keys / foreign Origin"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Callin gateway", "version": __version__,
                 "description": "REST side of Callin. The call itself runs on the WebSockets in docs/protocol.md."},
        "paths": {
            "/healthz": {"get": {"summary": "Readiness", "responses": {"200": {"description": "ready"},
                                                                        "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
            "/api/v1/agent/login": {"post": {
                "summary": "Agent sign-in: opens a server-side session, sets the HttpOnly session cookie and (unless "
                           "cookie_only) returns the token for the agent WebSocket's hello and Bearer use",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref(LoginRequest)}}},
                "responses": responses(
                    {"description": "signed in", "content": {"application/json": {"schema": ref(LoginResponse)}}},
                    ("401", "bad credentials"), *json_body.items(),
                    ("429", "too many wrong passwords: wait Retry-After seconds"),
                    ("503", "too many sign-ins at once")),
            }},
            "/api/v1/agent/logout": {"post": {
                "summary": "End the session (Bearer or cookie) on the server, close its agent sockets, clear the cookie",
                "responses": {"200": {"description": "signed out"}}}},
            "/api/v1/agent/refresh": {"post": {
                "summary": "Keep the session going: its expiry moves to agent_session_ttl_s from now", "security": secured,
                "responses": responses({"description": "refreshed",
                                        "content": {"application/json": {"schema": ref(SessionInfo)}}},
                                       *signed_in.items())}},
            "/api/v1/agent/session": {"get": {
                "summary": "Whose session this is and when it ends", "security": secured,
                "responses": responses({"description": "the session",
                                        "content": {"application/json": {"schema": ref(SessionInfo)}}},
                                       *signed_in.items(), ("404", "no such session"))}},
            "/api/v1/agent/password": {"put": {
                "summary": "Change the signed-in user's password; the account's other sessions end", "security": secured,
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref(PasswordChange)}}},
                "responses": responses({"description": "changed"}, *signed_in.items(), *json_body.items(),
                                       ("429", "too many wrong passwords: wait Retry-After seconds"),
                                       ("503", "too many password checks at once"))}},
            "/api/v1/demo/token": {"post": {
                "summary": "Demo mode only: mint a caller token",
                "requestBody": {"content": {"application/json": {"schema": ref(DemoTokenRequest)}}},
                "responses": responses(
                    {"description": "token", "content": {"application/json": {"schema": ref(TokenResponse)}}},
                    ("404", "not in demo mode"), *json_body.items()),
            }},
            "/api/v1/protocol/schema": {"get": {"summary": "JSON Schema of the WebSocket protocol",
                                                 "responses": {"200": {"description": "JSON Schema"}}}},
            **api_paths,
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an integrator API key (ck_...) or an agent session token (as_...)"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "callin_session",
                           "description": "the console's session cookie, set by /api/v1/agent/login"},
            },
        },
    }
