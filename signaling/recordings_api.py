"""REST for call recordings: control of a live call's recording (start, pause, resume: a payment system pauses
while a card number is read out), and access to the recordings at rest (metadata, download with Range, the audit
log). Recordings are for supervisors, admins and integrator API keys; every read of one is written to the audit
log (who, when, which, from where, which bytes) before it is answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from gateway.errors import GatewayError, NotFound
from gateway.store.accounts import Role

from .access import Principal, require
from .api import Query, parse_query
from .clientaddr import client_address, networks
from .cluster_calls import CALL_RELAY
from .recording_control import STAFF, Asker, recording_here
from .keys import RECORDINGS, SETTINGS, SWITCHBOARD
from .rest import json_response

recording_routes = web.RouteTableDef()

MAX_PAGE = 200


class RecordingGone(GatewayError):
    """The recording's file was deleted (retention); its metadata is kept."""

    code = "recording_deleted"
    status = 410


class RecordingState(BaseModel):
    call_id: str
    state: str = Field(description="off, asking, pending, recording, paused, declined, stopped, failed")
    policy: str = Field(description="the queue's policy: off, on_demand, always")
    consent: str = Field(description="notify or ask")
    paused_spans: list[list[float | None]] = Field(description="[start, end] UNIX seconds; end null while paused")


class RecordingMeta(BaseModel):
    id: str = Field(description="the recording's id: its call's id (one file per call)")
    call_id: str
    container: str = Field(description="webm (VP8 + Opus) or mkv (H264 + Opus)")
    queue: str | None
    agent: str | None
    started_at: float
    duration_s: float
    size_bytes: int
    sha256: str = Field(description="SHA-256 of the file, hex")
    tracks: list[dict[str, Any]] = Field(description='{"participant", "kind", "codec"} per track')
    paused_spans: list[list[float]] = Field(description="[start_s, end_s] from the file's start")
    created_at: float
    deleted_at: float | None = Field(description="set once retention deleted the file")
    deleted_reason: str | None
    download_url: str


class RecordingPage(BaseModel):
    recordings: list[RecordingMeta]
    next_before: float | None = Field(description="pass as `before` for the next (older) page")


class RecordingListQuery(Query):
    since: float | None = Field(None, description="started at or after (UNIX seconds)")
    until: float | None = Field(None, description="started before (UNIX seconds)")
    queue: str | None = Field(None, max_length=64)
    before: float | None = Field(None, description="started before this (the previous page's next_before)")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


def download_url(base_url: str) -> Callable[[str], str]:
    return lambda call_id: f"{base_url}/api/v1/recordings/{call_id}/file"


# ------------------------------------------------------------------------------------------- live control
async def _control(request: web.Request, action: str) -> web.Response:
    """Here if the call is homed on this node, else at its home (over the bus), with the same answers."""
    who = await require(request, api_key=True)
    board = request.app[SWITCHBOARD]
    call_id = request.match_info["call_id"]
    if len(call_id) > 64:
        raise NotFound(f"no call {call_id[:64]}… in progress", code="unknown_call")
    asker = Asker(user=who.is_user, role=who.role, name=who.name, action=action, call_id=call_id)
    relay = request.app.get(CALL_RELAY)
    home = await relay.live_home(asker.call_id) if relay is not None else None
    if home is not None:
        return json_response(await relay.ask_home(home, "recording", asker.model_dump()))
    return json_response(recording_here(board, asker))


@recording_routes.post("/api/v1/calls/{call_id}/recording/start")
async def recording_start(request: web.Request) -> web.Response:
    return await _control(request, "start")


@recording_routes.post("/api/v1/calls/{call_id}/recording/pause")
async def recording_pause(request: web.Request) -> web.Response:
    return await _control(request, "pause")


@recording_routes.post("/api/v1/calls/{call_id}/recording/resume")
async def recording_resume(request: web.Request) -> web.Response:
    return await _control(request, "resume")


@recording_routes.get("/api/v1/calls/{call_id}/recording")
async def recording_state(request: web.Request) -> web.Response:
    return await _control(request, "state")


# ------------------------------------------------------------------------------------------- at rest
async def _staff(request: web.Request) -> Principal:
    return await require(request, roles=STAFF, api_key=True)


def _with_url(request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "download_url": download_url(request.app[SETTINGS].base_url)(record["call_id"])}


async def _audit(request: web.Request, who: Principal, call_id: str, action: str, status: int) -> None:
    settings = request.app[SETTINGS]
    await request.app[RECORDINGS].log_access(
        call_id, principal=who.name if who.is_user else f"key:{who.name}", role=who.role, action=action,
        address=client_address(request, networks(settings.trusted_proxies)),
        byte_range=request.headers.get("Range"), status=status)


