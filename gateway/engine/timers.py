"""One registry for the engine's timers (ring, round, consult, max wait, rejoin, wrap-up, hours, forget).

Each timer has a name, `<group>:<kind>` (`call:<id>:ring`, `agent:<name>:wrap`, `hours`): setting a name again
replaces the earlier timer, a timer that fires is forgotten before its callback runs, timers are cancelled by name,
by group (every timer of one call, without a walk over all timers) or by prefix, and all of them at close. After a timer's callback, `after` runs (the engine's settle step): a timer is a command like any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Timers:
    def __init__(self, after: Callable[[], None] | None = None) -> None:
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._groups: dict[str, set[str]] = {}  # group -> names of its timers that are set
        self._after = after

    @staticmethod
    def _group(name: str) -> str:
        return name.rpartition(":")[0]

    def set(self, name: str, delay: float, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` in `delay` seconds (replacing a timer of the same name)."""
        self.cancel(name)
        self._handles[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, callback, args)
        self._groups.setdefault(self._group(name), set()).add(name)

    def _forget(self, name: str) -> asyncio.TimerHandle | None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            group = self._group(name)
            names = self._groups.get(group)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._groups[group]
        return handle

    def _fire(self, name: str, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._forget(name)
        callback(*args)
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

    def __contains__(self, name: object) -> bool:
        return name in self._handles

    def __len__(self) -> int:
        return len(self._handles)

    def close(self) -> None:
        """Cancel every timer (the engine is closing)."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._groups.clear()
