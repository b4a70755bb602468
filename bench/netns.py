"""Run a script inside a fresh loopback-only network namespace, so no packet can leave the machine."""

from __future__ import annotations

import os
import shutil
import socket
import sys


def loopback_only() -> bool:
    return {name for _, name in socket.if_nameindex()} <= {"lo"}


def ensure_loopback_namespace() -> None:
    """Re-exec the current command under `unshare -rn` unless already in a loopback-only namespace."""
    if loopback_only():
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("unshare (util-linux) is needed to isolate the benchmark's network")
    args = [sys.executable, *sys.argv]
    script = 'ip link set lo up && exec "$@"'
    os.execv(unshare, [unshare, "-rn", "sh", "-c", script, "sh", *args])
