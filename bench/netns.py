"""Run a script inside a fresh loopback-only network namespace, so no packet can leave the machine.

Inside it, one extra device holds 127.0.0.2/32 (`BENCH_ADDRESS`): Janus (libnice) skips loopback interfaces when
gathering ICE candidates, so it needs an address on a non-loopback device. The device is a dummy (or, where the
kernel has no dummy driver, an ifb) link with no route anywhere: 127.0.0.2 is a local address and its traffic is
delivered through lo, so it still never leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

BENCH_DEVICE = "benchdev0"
BENCH_ADDRESS = "127.0.0.2"


def interfaces() -> set[str]:
    return {name for _, name in socket.if_nameindex()}


def loopback_only() -> bool:
    return interfaces() <= {"lo", BENCH_DEVICE}


def ensure_loopback_namespace() -> None:
    """Re-exec the current command under `unshare -rn` unless already in a loopback-only namespace; there, make
    sure the bench device with 127.0.0.2 exists."""
    if loopback_only():
        ensure_bench_address()
        return
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("unshare (util-linux) is needed to isolate the benchmark's network")
    args = [sys.executable, *sys.argv]
    script = 'ip link set lo up && exec "$@"'
    os.execv(unshare, [unshare, "-rn", "sh", "-c", script, "sh", *args])


def ensure_bench_address() -> bool:
    """Add `BENCH_DEVICE` holding `BENCH_ADDRESS` (dummy, else ifb). Only ever called inside a loopback-only
    namespace. Returns whether the address is there; without it only Janus cannot run."""
    if BENCH_DEVICE in interfaces():
        return True
    ip = shutil.which("ip")
    if ip is None:
        print("netns: `ip` (iproute2) not found: no 127.0.0.2 device, Janus cannot gather candidates",
              file=sys.stderr)
        return False
    errors = []
    for kind in ("dummy", "ifb"):
        added = subprocess.run([ip, "link", "add", BENCH_DEVICE, "type", kind], capture_output=True, text=True)
        if added.returncode == 0:
            break
        errors.append(f"{kind}: {added.stderr.strip()}")
    else:
        print(f"netns: could not add a dummy or ifb device ({'; '.join(errors)}): no 127.0.0.2 device, Janus "
              "cannot gather candidates", file=sys.stderr)
        return False
    subprocess.run([ip, "addr", "add", f"{BENCH_ADDRESS}/32", "dev", BENCH_DEVICE], check=True)
    subprocess.run([ip, "link", "set", BENCH_DEVICE, "up"], check=True)
    return True
