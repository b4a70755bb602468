"""REST API v1 for integrators and the console: call records, wrap-up, agents, queues, stats, users, API keys,
webhooks. Inputs are validated by pydantic; errors are JSON {code, reason} (see errors_middleware)."""

from __future__ import annotations

import json
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import QueueConfig
from gateway.destinations import DestinationRefused
from gateway.errors import Forbidden, InvalidState, NotFound
from gateway.models import AgentStatus
from gateway.queues import Queue
from gateway.store.accounts import Role
from gateway.store.records import CallFilter, Outcome, handled_by

from .access import STAFF, require
from .call_views import MAX_PAGE, ContactHistory, call_view, viewer
from .cluster import tell_queue_changed
from .cluster_calls import CALL_RELAY
from .hardening import origin_is_public, origin_of
from .keys import (ACCOUNTS, API_KEYS, CALLS, DESTINATIONS, LIVE_SIGNINS, QUEUES, RECORDER, SETTINGS, SIGNINS,
                   SWITCHBOARD, TRANSCRIPTS, WEBHOOK_DISPATCHER, WEBHOOKS)
from .rest import Body, http_error, json_response, read_body

api_routes = web.RouteTableDef()
audit = structlog.get_logger("callin.audit")

ADMIN = {Role.ADMIN.value}
WebhookEvent = Literal["call.queued", "call.offered", "call.answered", "call.ended", "call.abandoned",
                       "call.callback_ready", "recording.ready", "transcript.ready"]


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CallListQuery(Query):
    since: float | None = Field(None, description="created at or after (UNIX seconds)")
    until: float | None = Field(None, description="created before (UNIX seconds)")
    outcome: Outcome | None = None
    agent: str | None = Field(None, max_length=128)
    queue: str | None = Field(None, max_length=64)
    subject: str | None = Field(None, max_length=256, description="the caller's subject (sub claim)")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=512)


class StatsQuery(Query):
    since: float | None = None
    until: float | None = None


class WrapUpRequest(Body):
    disposition: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    notes: str | None = Field(None, max_length=10_000)


class UserCreate(Body):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=10, max_length=1024)
    role: Role = Role.AGENT
    display_name: str | None = Field(None, max_length=256)
    skills: list[str] = Field(default_factory=list, max_length=32)
    capacity: int = Field(1, ge=1, le=10)


class UserRouting(Body):
    skills: list[str] | None = Field(None, max_length=32)
    capacity: int | None = Field(None, ge=1, le=10)


class ApiKeyCreate(Body):
    name: str = Field(min_length=1, max_length=128)


class WebhookCreate(Body):
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s]+$")
    events: list[WebhookEvent] = Field(min_length=1, max_length=8)


class CallPage(BaseModel):
    calls: list[dict[str, Any]]
    next_cursor: str | None


def parse_query(request: web.Request, model: type[Query]) -> Any:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "query"
        raise http_error(422, "invalid_query", f"{where}: {first['msg']}") from None


# ------------------------------------------------------------------------------------------------ calls
@api_routes.get("/api/v1/calls")
async def list_calls(request: web.Request) -> web.Response:
    who = await require(request, api_key=True)
    q: CallListQuery = parse_query(request, CallListQuery)
    agent = q.agent
    if who.is_user and who.role == Role.AGENT.value:
        if agent not in (None, who.name):
            raise Forbidden("agents see only their own calls", code="forbidden")
        agent = who.name
    where = CallFilter(since=q.since, until=q.until, outcome=q.outcome.value if q.outcome else None, agent=agent,
                       queue=q.queue, subject=q.subject)
    calls, cursor = await request.app[CALLS].list(where, q.limit, q.cursor)
    return json_response(CallPage(calls=calls, next_cursor=cursor).model_dump())


@api_routes.get("/api/v1/calls/{call_id}")
async def get_call(request: web.Request) -> web.Response:
    who = await require(request, api_key=True)
    call = await request.app[CALLS].get(request.match_info["call_id"])
    if who.is_user and who.role == Role.AGENT.value and who.name not in handled_by(call):
        # a call that only rang at this agent (declined or missed) is not theirs to read
        raise NotFound(f"no call {call['id']}", code="unknown_call")
    return json_response(call)


