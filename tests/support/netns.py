"""Change the test's own network namespace (loopback only, created by `unshare -rn`): extra addresses on lo and a
traffic shaper, so that tests can take a participant's address away or give it a slow link. Traffic stays on lo.

`tc ... netem` is not available in this kernel; `htb` is. There is no dummy link type either: addresses go on lo.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def _check_namespace() -> None:
    interfaces = {name for _, name in socket.if_nameindex()}
    if not interfaces <= {"lo"}:
        raise AssertionError(f"refusing to change the network of a namespace with {sorted(interfaces)}: these tests "
                             "change addresses and queueing disciplines, run them inside `unshare -rn`")


async def run(*command: str, check: bool = True) -> str:
    _check_namespace()
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    if check and process.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({process.returncode}): {err.decode().strip()}")
    return out.decode()


async def add_address(address: str) -> None:
    await run("ip", "addr", "add", f"{address}/32", "dev", "lo")


async def remove_address(address: str) -> None:
    await run("ip", "addr", "del", f"{address}/32", "dev", "lo")


@asynccontextmanager
async def extra_address(address: str) -> AsyncIterator[str]:
    """An address of this host (on lo) for one participant; removed afterwards if the test did not."""
    await add_address(address)
    try:
        yield address
    finally:
        await run("ip", "addr", "del", f"{address}/32", "dev", "lo", check=False)


@asynccontextmanager
async def shaped(destination: str, rate: str) -> AsyncIterator[None]:
    """Packets sent to `destination` leave at `rate` (htb, e.g. "300kbit"); everything else is not slowed."""
    await run("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1", "r2q", "1000")
    try:
        await run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit")
        await run("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:2", "htb", "rate", rate,
                  "ceil", rate)
        await run("tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                  "match", "ip", "dst", f"{destination}/32", "flowid", "1:2")
        yield
    finally:
        await unshape()


async def unshape() -> None:
    await run("tc", "qdisc", "del", "dev", "lo", "root", check=False)


@asynccontextmanager
async def firewall(*rules: list[str]) -> AsyncIterator[None]:
    """iptables OUTPUT rules of this namespace (each a list of match arguments, e.g. ["-p", "udp", "-s",
    "10.77.0.3"]) that DROP what they match; removed afterwards. Loopback traffic goes through OUTPUT once."""
    added: list[list[str]] = []
    try:
        for rule in rules:
            await run("iptables", "-w", "-A", "OUTPUT", *rule, "-j", "DROP")
            added.append(rule)
        yield
    finally:
        for rule in reversed(added):
            await run("iptables", "-w", "-D", "OUTPUT", *rule, "-j", "DROP", check=False)
