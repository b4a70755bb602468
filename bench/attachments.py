"""What keeping the files of calls in PostgreSQL (DatabaseAttachments, readable from every node) costs against the
local disk (DiskAttachments, one node), measured in the same run on this machine: the store's save (checks, quota
sums, the write) and a full read (every chunk, as a download streams it), per file size, interleaved.

    PYTHONPATH=. unshare -rn sh -c 'ip link set lo up && exec python -m bench.attachments'

PostgreSQL is the machine's (Unix socket /var/run/postgresql, as in the tests): a database is created for the run
and dropped after it. Text files are used (no picture scan: the same work on both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from gateway.store.attachments import AttachmentLimits, AttachmentStore, DatabaseAttachments, DiskAttachments
from gateway.store.db import Database
from tests.support.databases import create_pg_database, drop_pg_database, pg_url

SIZES = [100 * 1024, 1024 * 1024, 5 * 1024 * 1024]


async def measure(store: AttachmentStore, size: int, call: int) -> tuple[float, float]:
    data = (b"callin " * (size // 7 + 1))[:size]
    started = time.perf_counter()
    saved = await store.save(f"{call:x}", "bench.txt", data, "alice")
    wrote = time.perf_counter()
    read = await store.read(saved)
    done = time.perf_counter()
    assert read == data
    return (wrote - started) * 1000, (done - wrote) * 1000


async def run(rounds: int) -> None:
    name = create_pg_database()
    db = Database(pg_url(name))
    try:
        await db.upgrade()
        limits = AttachmentLimits(max_bytes=5 * 1024 * 1024, per_call_bytes=1 << 40, per_call_count=1_000_000,
                                  per_owner_bytes=1 << 40, total_bytes=1 << 40, retention_s=3600)
        with tempfile.TemporaryDirectory() as folder:
            stores = {"disk": AttachmentStore(DiskAttachments(Path(folder)), limits),
                      "database": AttachmentStore(DatabaseAttachments(db), limits)}
            for store in stores.values():
                await store.open()
            print(f"{'size':>8} | {'disk save / read ms':>20} | {'database save / read ms':>24} | ratio save / read")
            call = 1
            for size in SIZES:
                times: dict[str, list[tuple[float, float]]] = {k: [] for k in stores}
                for _ in range(rounds):
                    for kind, store in stores.items():  # interleaved: both see the same machine load
                        call += 1
                        times[kind].append(await measure(store, size, call))
                med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
                       for k, v in times.items()}
                d, p = med["disk"], med["database"]
                print(f"{size // 1024:>6}KiB | {d[0]:>9.2f} / {d[1]:<8.2f} | {p[0]:>11.2f} / {p[1]:<10.2f} | "
                      f"{p[0] / d[0]:.1f}x / {p[1] / d[1]:.1f}x")
    finally:
        await db.close()
        drop_pg_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