class TranscriptSegmentOut(BaseModel):
    seq: int
    participant: str = Field(description='"caller" or the username of the agent, supervisor or colleague')
    role: Literal["caller", "agent", "supervisor", "colleague"]
    name: str
    utterance: int
    text: str = Field(description="as recognised, card numbers and long digit runs redacted; plain text")
    start_s: float = Field(description="seconds from the start of the transcript")
    end_s: float
    at: float = Field(description="when it was recognised (UNIX seconds)")


class TranscriptOut(BaseModel):
    call_id: str
    segments: list[TranscriptSegmentOut]


@api_routes.get("/api/v1/calls/{call_id}/transcript")
async def get_transcript(request: web.Request) -> web.Response:
    """The call's live transcript (its queue had transcript on), final segments in order; [] when none."""
    who = await require(request, api_key=True)
    call_id = request.match_info["call_id"]
    if who.is_user and who.role == Role.AGENT.value:
        call = await request.app[CALLS].get(call_id)
        if who.name not in handled_by(call):
            raise NotFound(f"no call {call_id}", code="unknown_call")
    segments = await request.app[TRANSCRIPTS].get(call_id)
    return json_response(TranscriptOut(call_id=call_id, segments=segments).model_dump())


class HistoryQuery(Query):
    before: int | None = Field(None, ge=0, description="events before this seq (default: the newest)")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


@api_routes.get("/api/v1/calls/{call_id}/history")
async def call_history(request: web.Request) -> web.Response:
    """The events of a live call, newest page first, for the agent it rings at or who is in it, and staff: the
    card of call.offered holds only the newest settings.card_history_events of them. Any node answers (the call's
    home is asked: signaling/call_views.py)."""
    who = await require(request)
    q: HistoryQuery = parse_query(request, HistoryQuery)
    return await call_view(request, viewer(who, "history", request.match_info["call_id"], before=q.before,
                                           limit=q.limit))


@api_routes.post("/api/v1/calls/{call_id}/wrap-up")
async def wrap_up(request: web.Request) -> web.Response:
    who = await require(request)
    body: WrapUpRequest = await read_body(request, WrapUpRequest)
    call_id = request.match_info["call_id"]
    await request.app[RECORDER].wrap_up(call_id, who.name, body.disposition, body.notes)
    request.app[SWITCHBOARD].finish_wrap_up(who.name, call_id)  # ends the agent's wrap-up time early
    return json_response(await request.app[CALLS].get(call_id))


# ------------------------------------------------------------------------------------------------ the agent's desk
# What an agent's console may read and do beyond its own calls: colleagues and queues to transfer to, callbacks
# waiting and messages left in its queues, and the earlier calls of the caller it is talking to. Nothing here is
# admin data (no roles, skills, capacity or other agents' calls); API keys are not agents and get 403.
MAX_INBOX = 50


class DirectoryAgent(BaseModel):
    username: str
    display_name: str
    status: str = Field(description="available, away, ringing, busy, wrap_up or offline")
    queues: list[str] = Field(description="the queues whose skills this colleague has")


class DirectoryQueue(BaseModel):
    name: str
    open: bool
    waiting: int
    agents_available: int
    agents_staffed: int


class Directory(BaseModel):
    agents: list[DirectoryAgent] = Field(description="every colleague but the one asking, available ones first")
    queues: list[DirectoryQueue]


class InboxCallback(BaseModel):
    call_id: str
    queue: str
    caller: str = Field(description="the caller's signed name (or subject)")
    call_type: str
    phone: str | None = Field(description="the number the caller left, if any")
    requested_at: float = Field(description="when the call was placed (UNIX seconds)")
    ringing_at: str | None = Field(description="the agent it rings at now, if any")


class InboxMessage(BaseModel):
    call_id: str
    queue: str
    caller: str
    subject: str
    message: str
    left_at: float
    closed_reason: str | None


class Inbox(BaseModel):
    callbacks: list[InboxCallback]
    messages: list[InboxMessage]


