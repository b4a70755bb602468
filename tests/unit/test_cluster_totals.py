"""The per-queue and per-status sums of the node registry (gateway/store/redis_nodes.py) behind the
callin_cluster_queue_* and callin_cluster_agents_by_status gauges: over live nodes only, the longest wait from the
earliest arrival, and entries of an older version (without these fields) still read."""

from __future__ import annotations

import json

from gateway.store.redis_nodes import NodeEntry, line_totals, staff_totals, status_totals


def entry(instance: str, alive: bool = True, **fields) -> NodeEntry:
    return NodeEntry(instance=instance, name=instance, lease="l-" + instance, started=1.0, heartbeat=2.0,
                     alive=alive, **fields)


def test_lines_staff_and_statuses_are_summed_over_live_nodes_only():
    entries = [
        entry("a", lines={"default": [2, 100.0], "vip": [1, 150.0]}, statuses={"available": 1, "busy": 2},
              queues={"default": [3, 1], "vip": [1, 0]}),
        entry("b", lines={"default": [3, 90.0], "sales": [0, 0.0]}, statuses={"busy": 1, "wrap_up": 1},
              queues={"default": [2, 2], "sales": [0, 0]}),
        entry("c", alive=False, lines={"default": [9, 10.0]}, statuses={"away": 5},
              queues={"default": [7, 7]}),  # dead: left out
    ]
    assert line_totals(entries) == {"default": (5, 90.0), "vip": (1, 150.0), "sales": (0, None)}
    assert status_totals(entries) == {"available": 1, "busy": 3, "wrap_up": 1}
    assert staff_totals(entries) == {"default": (5, 3), "vip": (1, 0), "sales": (0, 0)}
    assert line_totals([]) == staff_totals([]) == status_totals([]) == {}


def test_an_entry_round_trips_and_an_older_entry_without_lines_reads_as_empty():
    original = entry("a", lines={"default": [2, 100.5]}, statuses={"ringing": 1})
    back = NodeEntry.decode("a", original.encode(), alive=True)
    assert back == original
    older = {k: v for k, v in json.loads(original.encode()).items() if k not in ("lines", "statuses")}
    read = NodeEntry.decode("a", json.dumps(older), alive=True)
    assert read is not None and read.lines == {} and read.statuses == {}
    assert NodeEntry.decode("a", json.dumps({**older, "lines": {"q": ["x", 1]}}), alive=True) is None
