"""Prometheus metrics, in a registry of the app's own (no module globals)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.calls import Call
from gateway.models import AgentStatus
from gateway.store.webhooks import WebhookDispatcher
from gateway.store.records import CallRecorder
from gateway.switchboard import Switchboard


class _LiveState(Collector):
    def __init__(self, board: Switchboard) -> None:
        self.board = board

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily("callin_queue_length", "Calls waiting (queued or ringing)")
        queue.add_metric([], self.board.waiting_count())
        yield queue
        active = GaugeMetricFamily("callin_calls_active", "Calls not yet ended")
        active.add_metric([], self.board.active_calls())
        yield active
        agents = GaugeMetricFamily("callin_agents", "Agents by status", labels=["status"])
        for status in AgentStatus:
            agents.add_metric([status.value], self.board.agents_with_status(status))
        yield agents


class _Webhooks(Collector):
    def __init__(self, dispatcher: WebhookDispatcher) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily("callin_webhook_backlog",
                                    "Webhook deliveries not finished (queued, waiting for a retry or in flight)")
        backlog.add_metric([], self.dispatcher.backlog())
        yield backlog
        dropped = CounterMetricFamily("callin_webhook_dropped", "Webhook deliveries dropped (a queue was full)")
        dropped.add_metric([], self.dispatcher.dropped)
        yield dropped


class _Records(Collector):
    def __init__(self, recorder: CallRecorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily("callin_records_backlog",
                                    "Calls (and wrap-ups) handed to the record writer and not yet committed")
        backlog.add_metric([], self.recorder.backlog)
        yield backlog


class _MediaWorkers(Collector):
    def __init__(self, plane: Any) -> None:
        self.plane = plane

    def collect(self) -> Iterator[GaugeMetricFamily]:
        workers = getattr(self.plane, "workers", None)
        if workers is None:  # media in this process
            return
        alive = GaugeMetricFamily("callin_media_workers_alive", "Media worker processes running")
        alive.add_metric([], sum(1 for w in workers if w.alive))
        yield alive
        calls = GaugeMetricFamily("callin_media_worker_calls", "Calls whose media a worker holds", labels=["worker"])
        for worker in workers:
            calls.add_metric([str(worker.index)], len(worker.calls))
        yield calls
        deaths = CounterMetricFamily("callin_media_worker_deaths", "Media workers that died (and were restarted)")
        deaths.add_metric([], self.plane.deaths)
        yield deaths


class _Recordings(Collector):
    """The media plane's call recordings (gateway/media/recorder.py)."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = getattr(self.plane, "recording_totals", None)
        if totals is None:
            return
        numbers = totals()
        active = GaugeMetricFamily("callin_recordings_active", "Calls being recorded now")
        active.add_metric([], numbers["active"])
        yield active
        for name, key, text in (("callin_recordings_finished", "finished", "Recordings finalized"),
                                ("callin_recording_bytes", "bytes_written", "Bytes of the recordings finalized"),
                                ("callin_recording_dropped_frames", "dropped",
                                 "Media frames not recorded because a recording's writer fell behind (a stalled disk)")):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], numbers[key])
            yield counter


class _Transcripts(Collector):
    """Live transcripts (gateway/engine/transcripts.py) and their storage (gateway/store/transcripts.py)."""

    def __init__(self, transcripts: Any, store: Any = None) -> None:
        self.transcripts, self.store = transcripts, store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily("callin_transcripts_active", "Calls being transcribed now")
        active.add_metric([], self.transcripts.running())
        yield active
        failed = CounterMetricFamily("callin_transcript_start_failures",
                                     "Answered calls of a transcribed queue whose transcript could not start")
        failed.add_metric([], self.transcripts.start_failures)
        yield failed
        if self.store is not None:
            lost = CounterMetricFamily("callin_transcript_segment_write_failures",
                                       "Final transcript segments the database refused (the webhook still has them)")
            lost.add_metric([], self.store.failed)
            yield lost


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ws_connections = Gauge("callin_ws_connections", "Open WebSockets", ["role"], registry=r)
        self.protocol_errors = Counter("callin_protocol_errors", "Error messages sent, by code", ["role", "code"], registry=r)
        self.calls_started = Counter("callin_calls_started", "Calls requested", ["call_type"], registry=r)
        self.calls_answered = Counter("callin_calls_answered", "Calls answered by an agent", registry=r)
        self.calls_ended = Counter("callin_calls_ended", "Calls ended, by reason", ["reason"], registry=r)
        self.wait_seconds = Histogram(
            "callin_call_wait_seconds", "Time from request to answer", registry=r,
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800),
        )

        self.loop_lag = Histogram(
            "callin_event_loop_lag_seconds", "How late the event loop ran a timer due every 0.1 s",
            registry=r, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        self.gc_pause = Histogram(
            "callin_gc_pause_seconds", "Full garbage collections run by the GC policy, by kind (sweep, complete)",
            ["kind"], registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.transcript_segments = Counter(
            "callin_transcript_segments", "Final transcript segments recognised, by speaker role", ["role"], registry=r)
        self.transcripts_finished = Counter(
            "callin_transcripts_finished", "Call transcripts handed on, by whether they were complete", ["complete"],
            registry=r)

    def bind_webhooks(self, dispatcher: WebhookDispatcher) -> None:
        self.registry.register(_Webhooks(dispatcher))

    def bind_transcripts(self, board: Switchboard, store: Any = None) -> None:
        self.registry.register(_Transcripts(board.transcripts, store))

        def segment(call: Call, segment: Any) -> None:
            self.transcript_segments.labels(role=segment.role).inc()

        def finished(call: Call, segments: Any, complete: bool) -> None:
            self.transcripts_finished.labels(complete=str(bool(complete)).lower()).inc()

        board.on("call.transcript_segment", segment)
        board.on("call.transcript", finished)

    def bind_records(self, recorder: CallRecorder) -> None:
        self.registry.register(_Records(recorder))

    def bind(self, board: Switchboard) -> None:
        self.registry.register(_LiveState(board))
        self.registry.register(_MediaWorkers(board.plane))
        self.registry.register(_Recordings(board.plane))

        def answered(call: Call) -> None:
            self.wait_seconds.observe(call.wait_s)

        def ended(call: Call) -> None:
            self.calls_ended.labels(reason=call.end_reason.value if call.end_reason else "unknown").inc()

        board.on("call.answered", answered)
        board.on("call.ended", ended)