class MessageHandled(Body):
    notes: str | None = Field(None, max_length=2000, description="what was done about it (kept as the wrap-up note)")


async def _my_queues(request: web.Request, who: Any) -> set[str] | None:
    """The queues a user serves: those whose skills its account has (supervisors and admins: None, every queue)."""
    if who.role in STAFF:
        return None
    account = await request.app[ACCOUNTS].get(who.name)
    skills = frozenset(account.skills) if account is not None else frozenset()
    return {q.name for q in request.app[SWITCHBOARD].all_queues() if q.skills <= skills}


def _caller_name(identity: dict[str, Any]) -> str:
    return str(identity.get("name") or identity.get("subject") or "Unknown caller")


@api_routes.get("/api/v1/directory")
async def directory(request: web.Request) -> web.Response:
    """Colleagues and queues with their live status, for the console's transfer picker (any signed-in user)."""
    who = await require(request)
    board = request.app[SWITCHBOARD]
    queues = board.all_queues()
    agents = []
    for account in await request.app[ACCOUNTS].list():
        if account["username"] == who.name or account.get("disabled"):
            continue
        live = board.agent(str(account["username"]))
        skills = frozenset(account.get("skills") or [])
        agents.append(DirectoryAgent(
            username=str(account["username"]), display_name=str(account["display_name"] or account["username"]),
            status=live.status.value if live else AgentStatus.OFFLINE.value,
            queues=[q.name for q in queues if q.skills <= skills]))
    order = {s: i for i, s in enumerate(["available", "wrap_up", "busy", "ringing", "away", "offline"])}
    agents.sort(key=lambda a: (order.get(a.status, 9), a.display_name.lower()))
    t = board.clock.time()
    views = [DirectoryQueue(name=q.name, open=q.is_open(t), waiting=len(board.waiting_calls(q.name)),
                            agents_available=sum(1 for a in board.routable_agents()
                                                 if a.status is AgentStatus.AVAILABLE and a.can_take(q.skills)),
                            agents_staffed=board.staffed(q.name)) for q in queues]
    return json_response(Directory(agents=agents, queues=views).model_dump())


@api_routes.get("/api/v1/agent/inbox")
async def inbox(request: web.Request) -> web.Response:
    """Callback requests waiting and messages left, in the queues this user serves (agents: by skills). With several
    nodes, the callback requests of every node (read from the call records), this node's first."""
    who = await require(request)
    mine = await _my_queues(request, who)
    board = request.app[SWITCHBOARD]
    callbacks = [InboxCallback(call_id=c.id, queue=c.queue, caller=_caller_name(c.identity.model_dump()),
                               call_type=c.call_type.value, phone=c.callback_phone, requested_at=c.created_at,
                               ringing_at=c.offered_to)
                 for c in board.waiting_calls() if c.callback and (mine is None or c.queue in mine)][:MAX_INBOX]
    if request.app.get(CALL_RELAY) is not None and len(callbacks) < MAX_INBOX:
        here = {c.call_id for c in callbacks}
        for row in await request.app[CALLS].open_callbacks(mine, MAX_INBOX):
            if row["id"] in here or board.call(row["id"]) is not None or len(callbacks) >= MAX_INBOX:
                continue
            callbacks.append(InboxCallback(
                call_id=row["id"], queue=row["queue"], caller=_caller_name(row["identity"] or {}),
                call_type=row["call_type"], phone=row["callback_phone"], requested_at=row["created_at"],
                ringing_at=None))  # not in the record (a take of one ringing is answered callback_ringing)
    rows = await request.app[CALLS].open_messages(mine, MAX_INBOX)
    messages = [InboxMessage(call_id=r["id"], queue=r["queue"], caller=_caller_name(r["identity"] or {}),
                             subject=r["subject"], message=r["message"], left_at=r["ended_at"] or r["created_at"],
                             closed_reason=r["closed_reason"]) for r in rows]
    return json_response(Inbox(callbacks=callbacks, messages=messages).model_dump())


