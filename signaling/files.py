"""Files of a call: chat attachments and app screenshots (caller or staff), and snapshots of the caller's video.

    POST /api/v1/calls/{call_id}/attachments?name=receipt.png   raw body (the file); -> attachment JSON
    GET  /api/v1/calls/{call_id}/attachments/{attachment_id}    -> the file
    POST /api/v1/calls/{call_id}/snapshot                       -> attachment JSON of a JPEG still (staff only)

A caller authenticates with its caller token (Authorization: Bearer <JWT>) and reaches only its own calls; staff
with their session (cookie or token) and must be in the call (supervisors and admins may read any call's files).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.auth import TokenError
from gateway.calls import Call
from gateway.errors import Forbidden, NotFound
from gateway.models import CallState
from gateway.store.attachments import AttachmentError

from .access import principal
from .keys import ATTACHMENTS, CALLER_TOKENS, SWITCHBOARD
from .rest import json_response

file_routes = web.RouteTableDef()
STAFF_ALL = {"supervisor", "admin"}


@dataclass(frozen=True)
class Uploader:
    name: str  # "caller" or a username
    is_caller: bool
    role: str
    owner: str | None = None  # a caller's identity (issuer|subject): its files count toward its quota


async def who(request: web.Request, call: Call | None) -> Uploader:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.count(".") == 2:
        try:
            identity = request.app[CALLER_TOKENS].verify(token.strip())
        except TokenError:
            identity = None
        if identity is not None:
            if call is None or call.identity.subject != identity.subject:
                raise NotFound("no such call", code="unknown_call")
            return Uploader("caller", True, "caller", owner=f"{identity.issuer or ''}|{identity.subject}")
    person = await principal(request)
    if not person.is_user:
        return Uploader(person.name, False, "integrator")
    return Uploader(person.name, False, person.role)


def live_call(request: web.Request) -> Call:
    call = request.app[SWITCHBOARD].calls.get(request.match_info["call_id"])
    if call is None or call.state is CallState.ENDED:
        raise NotFound("no such call in progress", code="unknown_call")
    return call


def must_be_in_call(request: web.Request, call: Call, person: Uploader) -> None:
    if person.is_caller:
        return
    if not request.app[SWITCHBOARD].is_participant(call, person.name):
        raise Forbidden("you are not in this call", code="not_your_call")


@file_routes.post("/api/v1/calls/{call_id}/attachments")
async def upload(request: web.Request) -> web.Response:
    call = live_call(request)
    person = await who(request, call)
    must_be_in_call(request, call, person)
    limit = request.app[ATTACHMENTS].max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise AttachmentError(f"files are at most {limit} bytes", code="attachment_too_large")
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AttachmentError(f"files are at most {limit} bytes", code="attachment_too_large") from None
    attachment = await request.app[ATTACHMENTS].save(call.id, request.query.get("name", "file"), data, person.name,
                                                     owner=person.owner)
    call.attachments.add(attachment.id)
    call.log("attachment", id=attachment.id, by=person.name, name=attachment.name, mime=attachment.mime,
             size=attachment.size)
    return json_response(attachment.public(), status=201)


@file_routes.get("/api/v1/calls/{call_id}/attachments/{attachment_id}")
async def download(request: web.Request) -> web.StreamResponse:
    call = request.app[SWITCHBOARD].calls.get(request.match_info["call_id"])
    person = await who(request, call)
    if not person.is_caller and person.role not in STAFF_ALL | {"integrator"}:
        if call is None or not request.app[SWITCHBOARD].is_participant(call, person.name) \
                and call.agent != person.name and call.transferred_from != person.name:
            raise NotFound("no such attachment", code="unknown_attachment")
    attachment, path = request.app[ATTACHMENTS].get(request.match_info["call_id"], request.match_info["attachment_id"])
    disposition = "inline" if attachment.mime.startswith("image/") else "attachment"
    return web.FileResponse(path, headers={
        "Content-Type": attachment.mime,
        "Content-Disposition": f'{disposition}; filename="{attachment.name}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=3600",
    })


@file_routes.post("/api/v1/calls/{call_id}/snapshot")
async def take_snapshot(request: web.Request) -> web.Response:
    call = live_call(request)
    person = await who(request, call)
    if person.is_caller:
        raise Forbidden("snapshots are taken by the agent", code="forbidden")
    must_be_in_call(request, call, person)
    still = await request.app[SWITCHBOARD].plane.still(call.id)
    jpeg, width, height = still.jpeg, still.width, still.height
    attachment = await request.app[ATTACHMENTS].save(call.id, "snapshot.jpg", jpeg, person.name)
    call.attachments.add(attachment.id)
    call.log("snapshot", id=attachment.id, by=person.name, width=width, height=height)
    return json_response(attachment.public() | {"width": width, "height": height}, status=201)
