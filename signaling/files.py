"""Files of a call: chat attachments and app screenshots (caller or staff), and snapshots of the caller's video.

    POST /api/v1/calls/{call_id}/attachments?name=receipt.png   raw body (the file); -> attachment JSON
    GET  /api/v1/calls/{call_id}/attachments/{attachment_id}    -> the file
    POST /api/v1/calls/{call_id}/snapshot                       -> attachment JSON of a JPEG still (staff only)

A caller authenticates with its caller token (Authorization: Bearer <JWT>) and reaches only its own calls; staff
with their session (cookie or token) and must be in the call (supervisors and admins may read any call's files).

With shared files (the database backend, gateway/store/attachments.py) every route works on every node of a cluster:

- a download of a call that is not live on this node (homed on another node, ended, or its node died) is checked
  against its record in the shared database: its caller (the token's issuer and subject) and the agents who handled
  it may read its files; an agent of this node in a call homed elsewhere may too (its status here follows the home's
  events);
- an upload to a call homed on another node is checked and stored here, then the home is asked (through the cluster
  relay, signaling/cluster_calls.py) to adopt it: the home checks that the uploader is in the call, adds the file to
  the call and its event log; if it refuses, the file is deleted and its error returned;
- a snapshot is taken by the home (the caller's media is there), asked the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.auth import TokenError
from gateway.calls import Call
from gateway.errors import BadRequest, Forbidden, NotFound
from gateway.models import AgentStatus, CallerIdentity, CallState
from gateway.store.attachments import Attachment, AttachmentError
from gateway.store.records import RecordsUnavailable, handled_by

from .access import STAFF, principal
from .cluster_calls import CALL_RELAY
from .keys import ATTACHMENTS, CALLER_TOKENS, CALLS, RECORDER, SWITCHBOARD
from .rest import json_response

log = structlog.get_logger("callin.files")

file_routes = web.RouteTableDef()
IN_CALL = (AgentStatus.BUSY, AgentStatus.WRAP_UP)  # an agent connected to a call, or wrapping it up


@dataclass(frozen=True)
class Uploader:
    name: str  # "caller" or a username
    is_caller: bool
    role: str
    owner: str | None = None  # a caller's identity (issuer|subject): its files count toward its quota
    identity: CallerIdentity | None = None  # a caller's verified token


def caller_identity(request: web.Request) -> CallerIdentity | None:
    """The caller whose token authorizes this request, if it carries a valid caller token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    try:
        return request.app[CALLER_TOKENS].verify(token.strip())
    except TokenError:
        return None


async def who(request: web.Request, call: Call | None, *, any_call: bool = False) -> Uploader:
    """The caller (its token) or the staff member (its session) behind the request. A caller is refused a call that
    is not its own here, unless `any_call` (the caller of a call not live on this node is checked by its record)."""
    identity = caller_identity(request)
    if identity is not None:
        if (call is None and not any_call) or (call is not None and call.identity.subject != identity.subject):
            raise NotFound("no such call", code="unknown_call")
        return Uploader("caller", True, "caller", owner=f"{identity.issuer or ''}|{identity.subject}",
                        identity=identity)
    person = await principal(request)
    if not person.is_user:
        return Uploader(person.name, False, "integrator")
    return Uploader(person.name, False, person.role)


def live_call(request: web.Request) -> Call:
    call = request.app[SWITCHBOARD].call(request.match_info["call_id"])
    if call is None or call.state is CallState.ENDED:
        raise NotFound("no such call in progress", code="unknown_call")
    return call


def must_be_in_call(request: web.Request, call: Call, person: Uploader) -> None:
    if person.is_caller:
        return
    if not request.app[SWITCHBOARD].is_participant(call, person.name):
        raise Forbidden("you are not in this call", code="not_your_call")


def _in_live_call(request: web.Request, call: Call, person: Uploader) -> bool:
    if person.is_caller:
        return True  # who() checked the subject
    board = request.app[SWITCHBOARD]
    return board.is_participant(call, person.name) or person.name in (call.agent, call.transferred_from)


async def _in_recorded_call(request: web.Request, call_id: str, person: Uploader) -> bool:
    """A call not live on this node: its caller, an agent who handled it (its record), or an agent of this node in
    it now (homed on another node)."""
    if not person.is_caller:
        state = request.app[SWITCHBOARD].agent(person.name)
        if state is not None and call_id in (state.call_id, state.wrap_up_call) and state.status in IN_CALL:
            return True
    try:
        record = await request.app[CALLS].get(call_id)
    except NotFound:
        return False
    if person.is_caller:
        identity = person.identity
        recorded = record.get("identity") or {}
        return identity is not None and record.get("subject") == identity.subject \
            and recorded.get("issuer") == identity.issuer
    return person.name in handled_by(record)