@api_routes.post("/api/v1/callbacks/{call_id}/take")
async def take_callback(request: web.Request) -> web.Response:
    """Ring this agent now with a waiting callback request of one of its queues (it must be available). With
    several nodes, a request of any node: the node that holds it rings this agent, exactly once cluster-wide."""
    who = await require(request)
    call_id = request.match_info["call_id"]
    relay = request.app.get(CALL_RELAY)
    if relay is not None:
        call_id = await relay.take_callback(who.name, call_id)
    else:
        call_id = request.app[SWITCHBOARD].take_callback(who.name, call_id).id
    audit.info("callback.taken", call_id=call_id, by=who.name)
    return json_response({"call_id": call_id, "ringing_at": who.name})


@api_routes.post("/api/v1/messages/{call_id}/handled")
async def message_handled(request: web.Request) -> web.Response:
    """Mark a message a caller left as handled (once; it leaves everyone's inbox), with an optional note."""
    who = await require(request)
    body: MessageHandled = await read_body(request, MessageHandled)
    call_id = request.match_info["call_id"]
    mine = await _my_queues(request, who)
    record = await request.app[CALLS].get(call_id)
    if record.get("message") is None or (mine is not None and record["queue"] not in mine):
        raise NotFound(f"no message left with call {call_id} in your queues", code="unknown_message")
    await request.app[RECORDER].message_handled(call_id, who.name, body.notes)
    return json_response(await request.app[CALLS].get(call_id))


@api_routes.get("/api/v1/calls/{call_id}/contact-history")
async def contact_history(request: web.Request) -> web.Response:
    """The earlier calls of the caller of a call in progress (date, outcome, wrap-up notes): for the agent it rings
    at or who is in it, and staff. Never for an arbitrary subject. Any node answers (signaling/call_views.py)."""
    who = await require(request)
    return await call_view(request, viewer(who, "contact", request.match_info["call_id"]))


# ------------------------------------------------------------------------------------------------ live state
@api_routes.get("/api/v1/agents")
async def agents(request: web.Request) -> web.Response:
    await require(request, roles=STAFF, api_key=True)
    board = request.app[SWITCHBOARD]
    result = []
    for account in await request.app[ACCOUNTS].list():
        live = board.agent(str(account["username"]))
        result.append({
            "username": account["username"], "display_name": account["display_name"], "role": account["role"],
            "status": live.status.value if live else AgentStatus.OFFLINE.value,
            "call_id": live.call_id if live else None,
            "idle_since": live.idle_since if live and live.status is AgentStatus.AVAILABLE else None,
        })
    return json_response({"agents": result})


def _queue_view(board: Any, queue: Queue) -> dict[str, Any]:
    t = board.clock.time()
    waiting = board.waiting_calls(queue.name)
    return {
        "name": queue.name,
        "length": len(waiting),
        "longest_wait_s": round(max(t - c.created_at for c in waiting), 3) if waiting else None,
        "callbacks_waiting": sum(1 for c in waiting if c.callback),
        "open": queue.is_open(t),
        "opens_at": queue.schedule.next_opening(t),
        "agents_staffed": board.staffed(queue.name),
        "average_handle_s": round(handle_s, 1) if (handle_s := board.average_handle_s(queue.name)) is not None
        else None,
        "config": queue.config.model_dump(mode="json"),
    }


@api_routes.get("/api/v1/queues")
async def queues(request: web.Request) -> web.Response:
    await require(request, roles=STAFF, api_key=True)
    board = request.app[SWITCHBOARD]
    return json_response({"queues": [_queue_view(board, q) for q in board.all_queues()],
                              "agents_staffed": board.staffed()})


@api_routes.get("/api/v1/queues/{name}")
async def get_queue(request: web.Request) -> web.Response:
    await require(request, roles=STAFF, api_key=True)
    board = request.app[SWITCHBOARD]
    return json_response(_queue_view(board, board.queue_config(request.match_info["name"])))


class QueueConfigPut(QueueConfig):
    """The body of PUT /api/v1/queues/{name} (documentation only): the name may be left out (the path names it)."""

    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",  # type: ignore[assignment]
                             description="the queue in the path; another name is refused")


class _AnyObject(Body):
    model_config = ConfigDict(extra="allow")


