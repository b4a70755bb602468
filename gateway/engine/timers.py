"""One registry for the engine's timers (ring, round, consult, max wait, rejoin, wrap-up, hours, forget).

A timer is data, not a closure: a name `<group>:<kind>` (`call:<id>:ring`, `agent:<name>:wrap`, `hours`), a due
time and string arguments. What a timer of one kind does is a handler registered once (`on("ring", ...)`) by the
collaborator that owns it; its arguments name what it is about (a call id, an agent), so the handler looks up the
state as it is when the timer fires, never an object kept from when it was set.

Timers live in this process only, also with several nodes: each is about something in one node's memory (a call on
its home, an agent on its console's node), and when a node dies the node that takes that subject over re-creates the
promise from the deadline carried with it (docs/deployment.md, "Timers when a node dies"), not from a shared timer.

Setting a name again replaces the earlier timer, a timer that fires is forgotten before its handler runs, timers are
cancelled by name, by group (every timer of one call, without a walk over all timers) or by prefix, and all of them
at close. After a handler, `after` runs (the engine's settle step): a timer is a command like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

Handler = Callable[..., None]


def split_name(name: str) -> tuple[str, str]:
    """`call:<id>:ring` -> (`call:<id>`, `ring`); `hours` -> (``, `hours`)."""
    group, _, kind = name.rpartition(":")
    return group, kind


def check_set(name: str, args: tuple[object, ...], handlers: Mapping[str, Handler]) -> tuple[str, str]:
    """The (group, kind) of timer `name` about to be set with `args`, after the checks made before anything is set:
    its kind has a handler (KeyError) and its arguments are strings, names rather than objects (TypeError)."""
    group, kind = split_name(name)
    if kind not in handlers:
        raise KeyError(f"no handler for timers of kind {kind!r} ({name})")
    if not all(isinstance(arg, str) for arg in args):
        raise TypeError(f"timer arguments are strings (names, not objects): {name} {args!r}")
    return group, kind


class Timers:
    """The in-process timer registry (one node): asyncio's call_later per timer."""

    def __init__(self, after: Callable[[], None] | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._args: dict[str, tuple[str, ...]] = {}
        self._groups: dict[str, set[str]] = {}  # group -> names of its timers that are set
        self._after = after

    def on(self, kind: str, handler: Handler) -> None:
        """What a timer of this kind does when it fires: `handler(*args)` with the arguments given to set()."""
        if kind in self._handlers:
            raise ValueError(f"a handler for timers of kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def set(self, name: str, delay: float, *args: str) -> None:
        """Fire timer `name` in `delay` seconds (replacing a timer of the same name)."""
        group, _ = check_set(name, args, self._handlers)
        self.cancel(name)
        self._handles[name] = asyncio.get_running_loop().call_later(delay, self._fire, name)
        self._args[name] = args
        self._groups.setdefault(group, set()).add(name)

    def _forget(self, name: str) -> asyncio.TimerHandle | None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            self._args.pop(name, None)
            group = split_name(name)[0]
            names = self._groups.get(group)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._groups[group]
        return handle

    def _fire(self, name: str) -> None:
        args = self._args.get(name, ())
        self._forget(name)
        self._handlers[split_name(name)[1]](*args)
        if self._after is not None:
            self._after()

    def cancel(self, name: str) -> bool:
        """Cancel one timer; True if it was set."""
        handle = self._forget(name)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_group(self, group: str) -> int:
        """Cancel every timer named `<group>:<kind>` (e.g. every timer of one call); how many."""
        names = list(self._groups.get(group, ()))
        for name in names:
            self.cancel(name)
        return len(names)

    def cancel_prefix(self, prefix: str) -> int:
        """Cancel every timer whose name starts with `prefix`; how many."""
        names = [name for name in self._handles if name.startswith(prefix)]
        for name in names:
            self.cancel(name)
        return len(names)

    def pending(self, name: str) -> tuple[float, tuple[str, ...]] | None:
        """When timer `name` fires (loop time) and its arguments, or None if it is not set."""
        handle = self._handles.get(name)
        return None if handle is None else (handle.when(), self._args.get(name, ()))

    def __contains__(self, name: object) -> bool:
        return name in self._handles

    def __len__(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        """Cancel every timer (the engine is closing)."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._args.clear()
        self._groups.clear()
