"""Control of a live call's recording through the REST API, run on the call's home: here when the request reached
that node, or forwarded by another node of the cluster (signaling/cluster_calls.py, `request` kind "recording")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from gateway.errors import BadRequest, Forbidden
from gateway.switchboard import Switchboard

from .access import STAFF


class Asker(BaseModel):
    """Who asks about a live call's recording, as the node that authenticated the request tells the call's home."""

    user: bool
    role: str = Field(max_length=32)
    name: str = Field(max_length=128)
    action: str = Field(pattern="^(start|pause|resume|state)$")
    call_id: str = Field(min_length=1, max_length=64)


def recording_here(board: Switchboard, asker: Asker) -> dict[str, Any]:
    """Run a recording request on the call's home: the call's agent (a user), supervisors, admins and API keys."""
    if asker.user and asker.role not in STAFF:
        call = board.recordings.live_call(asker.call_id)
        if call.agent != asker.name:
            raise Forbidden("only the call's agent, supervisors and admins control or see its recording",
                            code="not_your_call")
    if asker.action == "state":
        return board.recording_state(asker.call_id)
    return board.recording_by_api(asker.call_id, asker.action)


def serve_forwarded(board: Switchboard) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The home's side of a recording request forwarded by another node (signaling/cluster_calls.py)."""
    def serve(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            asker = Asker.model_validate(payload)
        except ValidationError:
            raise BadRequest("a malformed forwarded recording request", code="bad_request") from None
        return recording_here(board, asker)
    return serve


