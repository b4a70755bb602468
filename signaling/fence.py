"""A node that finds it was declared dead by the others while it was in fact still running stops at once.

That happens when a process is frozen (SIGSTOP, a debugger, a very long pause of the machine or its VM) or cut off
from Redis and the database for longer than `node_dead_after_s` (the node registry) or `node_lease_s` (its records'
lease). Meanwhile another node took its callers over: waiting callers were restored in the shared line with their
places, callback requests re-queued, connected calls closed as interrupted and their callers put back first in line.
What the node still holds in memory is therefore stale; acting on it would overwrite records another node owns now,
put callers in line twice or send webhooks for calls it no longer has. So the node is *fenced*: its records writer
refuses every write once the database says it was reaped (gateway/store/nodes.py `fence`, checked inside each write
transaction), its registry beat refuses to bring it back (gateway/store/redis_nodes.py), and either of them ends the
process here, at once, with exit status FENCED_EXIT and nothing more written (no drain, no hand-over: there is
nothing of its own left to hand over). Its clients reconnect to the other nodes with their resume tokens. Run nodes
under a supervisor that restarts them (systemd `Restart=always`, a Kubernetes Deployment): the restarted process is
a new node instance.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import structlog

log = structlog.get_logger("callin.fence")

FENCED_EXIT = 75  # EX_TEMPFAIL: start again (as a new node instance)


def stop_now(reason: str, found_by: str) -> NoReturn:
    """End the process at once (from any thread): `found_by` is "records" (the database) or "registry" (Redis)."""
    log.critical("node.fenced", found_by=found_by, reason=reason, exit_status=FENCED_EXIT,
                 hint="this node was found dead while it was silent (frozen, paused or cut off) and its calls were "
                      "taken over by another node; it stops without writing anything more and should be restarted")
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: exit anyway
            pass
    os._exit(FENCED_EXIT)
