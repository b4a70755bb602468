"""Janus WebRTC Gateway (Debian's `janus` package) as a benchmark system, driven by bench.loadgen --janus.

Janus runs by hand with a config folder of our own (never as the system service): HTTP API only, bound to
127.0.0.1 on a free port; only the VideoRoom plugin; no STUN; no session timeout; low log level. Janus skips
loopback interfaces when gathering candidates, so it gathers on 127.0.0.2, which bench/netns.py puts on a dummy
(or ifb) device inside the benchmark's loopback-only namespace; the load generator's peers use 127.0.0.2 too.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.netns import BENCH_ADDRESS
from bench.run import cpus, free_port, pinned

LIB_DIRS = ["/usr/lib/*/janus", "/usr/lib/janus", "/usr/local/lib/janus", "/opt/janus/lib/janus"]


def janus_lib_dir() -> Path:
    for pattern in LIB_DIRS:
        for found in sorted(glob.glob(pattern)):
            if (Path(found) / "plugins" / "libjanus_videoroom.so").exists():
                return Path(found)
    raise RuntimeError("Janus's plugin folder (plugins/libjanus_videoroom.so) was not found: apt-get install janus")


def _others(folder: Path, keep: set[str]) -> str:
    """Every module in `folder` but `keep`, as a Janus `disable` list."""
    names = sorted(p.name for p in folder.glob("*.so") if p.name not in keep) if folder.is_dir() else []
    return ",".join(names)


def write_config(folder: Path, port: int, admin_key: str) -> None:
    lib = janus_lib_dir()
    (folder / "janus.jcfg").write_text(f"""\
general: {{
    configs_folder = "{folder}"
    plugins_folder = "{lib / 'plugins'}"
    transports_folder = "{lib / 'transports'}"
    events_folder = "{lib / 'events'}"
    loggers_folder = "{lib / 'loggers'}"
    log_to_stdout = true
    debug_level = 2
    debug_colors = false
    session_timeout = 0
    hide_dependencies = true
}}
certificates: {{
}}
media: {{
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{BENCH_ADDRESS}"
    ignore_mdns = true
}}
plugins: {{
    disable = "{_others(lib / 'plugins', {'libjanus_videoroom.so'})}"
}}
transports: {{
    disable = "{_others(lib / 'transports', {'libjanus_http.so'})}"
}}
loggers: {{
    disable = "{_others(lib / 'loggers', set())}"
}}
events: {{
    broadcast = false
    disable = "{_others(lib / 'events', set())}"
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""\
general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {port}
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text(f"""\
general: {{
    admin_key = "{admin_key}"
}}
""")


class JanusSystem:
    name = "janus"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder: Path | None = None
        self.url = ""
        self.admin_key = ""
        self.cpu_list = cpus()[:1]  # where Janus runs (bench.run --system-cpus)

    async def start(self, calls: int) -> int:
        janus = shutil.which("janus")
        if janus is None:
            raise RuntimeError("janus is not installed (apt-get install janus)")
        self.folder = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        port = free_port()
        self.admin_key = secrets.token_hex(12)
        write_config(self.folder, port, self.admin_key)
        log = open(self.folder / "janus.log", "wb")  # never a pipe nobody reads: Janus would block on a full one
        try:
            self.proc = subprocess.Popen(
                pinned(self.cpu_list, [janus, "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg")]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.url = f"http://127.0.0.1:{port}/janus"
        await self._wait_ready()
        return self.proc.pid

    async def _wait_ready(self) -> None:
        import aiohttp

        assert self.proc is not None
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"janus exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    async with http.post(self.url, json={"janus": "info", "transaction": "ready"}) as r:
                        if r.status == 200 and (await r.json(content_type=None)).get("janus") == "server_info":
                            return
                except (OSError, aiohttp.ClientError, ValueError):
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"janus did not answer info: {self.log_tail()}")

    def log_tail(self) -> str:
        if self.folder is None:
            return ""
        try:
            return (self.folder / "janus.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def loadgen_args(self) -> list[str]:
        return ["--janus", self.url, "--admin-key", self.admin_key, "--address", BENCH_ADDRESS]

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.folder is not None:
            if os.environ.get("BENCH_KEEP_JANUS_LOG"):
                print(f"janus config and log kept in {self.folder}", flush=True)
            else:
                shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