async def _queue_body(request: web.Request, name: str | None) -> QueueConfig:
    """The body is a QueueConfig; on PUT the name comes from the path (a different name in the body is refused)."""
    body = await read_body(request, _AnyObject)
    data = dict(body.model_extra or {})
    if name is not None:
        if data.setdefault("name", name) != name:
            raise http_error(422, "invalid_body", "name: differs from the queue in the path")
    try:  # strict: JSON types as the schema says (no false for a number, no "1" for a count)
        return QueueConfig.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise http_error(422, "invalid_body", f"{where}: {first['msg']}") from None


async def _apply_queue(request: web.Request, config: QueueConfig, by: str) -> web.Response:
    board = request.app[SWITCHBOARD]
    await request.app[QUEUES].save(config, by)
    queue = board.put_queue(config)  # hours or skills may have changed: the engine settles again
    await tell_queue_changed(request.app, "put", config.name)  # the other nodes apply it too
    return json_response(_queue_view(board, queue))


@api_routes.post("/api/v1/queues")
async def create_queue(request: web.Request) -> web.Response:
    who = await require(request, roles=ADMIN)
    config = await _queue_body(request, None)
    if request.app[SWITCHBOARD].has_queue(config.name):
        raise InvalidState(f"the queue {config.name} exists already; PUT changes it", code="queue_exists")
    response = await _apply_queue(request, config, who.name)
    response.set_status(201)
    return response


@api_routes.put("/api/v1/queues/{name}")
async def put_queue(request: web.Request) -> web.Response:
    who = await require(request, roles=ADMIN)
    return await _apply_queue(request, await _queue_body(request, request.match_info["name"]), who.name)


@api_routes.delete("/api/v1/queues/{name}")
async def delete_queue(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN)
    board = request.app[SWITCHBOARD]
    name = request.match_info["name"]
    board.remove_queue(name)
    await request.app[QUEUES].delete(name)
    await tell_queue_changed(request.app, "delete", name)
    return json_response({"deleted": name})


@api_routes.get("/api/v1/stats")
async def stats(request: web.Request) -> web.Response:
    await require(request, roles=STAFF, api_key=True)
    q: StatsQuery = parse_query(request, StatsQuery)
    return json_response(await request.app[CALLS].stats(q.since, q.until))


# ------------------------------------------------------------------------------------------------ admin
@api_routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN)
    return json_response({"users": await request.app[ACCOUNTS].list()})


@api_routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN)
    body: UserCreate = await read_body(request, UserCreate)
    account = await request.app[ACCOUNTS].add(body.username, body.password, role=body.role,
                                              display_name=body.display_name, skills=body.skills,
                                              capacity=body.capacity)
    return json_response({"username": account.username, "display_name": account.display_name,
                              "role": account.role, "skills": list(account.skills),
                              "capacity": account.capacity}, status=201)


@api_routes.put("/api/v1/users/{username}/routing")
async def user_routing(request: web.Request) -> web.Response:
    """Skills and capacity; a signed-in agent gets them at its next sign-in."""
    await require(request, roles=ADMIN)
    body: UserRouting = await read_body(request, UserRouting)
    account = await request.app[ACCOUNTS].set_routing(request.match_info["username"], skills=body.skills,
                                                      capacity=body.capacity)
    return json_response({"username": account.username, "skills": list(account.skills),
                              "capacity": account.capacity})


@api_routes.get("/api/v1/users/{username}/sessions")
async def user_sessions(request: web.Request) -> web.Response:
    """The account's live sign-in sessions (admin)."""
    await require(request, roles=ADMIN)
    return json_response({"sessions": [s.public() for s in
                                           await request.app[SIGNINS].live(request.match_info["username"])]})


@api_routes.delete("/api/v1/users/{username}/sessions")
async def end_user_sessions(request: web.Request) -> web.Response:
    """Ends every session of the account (admin): its tokens stop working and its agent sockets close."""
    who = await require(request, roles=ADMIN)
    username = request.match_info["username"]
    ended = await request.app[SIGNINS].revoke_user(username, "ended_by_admin")
    request.app[LIVE_SIGNINS].end(ended, "ended_by_admin")
    audit.info("auth.sessions_ended", username=username, by=who.name, sessions=len(ended))
    return json_response({"username": username, "sessions_ended": len(ended)})


