"""The attachment store's quotas survive a restart (the index is rebuilt from disk) and retention deletes files."""

from __future__ import annotations

import pytest

from gateway.store.attachments import AttachmentLimits, AttachmentStore, QuotaExceeded


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_quota_survives_restart_and_retention_frees_it(tmp_path):
    clock = Clock()
    limits = AttachmentLimits(max_bytes=1000, per_call_bytes=10_000, per_call_count=100, per_owner_bytes=2500,
                              total_bytes=1 << 20, retention_s=3600)
    store = AttachmentStore(tmp_path, limits, clock)
    await store.open()
    first = await store.save("abc", "a.txt", b"a" * 1000, "caller", owner="|dana")
    clock.now += 1800
    await store.save("abd", "b.txt", b"b" * 1000, "caller", owner="|dana")
    await store.save("abd", "c.txt", b"c" * 1000, "alice")  # staff files do not count for the caller

    again = AttachmentStore(tmp_path, limits, clock)  # a restart
    await again.open()
    assert again.usage(owner="|dana") == (2, 2000) and again.usage() == (3, 3000)
    with pytest.raises(QuotaExceeded) as info:
        await again.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")
    assert info.value.code == "caller_quota_exceeded"
    assert again.get("abc", first.id)[1].read_bytes() == b"a" * 1000

    clock.now += 1800  # the first file is an hour old
    assert await again.sweep() == 1
    assert not (tmp_path / "abc").exists()  # the emptied folder goes too
    assert again.usage(owner="|dana") == (1, 1000)
    await again.save("abe", "d.txt", b"d" * 600, "caller", owner="|dana")
