"""REST: health, metrics, agent sign-in, the demo token endpoint, the protocol schema, and the OpenAPI document."""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import __version__, strictjson
from gateway.auth import mint_caller_token
from gateway.errors import GatewayError

from . import protocol
from .keys import ACCOUNTS, AGENT_SESSIONS, METRICS, READY, SETTINGS, SWITCHBOARD

routes = web.RouteTableDef()
log = structlog.get_logger("callin.rest")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LoginRequest(Body):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(BaseModel):
    token: str
    expires_in: int
    agent: dict[str, str]


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
            return json_error(exc.status, code, f"{request.method} {request.path}: {exc.reason.lower()}")
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


@routes.post("/api/v1/agent/login")
async def agent_login(request: web.Request) -> web.Response:
    """Checks the password; returns the token for the WebSocket hello and sets the same as the session cookie."""
    body: LoginRequest = await read_body(request, LoginRequest)
    account = await request.app[ACCOUNTS].check_password(body.username, body.password)
    token = request.app[AGENT_SESSIONS].issue(account)
    settings = request.app[SETTINGS]
    response = json_response(LoginResponse(
        token=token, expires_in=settings.agent_session_ttl_s,
        agent={"username": account.username, "display_name": account.display_name, "role": account.role},
    ).model_dump())
    secure = settings.scheme == "https" or (settings.public_url or "").startswith("https:") or request.secure
    response.set_cookie(settings.session_cookie_name, token, max_age=settings.agent_session_ttl_s, path="/",
                        httponly=True, secure=secure, samesite="Strict")
    return response


@routes.post("/api/v1/agent/logout")
async def agent_logout(request: web.Request) -> web.Response:
    """Clears the session cookie (tokens expire on their own)."""
    response = json_response({"signed_out": True})
    response.del_cookie(request.app[SETTINGS].session_cookie_name, path="/")
    return response


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

    from .api import openapi_paths

    api_paths, api_models = openapi_paths(ref, error)
    models = [LoginRequest, LoginResponse, DemoTokenRequest, TokenResponse, ErrorBody, *api_models]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Callin gateway", "version": __version__,
                 "description": "REST side of Callin. The call itself runs on the WebSockets in docs/protocol.md."},
        "paths": {
            "/healthz": {"get": {"summary": "Readiness", "responses": {"200": {"description": "ready"},
                                                                        "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}},
            "/api/v1/agent/login": {"post": {
                "summary": "Agent sign-in; returns the token for the agent WebSocket's hello and sets the session cookie",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref(LoginRequest)}}},
                "responses": {"200": {"description": "signed in", "content": {"application/json": {"schema": ref(LoginResponse)}}},
                              "401": error("bad credentials"), "422": error("invalid body")},
            }},
            "/api/v1/demo/token": {"post": {
                "summary": "Demo mode only: mint a caller token",
                "requestBody": {"content": {"application/json": {"schema": ref(DemoTokenRequest)}}},
                "responses": {"200": {"description": "token", "content": {"application/json": {"schema": ref(TokenResponse)}}},
                              "404": error("not in demo mode")},
            }},
            "/api/v1/agent/logout": {"post": {"summary": "Clear the session cookie",
                                              "responses": {"200": {"description": "signed out"}}}},
            "/api/v1/protocol/schema": {"get": {"summary": "JSON Schema of the WebSocket protocol",
                                                 "responses": {"200": {"description": "JSON Schema"}}}},
            **api_paths,
        },
        "components": {
            "schemas": {m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}") for m in models},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an integrator API key (ck_...) or an agent session token from sign-in"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "callin_session",
                           "description": "the console's session cookie, set by /api/v1/agent/login"},
            },
        },
    }