@api_routes.get("/api/v1/api-keys")
async def list_api_keys(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN)
    return json_response({"api_keys": [k.public() for k in await request.app[API_KEYS].list()]})


@api_routes.post("/api/v1/api-keys")
async def create_api_key(request: web.Request) -> web.Response:
    who = await require(request, roles=ADMIN)
    body: ApiKeyCreate = await read_body(request, ApiKeyCreate)
    info, key = await request.app[API_KEYS].create(body.name, created_by=who.name)
    return json_response({**info.public(), "key": key}, status=201)


@api_routes.delete("/api/v1/api-keys/{key_id}")
async def revoke_api_key(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN)
    info = await request.app[API_KEYS].revoke(request.match_info["key_id"])
    return json_response(info.public())


@api_routes.get("/api/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN, api_key=True)
    return json_response({"webhooks": await request.app[WEBHOOKS].list()})


@api_routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN, api_key=True)
    body: WebhookCreate = await read_body(request, WebhookCreate)
    if origin_is_public(request.app[SETTINGS], origin_of(body.url)):
        raise DestinationRefused("webhooks cannot point at this gateway itself")
    await request.app[DESTINATIONS].check_url(body.url)  # no internal addresses (checked again at connect time)
    return json_response(await request.app[WEBHOOKS].create(body.url, list(body.events)), status=201)


