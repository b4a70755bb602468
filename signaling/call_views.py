"""What the REST API shows of a live call — its events (`/history`) and its caller's earlier calls
(`/contact-history`) — read on the call's home: here when the request reached that node, or forwarded by another node
of the cluster (signaling/cluster_calls.py, `request` kind "call_view"), so that an agent whose console is on another
node than the call sees the same as on one node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from gateway.errors import BadRequest, NotFound
from gateway.models import CallState
from gateway.store.accounts import Role

from .access import STAFF
from .cluster_calls import CALL_RELAY
from .keys import CALLS, SWITCHBOARD
from .rest import json_response

MAX_PAGE = 200
MAX_CONTACT_HISTORY = 10


class ContactHistoryItem(BaseModel):
    call_id: str
    created_at: float
    call_type: str
    queue: str
    outcome: str | None
    agent: str | None
    talk_s: float | None
    disposition: str | None
    notes: str | None
    message: str | None


class ContactHistory(BaseModel):
    call_id: str
    subject: str
    calls: list[ContactHistoryItem] = Field(description=f"newest first, at most {MAX_CONTACT_HISTORY}")


class ViewAsker(BaseModel):
    """Who asks for a view of a live call, as the node that authenticated the request tells the call's home."""

    role: str = Field(max_length=32)
    name: str = Field(max_length=128)
    view: Literal["history", "contact"]
    call_id: str = Field(min_length=1, max_length=64)
    before: int | None = Field(None, ge=0)
    limit: int = Field(50, ge=1, le=MAX_PAGE)


def viewer(who: Any, view: str, call_id: str, **page: Any) -> ViewAsker:
    """The asker of a view, from the signed-in user (signaling/access.py Principal) and the path's call id."""
    if len(call_id) > 64:
        raise NotFound("no such call in progress", code="unknown_call")
    return ViewAsker(role=who.role, name=who.name, view=view, call_id=call_id, **page)


async def view_here(app: web.Application, asker: ViewAsker) -> dict[str, Any]:
    """The view, on the call's home: for the agent it rings at or who is in it (or consulted), and staff."""
    board = app[SWITCHBOARD]
    call = board.call(asker.call_id)
    involved = call is not None and (asker.name == call.offered_to or board.is_participant(call, asker.name)
                                     or asker.name == call.consult)
    if asker.view == "history":
        if call is None or (asker.role == Role.AGENT.value and not involved):
            raise NotFound("no such call in progress; ended calls are in GET /api/v1/calls/{call_id}",
                           code="unknown_call")
        end = min(asker.before if asker.before is not None else len(call.events), len(call.events))
        start = max(0, end - asker.limit)
        return {"call_id": call.id, "events": call.history(start, end - start), "total": len(call.events),
                "next_before": start if start > 0 else None}
    if call is None or call.state is CallState.ENDED or (asker.role not in STAFF and not involved):
        raise NotFound("no such call ringing at you or in progress with you", code="unknown_call")
    identity = call.identity
    rows = await app[CALLS].contact_history(identity.subject, identity.issuer, call.id, MAX_CONTACT_HISTORY)
    calls = [ContactHistoryItem(call_id=r["id"], created_at=r["created_at"], call_type=r["call_type"], queue=r["queue"],
                                outcome=r["outcome"], agent=r["agent"], talk_s=r["talk_s"],
                                disposition=r["disposition"], notes=r["notes"], message=r["message"]) for r in rows]
    return ContactHistory(call_id=call.id, subject=identity.subject, calls=calls).model_dump()


async def call_view(request: web.Request, asker: ViewAsker) -> web.Response:
    """Answer here if the call is homed on this node, else at its home (over the bus), with the same answers."""
    relay = request.app.get(CALL_RELAY)
    home = await relay.live_home(asker.call_id) if relay is not None else None
    if home is not None:
        return json_response(await relay.ask_home(home, "call_view", asker.model_dump()))
    return json_response(await view_here(request.app, asker))


def serve_forwarded_view(app: web.Application) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The home's side of a view forwarded by another node (signaling/cluster_calls.py)."""
    async def serve(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            asker = ViewAsker.model_validate(payload)
        except ValidationError:
            raise BadRequest("a malformed forwarded call view request", code="bad_request") from None
        return await view_here(app, asker)
    return serve