@recording_routes.get("/api/v1/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    await _staff(request)
    q: RecordingListQuery = parse_query(request, RecordingListQuery)
    rows = await request.app[RECORDINGS].list(since=q.since, until=q.until, queue=q.queue, limit=q.limit,
                                              before=q.before)
    page = [_with_url(request, r) for r in rows]
    return json_response({"recordings": page, "next_before": rows[-1]["started_at"] if len(rows) == q.limit else None})


@recording_routes.get("/api/v1/recordings/{call_id}")
async def get_recording(request: web.Request) -> web.Response:
    who = await _staff(request)
    record = await request.app[RECORDINGS].get(request.match_info["call_id"])
    await _audit(request, who, record["call_id"], "metadata", 200)
    return json_response(_with_url(request, record))


@recording_routes.get("/api/v1/recordings/{call_id}/file")
async def download_recording(request: web.Request) -> web.StreamResponse:
    """The file, with Range support (206 Partial Content) for players and resumed downloads."""
    who = await _staff(request)
    catalog = request.app[RECORDINGS]
    key, record = await catalog.key(request.match_info["call_id"])
    path = request.app[SWITCHBOARD].recording_storage.local_file(key)
    if record["deleted_at"] is not None or path is None:
        await _audit(request, who, record["call_id"], "download", 410)
        raise RecordingGone("the recording's file was deleted" + (
            f" ({record['deleted_reason']})" if record["deleted_reason"] else "") + "; its metadata is kept")
    await _audit(request, who, record["call_id"], "download", 206 if "Range" in request.headers else 200)
    return web.FileResponse(path, headers={"Cache-Control": "private, no-store"})


@recording_routes.get("/api/v1/recordings/{call_id}/access")
async def recording_access(request: web.Request) -> web.Response:
    """The audit log of one recording, newest first (admins)."""
    await require(request, roles={Role.ADMIN.value}, api_key=True)
    call_id = request.match_info["call_id"]
    await request.app[RECORDINGS].get(call_id)  # unknown_recording
    return json_response({"call_id": call_id, "access": await request.app[RECORDINGS].access_log(call_id)})


def openapi_paths(op: Callable[..., dict[str, Any]]) -> tuple[dict[str, Any], list[type[BaseModel]]]:
    control = ("the call's agent, supervisors, admins, API keys; the call must be in progress, on any node of a "
               "cluster: another node forwards the request to the call's home (503 node_unreachable if it does not "
               "answer)")
    download = op("The recording's file (webm/mkv), with Range support: 206 Partial Content (supervisors, admins, "
                  "API keys; audited)", path_param="call_id")
    download["responses"]["206"] = {"description": "the requested byte range"}
    download["responses"]["410"] = {"description": "deleted by retention (recording_deleted)"}
    download["responses"]["200"] = {"description": "the whole file",
                                    "content": {"video/webm": {}, "video/x-matroska": {}}}
    paths = {
        "/api/v1/calls/{call_id}/recording": {"get": op(f"The call's recording state ({control})",
                                                        path_param="call_id", response=RecordingState)},
        "/api/v1/calls/{call_id}/recording/start": {"post": op(
            f"Start recording (queues with policy on_demand; the caller is told, or asked first) ({control})",
            path_param="call_id", response=RecordingState)},
        "/api/v1/calls/{call_id}/recording/pause": {"post": op(
            f"Pause the recording: nothing is written until resumed, the span is marked ({control})",
            path_param="call_id", response=RecordingState)},
        "/api/v1/calls/{call_id}/recording/resume": {"post": op(f"Resume a paused recording ({control})",
                                                                path_param="call_id", response=RecordingState)},
        "/api/v1/recordings": {"get": op("Recordings, newest first (supervisors, admins, API keys)",
                                         query=RecordingListQuery, response=RecordingPage)},
        "/api/v1/recordings/{call_id}": {"get": op("One recording's metadata: duration, size, SHA-256, tracks, "
                                                   "paused spans (supervisors, admins, API keys; audited)",
                                                   path_param="call_id", response=RecordingMeta)},
        "/api/v1/recordings/{call_id}/file": {"get": download},
        "/api/v1/recordings/{call_id}/access": {"get": op("Who read the recording, when, from where (admins, API "
                                                          "keys)", path_param="call_id")},
    }
    return paths, [RecordingState, RecordingMeta, RecordingPage, RecordingListQuery]
