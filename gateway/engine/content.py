"""Content and chat in a connected call: links, images and text cards pushed to the caller's screen (and what the
caller did with them), chat lines from anyone in the call, and the check that an attachment belongs to the call.
And what the caller's device reports about itself during the call: its video source and its location."""

from __future__ import annotations

import secrets
from typing import Any

from ..calls import Call
from ..chatguard import ChatGuard
from ..errors import Forbidden, InvalidState, NotFound
from ..events import CallLocated, ChatMessage, ContentPushed, ContentStatus, MediaSourceChanged
from ..models import CallState, Location, now
from ..sessions import Session
from .core import Core
from .views import Views

CONTENT_ORDER = ["sent", "seen", "opened", "dismissed"]


class Content:
    def __init__(self, core: Core, views: Views) -> None:
        self.core = core
        self.views = views

    def _staff_in_call(self, session: Session, call_id: str) -> Call:
        state, call = self.views.agent_and_call(session, call_id)
        if not self.views.is_participant(call, state.username):
            raise Forbidden("you are not in this call", code="not_your_call")
        if call.state is not CallState.CONNECTED:
            raise InvalidState(f"the call is {call.state.value}, not connected", code="not_connected")
        return call

    @staticmethod
    def check_attachment(call: Call, attachment: dict[str, Any] | None) -> None:
        if attachment is not None and attachment["id"] not in call.attachments:
            raise NotFound("no such attachment in this call; upload it first", code="unknown_attachment")

    def file_added(self, call: Call, attachment_id: str, kind: str, **detail: Any) -> None:
        """A file now belongs to the call (an upload, a snapshot): chat and pushes may name it, and its record's event
        log says so (handed to the record writer at once, like every change of the call)."""
        call.attachments.add(attachment_id)
        call.log(kind, id=attachment_id, **detail)
        self.core.emit("call.updated", call)

    def push(self, session: Session, call_id: str, content: dict[str, Any]) -> dict[str, Any]:
        """Show a link, an image or a text card on the caller's screen; the caller reports seen/opened."""
        call = self._staff_in_call(session, call_id)
        self.check_attachment(call, content.get("attachment"))
        item = {**content, "content_id": secrets.token_hex(6), "by": session.principal.username, "at": now(),
                "status": "sent"}
        call.pushed[item["content_id"]] = item
        call.log("content_pushed", by=item["by"], content_kind=item["kind"], content_id=item["content_id"],
                 title=item.get("title"), url=item.get("url"))
        self.core.to_caller(call, ContentPushed(call_id=call.id, content=item))
        self.core.emit("call.updated", call)
        return item

    def status(self, session: Session, call_id: str | None, content_id: str, status: str) -> None:
        call = self.views.caller_call(session, call_id)
        item = call.pushed.get(content_id)
        if item is None:
            raise NotFound("no such pushed content", code="unknown_content")
        if CONTENT_ORDER.index(status) <= CONTENT_ORDER.index(item["status"]) and status != "dismissed":
            return  # already reported (seen after opened says nothing new)
        item["status"] = status
        call.log("content_" + status, content_id=content_id)
        self.core.to_agent(item["by"], ContentStatus(call_id=call.id, content_id=content_id, status=status))
        self.core.emit("call.updated", call)

    def _tell_card_viewers(self, call: Call, event: MediaSourceChanged | CallLocated) -> None:
        """What the caller's device reported, to whoever sees the call's card now: everyone in a connected call, or
        the agent it is offered to (offered with the card of a moment ago); then the call is updated."""
        if call.state is CallState.CONNECTED:
            for username in {call.agent, call.consult, *call.supervisors} - {None}:
                self.core.to_agent(username, event)
        elif call.state is CallState.OFFERED and call.offered_to:
            self.core.to_agent(call.offered_to, event)
        self.core.emit("call.updated", call)

    def media_source(self, session: Session, call_id: str | None, source: str, reason: str | None = None) -> None:
        """The caller switched what its video sends (camera, screen, none; with none, maybe why: its camera is
        blocked or unavailable): its call's staff are told, and an agent it rings at."""
        call = self.views.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        reason = reason if source == "none" else None
        if call.media_source == source and call.media_source_reason == reason:
            return  # nothing new
        call.media_source = source
        call.media_source_reason = reason
        call.log("media_source", source=source, **({"reason": reason} if reason else {}))
        event = MediaSourceChanged(call_id=call.id, source=source, reason=reason)
        self._tell_card_viewers(call, event)

    def location(self, session: Session, call_id: str | None, location: Location) -> Call:
        """The caller's device reported its position after call.start (the browser asked for consent meanwhile):
        kept on the call (its card and record), and told to whoever sees the card now. Once per call: a call that
        has a location (from call.start or an earlier call.location) keeps it."""
        call = self.views.caller_call(session, call_id)
        if call.state is CallState.ENDED:
            raise InvalidState("the call has ended", code="call_ended")
        if call.location is not None:
            raise InvalidState("this call has a location already; it is sent once per call",
                               code="location_already_set")
        call.location = location
        call.log("location", accuracy_m=location.accuracy_m)
        event = CallLocated(call_id=call.id, location=location.model_dump(mode="json"))
        self._tell_card_viewers(call, event)
        return call

    def chat(self, session: Session, call_id: str | None, text: str | None,
             attachment: dict[str, Any] | None) -> dict[str, Any]:
        """A chat line (and/or a file) from the caller or from someone in the call, to everyone in it."""
        settings = self.core.settings
        if session.role == "caller":
            call = self.views.caller_call(session, call_id)
            if call.state is CallState.ENDED:
                raise InvalidState("the call has ended", code="call_ended")
            sender = {"role": "caller", "name": call.identity.name or "Caller"}
        else:
            call = self._staff_in_call(session, call_id or "")
            account = session.principal
            sender = {"role": "supervisor" if account.username in call.supervisors else "agent",
                      "name": account.display_name, "username": account.username}
        if text is not None and len(text) > settings.max_chat_chars:
            raise InvalidState(f"a chat line has at most {settings.max_chat_chars} characters", code="chat_too_long")
        self.check_attachment(call, attachment)
        if call.chat_guard is None:
            call.chat_guard = ChatGuard(settings, self.core.clock)
        sender_key = sender.get("username", "caller")
        call.chat_guard.check(sender_key)
        call.chat_guard.sent(sender_key)
        message = {"message_id": secrets.token_hex(6), "from": sender, "text": text, "attachment": attachment,
                   "at": now()}
        call.log("chat", **{"from": sender["role"], "text": text,
                            "attachment": attachment["id"] if attachment else None})
        event = ChatMessage(call_id=call.id, message=message)
        self.core.to_caller(call, event)
        for username in {call.agent, call.consult, *call.supervisors} - {None}:
            self.core.to_agent(username, event)
        self.core.emit("call.updated", call)
        return message