@api_routes.delete("/api/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN, api_key=True)
    await request.app[WEBHOOKS].delete(request.match_info["webhook_id"])
    request.app[WEBHOOK_DISPATCHER].cancel_webhook(request.match_info["webhook_id"])  # pending deliveries too
    return json_response({"deleted": request.match_info["webhook_id"]})


@api_routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(request: web.Request) -> web.Response:
    await require(request, roles=ADMIN, api_key=True)
    return json_response({"deliveries": await request.app[WEBHOOKS].deliveries(request.match_info["webhook_id"])})


# ------------------------------------------------------------------------------------------------ OpenAPI
def openapi_paths(ref: Any, error: Any) -> tuple[dict[str, Any], list[type[BaseModel]]]:
    secured = [{"bearer": []}, {"cookie": []}]

    def query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")  # its $defs: see models below
        return [{"name": name, "in": "query", "required": False, "schema": prop,
                 "description": prop.get("description", "")} for name, prop in schema["properties"].items()]

    def op(summary: str, *, body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
           ok: str = "200", path_param: str | None = None, response: type[BaseModel] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"summary": summary, "security": secured,
                                  "responses": {ok: {"description": "OK", **({"content": {"application/json": {
                                      "schema": ref(response)}}} if response else {})},
                                                "400": error("the request does not fit (e.g. an invalid cursor)"),
                                                "401": error("not signed in / bad token or key"),
                                                "403": error("role or key not allowed"),
                                                "404": error("no such resource"),
                                                "409": error("conflicts with the current state"),
                                                "422": error("invalid input")}}
        params = query_params(query) if query else []
        if path_param:
            params.append({"name": path_param, "in": "path", "required": True, "schema": {"type": "string"}})
        if params:
            result["parameters"] = params
        if body:
            result["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
            result["responses"]["413"] = error("body too large")
            result["responses"]["415"] = error("not a JSON body")
        return result

    take = op("Ring me now with this waiting callback request (I must be available and serve its queue; with "
              "several nodes, a request of any node)", path_param="call_id")
    take["responses"]["503"] = error("several nodes: the request's node died and is being taken over "
                                     "(callback_moving), or did not answer (node_unreachable); retryable")

    paths = {
        "/api/v1/calls": {"get": op("List call records (filters, newest first, cursor pagination)",
                                    query=CallListQuery, response=CallPage)},
        "/api/v1/calls/{call_id}": {"get": op("One call record with its ordered event log", path_param="call_id")},
        "/api/v1/calls/{call_id}/transcript": {"get": op("The call's live transcript: final segments, redacted, in "
                                                         "order (agents: their own calls)", path_param="call_id",
                                                         response=TranscriptOut)},
        "/api/v1/calls/{call_id}/history": {"get": op("The events of a call in progress, a page before `before` "
                                                      "(the agent it rings at or who is in it, supervisor, admin)",
                                                      query=HistoryQuery, path_param="call_id")},
        "/api/v1/calls/{call_id}/wrap-up": {"post": op("Wrap-up (disposition, notes) by the agent who took the call",
                                                       body=WrapUpRequest, path_param="call_id")},
        "/api/v1/agents": {"get": op("Agents and their live state (supervisor, admin, API key)")},
        "/api/v1/directory": {"get": op("Colleagues and queues with live status, for transfers (any signed-in user; "
                                        "no API keys)", response=Directory)},
        "/api/v1/agent/inbox": {"get": op("Callback requests waiting and messages left in the queues this user serves",
                                          response=Inbox)},
        "/api/v1/callbacks/{call_id}/take": {"post": take},
        "/api/v1/messages/{call_id}/handled": {"post": op("Mark a message left in one of my queues as handled",
                                                          body=MessageHandled, path_param="call_id")},
        "/api/v1/calls/{call_id}/contact-history": {"get": op(
            "Earlier calls of the caller of a call ringing at me or in progress with me (staff: any live call)",
            path_param="call_id", response=ContactHistory)},
        "/api/v1/queues": {"get": op("Queues: configuration, open now, live length, longest wait, staffed agents"),
                           "post": op("Create a queue (admin); kept in the database", body=QueueConfig, ok="201")},
        "/api/v1/queues/{name}": {"get": op("One queue", path_param="name"),
                                  "put": op("Create or replace a queue's configuration (admin)", body=QueueConfigPut,
                                            path_param="name"),
                                  "delete": op("Remove a queue with no waiting call (admin; not the default)",
                                               path_param="name")},
        "/api/v1/stats": {"get": op("Calls, answer rate, average and p90 wait, average handle time, abandonment",
                                    query=StatsQuery)},
        "/api/v1/nodes": {"get": op("The cluster's nodes: name, started, last heartbeat, alive, draining, calls, "
                                    "waiting, agents, and the totals over live nodes (admin)")},
        "/api/v1/users": {"get": op("List accounts (admin)"),
                          "post": op("Create an account (admin)", body=UserCreate, ok="201")},
        "/api/v1/users/{username}/routing": {"put": op("Set an account's skills and capacity (admin)",
                                                       body=UserRouting, path_param="username")},
        "/api/v1/users/{username}/sessions": {
            "get": op("The account's live sign-in sessions (admin)", path_param="username"),
            "delete": op("End every session of the account; its agent sockets close (admin)", path_param="username")},
        "/api/v1/api-keys": {"get": op("List API keys (admin)"),
                             "post": op("Create an API key; the key is shown once (admin)", body=ApiKeyCreate, ok="201")},
        "/api/v1/api-keys/{key_id}": {"delete": op("Revoke an API key (admin)", path_param="key_id")},
        "/api/v1/webhooks": {"get": op("List webhook endpoints"),
                             "post": op("Register a webhook endpoint; the signing secret is shown once",
                                        body=WebhookCreate, ok="201")},
        "/api/v1/webhooks/{webhook_id}": {"delete": op("Delete a webhook endpoint", path_param="webhook_id")},
        "/api/v1/webhooks/{webhook_id}/deliveries": {"get": op("Delivery log (every attempt with its outcome)",
                                                               path_param="webhook_id")},
    }
    from .recordings_api import openapi_paths as recording_paths  # here: that module imports this one

    more_paths, more_models = recording_paths(op)
    paths.update(more_paths)
    return paths, [*more_models, Directory, Inbox, MessageHandled, ContactHistory, WrapUpRequest, UserCreate, UserRouting, ApiKeyCreate, WebhookCreate, CallPage, QueueConfig,
                   QueueConfigPut, CallListQuery, StatsQuery, TranscriptOut]