async def may_read(request: web.Request, call_id: str, person: Uploader) -> bool:
    if not person.is_caller and person.role in STAFF | {"integrator"}:
        return True
    call = request.app[SWITCHBOARD].call(call_id)
    if call is not None and _in_live_call(request, call, person):
        return True
    if not request.app[ATTACHMENTS].shared:
        return False  # the files are this node's: a call it does not hold has none here
    return await _in_recorded_call(request, call_id, person)


async def _durable(request: web.Request, call: Call) -> None:
    await _durable_app(request.app, call)


async def _durable_app(app: web.Application, call: Call) -> None:
    """With shared files, the call's record (its agent, the file in its event log) is committed before the upload is
    answered, so that the agent may read the file through any node at once (the record is what other nodes check)
    and a crash of this node right after loses nothing."""
    if app[ATTACHMENTS].shared:
        with contextlib.suppress(RecordsUnavailable):
            await app[RECORDER].durable(call.id)


async def _body(request: web.Request) -> bytes:
    limit = request.app[ATTACHMENTS].max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise AttachmentError(f"files are at most {limit} bytes", code="attachment_too_large")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AttachmentError(f"files are at most {limit} bytes", code="attachment_too_large") from None


async def _home_elsewhere(request: web.Request) -> str | None:
    """The node that holds this call, when it is live on another node and files are shared (None otherwise: a call
    whose home died is answered here, as any call this node does not hold: 404 unknown_call)."""
    relay = request.app.get(CALL_RELAY)
    if relay is None or not request.app[ATTACHMENTS].shared:
        return None
    home = await relay.home_of_call(request.match_info["call_id"])
    return None if home is None or home.dead else home.node


def _by(person: Uploader) -> dict[str, str | None]:
    if person.is_caller and person.identity is not None:
        return {"caller_subject": person.identity.subject, "caller_issuer": person.identity.issuer}
    return {"agent": person.name}


@file_routes.post("/api/v1/calls/{call_id}/attachments")
async def upload(request: web.Request) -> web.Response:
    home = await _home_elsewhere(request)
    if home is not None:
        return await _upload_for(request, home)
    call = live_call(request)
    person = await who(request, call)
    must_be_in_call(request, call, person)
    data = await _body(request)
    attachment = await request.app[ATTACHMENTS].save(call.id, request.query.get("name", "file"), data, person.name,
                                                     owner=person.owner)
    _adopt(request.app, call, attachment, person.name)
    await _durable(request, call)
    return json_response(attachment.public(), status=201)


async def _upload_for(request: web.Request, home: str) -> web.Response:
    """An upload to a call homed on another node: kept in the shared store here, then adopted by the home."""
    call_id = request.match_info["call_id"]
    person = await who(request, None, any_call=True)
    if person.is_caller and not await _in_recorded_call(request, call_id, person):
        raise NotFound("no such call", code="unknown_call")
    data = await _body(request)
    store = request.app[ATTACHMENTS]
    attachment = await store.save(call_id, request.query.get("name", "file"), data, person.name, owner=person.owner)
    try:
        result = await request.app[CALL_RELAY].ask_home(home, "file", {"action": "adopt", "call_id": call_id,
                                                                        "attachment_id": attachment.id, **_by(person)})
    except BaseException:
        await asyncio.shield(store.discard(attachment))  # refused, or no answer: the call does not have it
        raise
    return json_response(result, status=201)


def _adopt(app: web.Application, call: Call, attachment: Attachment, by: str) -> None:
    app[SWITCHBOARD].file_added(call, attachment.id, "attachment", by=by, name=attachment.name, mime=attachment.mime,
                                size=attachment.size)


