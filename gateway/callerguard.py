"""Limits per caller identity and per source address, so one token (or one host) cannot fill the queue.

- sessions: at most `caller_max_sessions_per_subject` live sessions per identity (issuer + subject) and
  `caller_max_sessions_per_address` per source address. A hello over the limit first evicts a session of that
  identity (or address) whose socket is gone: one without a live call before one with a call, the oldest first;
  only if every one is connected is it refused (too_many_sessions).
- calls: at most `caller_max_calls_per_subject` live calls per identity. A new call.start over the limit REPLACES
  the oldest call of that identity that is still waiting (queued or ringing, not a kept callback): the old call ends
  with reason `replaced` and the new call takes its place in line. A connected call or a kept callback is never
  replaced: then the new call is refused (call_in_progress / callback_pending).
- call starts: at most `caller_call_starts_per_minute` per identity and `caller_call_starts_per_address_per_minute`
  per address (rate_limited, retryable, with the wait in the reason).
- unknown resume tokens: each one costs a records query (is its call being restored after a restart?), so one
  address may send `caller_unknown_resume_burst` at once, then `caller_unknown_resumes_per_address_per_minute`
  (rate_limited, before the query).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable

from .calls import Call
from .clock import Clock
from .config import Settings
from .errors import InvalidState, RateLimited
from .limits import SlidingWindow, TokenBucket
from .models import CallerIdentity, CallState
from .sessions import Session

SubjectKey = tuple[str | None, str]


def subject_key(identity: CallerIdentity) -> SubjectKey:
    return identity.issuer, identity.subject


def _wait(seconds: float) -> str:
    return f"try again in {max(1, math.ceil(seconds))} s"


class CallerGuard:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self._starts_by_subject = SlidingWindow(settings.caller_call_starts_per_minute, 60.0, clock)
        self._starts_by_address = SlidingWindow(settings.caller_call_starts_per_address_per_minute, 60.0, clock)
        self._unknown_resumes = TokenBucket(settings.caller_unknown_resume_burst,
                                            settings.caller_unknown_resumes_per_address_per_minute, clock)

    # -- sessions
    def session_to_evict(self, same_caller: Collection[Session], same_address: Collection[Session] | None,
                         holds_call: Callable[[Session], bool] = lambda _s: False) -> list[Session]:
        """Before a new caller session: the detached sessions to drop to stay within the limits (those without a
        live call first, then the oldest), or RateLimited when the limit is held by connected sessions only.
        `same_caller` / `same_address`: the live caller sessions of this identity / address, oldest first.
        Changes nothing."""
        evict: list[Session] = []
        groups = [(same_caller, self.settings.caller_max_sessions_per_subject, "this caller")]
        if same_address is not None:
            groups.append((same_address, self.settings.caller_max_sessions_per_address, "this address"))
        for group, limit, who in groups:
            if len(group) + 1 <= limit:  # within the limit however many have ended: nothing to walk
                continue
            members = [s for s in group if not s.ended and s not in evict]
            excess = len(members) + 1 - limit
            if excess <= 0:
                continue
            # oldest first (the registry keeps creation order), those still holding a call's place last
            detached = sorted((s for s in members if not s.attached), key=holds_call)
            if len(detached) < excess:
                raise RateLimited(f"{who} has {len(members)} open sessions, the most allowed is {limit}; "
                                  "close one (bye) or resume it with its resume token", code="too_many_sessions")
            evict.extend(detached[:excess])
        return evict

    # -- calls
    def check_start(self, session: Session, live_calls: Iterable[Call]) -> Call | None:
        """Before a new call from `session`: the call it replaces (or None), or an error. Changes nothing."""
        identity: CallerIdentity = session.principal
        retry = self._starts_by_subject.check(subject_key(identity))
        if retry is not None:
            raise RateLimited(f"at most {self.settings.caller_call_starts_per_minute} calls a minute per caller; "
                              + _wait(retry))
        if session.address is not None:
            retry = self._starts_by_address.check(session.address)
            if retry is not None:
                raise RateLimited(f"at most {self.settings.caller_call_starts_per_address_per_minute} calls a minute "
                                  "from one address; " + _wait(retry))
        key = subject_key(identity)
        mine = sorted((c for c in live_calls if subject_key(c.identity) == key and c.state is not CallState.ENDED),
                      key=lambda c: c.created_at)
        limit = self.settings.caller_max_calls_per_subject
        if len(mine) < limit:
            return None
        replaceable = [c for c in mine if c.waiting and not c.callback]
        if replaceable:
            return replaceable[0]
        if any(c.callback for c in mine):
            raise InvalidState("a callback is kept for you: rejoin it (call.rejoin) when told callback.ready",
                               code="callback_pending")
        raise InvalidState("you are already in a call on another connection; hang up there first",
                           code="call_in_progress")

    def started(self, session: Session) -> None:
        self._starts_by_subject.hit(subject_key(session.principal))
        if session.address is not None:
            self._starts_by_address.hit(session.address)

    # -- resumes
    def unknown_resume(self, address: str | None) -> None:
        """A hello from `address` carries a resume token this node does not know: counted, or RateLimited (before
        anything is looked up) when that address sent too many. No address (not an IP peer): no per-address limit."""
        if address is None:
            return
        retry = self._unknown_resumes.check(address)
        if retry is not None:
            raise RateLimited(f"too many unknown resume tokens from one address (at most "
                              f"{self.settings.caller_unknown_resumes_per_address_per_minute} a minute); "
                              + _wait(retry))
        self._unknown_resumes.hit(address)