def _headers(attachment: Attachment) -> dict[str, str]:
    disposition = "inline" if attachment.mime.startswith("image/") else "attachment"
    return {
        "Content-Type": attachment.mime,
        "Content-Disposition": f'{disposition}; filename="{attachment.name}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    }


@file_routes.get("/api/v1/calls/{call_id}/attachments/{attachment_id}")
async def download(request: web.Request) -> web.StreamResponse:
    call_id = request.match_info["call_id"]
    store = request.app[ATTACHMENTS]
    call = request.app[SWITCHBOARD].call(call_id)
    person = await who(request, call, any_call=store.shared)
    if not await may_read(request, call_id, person):
        raise NotFound("no such attachment", code="unknown_attachment")
    attachment = await store.get(call_id, request.match_info["attachment_id"])
    path = store.local_path(attachment)
    if path is not None:
        return web.FileResponse(path, headers=_headers(attachment))
    pieces = store.chunks(attachment)
    first = await anext(pieces)  # NotFound here (deleted meanwhile) is still a 404, not a cut-off body
    response = web.StreamResponse(headers=_headers(attachment))
    response.content_length = attachment.size
    await response.prepare(request)
    await response.write(first)
    async for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return response


@file_routes.post("/api/v1/calls/{call_id}/snapshot")
async def take_snapshot(request: web.Request) -> web.Response:
    home = await _home_elsewhere(request)
    if home is not None:
        person = await who(request, None, any_call=True)
        if person.is_caller:
            raise Forbidden("snapshots are taken by the agent", code="forbidden")
        result = await request.app[CALL_RELAY].ask_home(home, "file", {"action": "snapshot",
                                                                        "call_id": request.match_info["call_id"],
                                                                        **_by(person)})
        return json_response(result, status=201)
    call = live_call(request)
    person = await who(request, call)
    if person.is_caller:
        raise Forbidden("snapshots are taken by the agent", code="forbidden")
    must_be_in_call(request, call, person)
    return json_response(await _snapshot(request.app, call, person.name), status=201)


async def _snapshot(app: web.Application, call: Call, by: str) -> dict[str, Any]:
    still = await app[SWITCHBOARD].plane.still(call.id)
    jpeg, width, height = still.jpeg, still.width, still.height
    attachment = await app[ATTACHMENTS].save(call.id, "snapshot.jpg", jpeg, by)
    app[SWITCHBOARD].file_added(call, attachment.id, "snapshot", by=by, width=width, height=height)
    await _durable_app(app, call)
    return attachment.public() | {"width": width, "height": height}


# -- requests of other nodes, at the call's home -----------------------------------------------------------------------
class FileRequest(BaseModel):
    """What another node asks of a call homed here (signaling/cluster_calls.py, op "file"): to adopt a file it
    stored for the call, or to take a snapshot. The asking node authenticated the person it names."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["adopt", "snapshot"]
    call_id: str = Field(pattern=r"^[0-9a-f]{1,64}$")
    attachment_id: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")
    agent: str | None = Field(None, min_length=1, max_length=128)
    caller_subject: str | None = Field(None, min_length=1, max_length=256)
    caller_issuer: str | None = Field(None, max_length=256)


def serve_file_request(app: web.Application) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The home's side of uploads and snapshots through another node (a forwarded request of kind "file",
    signaling/cluster_calls.py): the request's payload -> its result, or a GatewayError (a malformed request:
    invalid_message)."""
    async def serve(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            request = FileRequest.model_validate(payload)
        except ValidationError:
            log.warning("files.bad_request_from_node")
            raise BadRequest("a file request from another node was malformed", code="invalid_message") from None
        return await _execute(app, request)

    return serve


async def _execute(app: web.Application, request: FileRequest) -> dict[str, Any]:
    board = app[SWITCHBOARD]
    call = board.call(request.call_id)
    if call is None or call.state is CallState.ENDED:
        raise NotFound("no such call in progress", code="unknown_call")
    if request.caller_subject is not None:
        if request.action != "adopt":
            raise Forbidden("snapshots are taken by the agent", code="forbidden")
        if call.identity.subject != request.caller_subject or call.identity.issuer != request.caller_issuer:
            raise NotFound("no such call", code="unknown_call")
        by = "caller"
    elif request.agent is not None:
        if not board.is_participant(call, request.agent):
            raise Forbidden("you are not in this call", code="not_your_call")
        by = request.agent
    else:
        raise BadRequest("nobody named", code="invalid_message")
    if request.action == "snapshot":
        return await _snapshot(app, call, by)
    if request.attachment_id is None:
        raise BadRequest("no attachment named", code="invalid_message")
    attachment = await app[ATTACHMENTS].get(call.id, request.attachment_id)
    _adopt(app, call, attachment, by)
    await _durable_app(app, call)
    return attachment.public()
