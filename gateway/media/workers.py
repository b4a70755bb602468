"""The media plane on every core: a pool of media worker processes (see plane.py, worker.py).

Like a mediasoup Worker, each worker is one process with one event loop; a call is placed on one worker (the one
with the fewest calls) when it opens, and every leg of that call lives there, so media never crosses processes. The
engine talks to a worker over its channel (channel.py); replies and leg events come back on the same channel, in
order, and events are handed to the engine on its loop after the reply they follow.

A worker that dies (killed, crashed) takes its calls' media with it: each of its legs gets a `failed` event with
reason `worker_died` (the engine ends those calls `media_failed`, with records), requests in flight fail with
`media_worker_died` (retryable), and a new worker is started in its place; the other workers carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidState, NotFound, Unavailable
from .channel import ChannelClosed, frame, read_frame
from .leg import MediaConfig
from .plane import CALLER, Answer, LegEvent, LegListener, RecordingInfo, Still, TranscriptListener, TranscriptSegment
from .ports import PortRange, port_slices
from .recorder import describe

log = logging.getLogger("callin.media.workers")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker that dies again soon after a restart waits longer


class WorkerDied(Unavailable):
    code = "media_worker_died"


@dataclass
class WorkerHandle:
    """The engine's side of one worker process."""

    index: int
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    calls: set[str] = field(default_factory=set)
    alive: bool = False
    started_at: float = 0.0
    restarts: int = 0
    pid: int | None = None
    reader_task: asyncio.Task[None] | None = None


class WorkerPlane:
    """`count` media worker processes behind the MediaPlane interface."""

    def __init__(self, config: MediaConfig, count: int, log_level: str = "info", log_format: str = "json") -> None:
        if count < 1:
            raise ValueError("a worker plane needs at least one worker")
        self.config = config
        self.log_level, self.log_format = log_level, log_format
        self.workers = [WorkerHandle(index=i) for i in range(count)]
        # Each worker binds its legs in its own slice of the UDP port range (when there is one).
        self._configs = [config] * count
        if config.ports is not None:
            low, high = config.ports.low, config.ports.high
            self._configs = [dataclasses.replace(config, ports=PortRange.of(part))
                             for part in port_slices(low, high, count)]
        self._listeners: list[LegListener] = []
        self._transcript_listeners: list[TranscriptListener] = []
        self._transcripts: dict[str, WorkerHandle] = {}  # call id -> the worker transcribing it (until stopped)
        self._lost_transcripts: set[str] = set()  # transcripts whose worker died (until stopped)
        self._ids = itertools.count(1)
        self._call_worker: dict[str, WorkerHandle] = {}
        self._legs: dict[str, dict[str, str]] = {}  # call id -> participant -> current leg id
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.deaths = 0  # workers lost since start (for metrics and tests)
        # Recordings finalized by close_call, for a stop_recording that comes after it (the last few calls).
        self._finished: dict[str, RecordingInfo] = {}
        self._recording: set[str] = set()  # calls being recorded (for metrics)
        # call id -> its recording's file, while it runs; a worker's death leaves them here for `describe`
        self._recording_paths: dict[str, str] = {}
        self._orphans: dict[str, asyncio.Future[RecordingInfo | None]] = {}
        self._recordings_done = self._recorded_bytes = self._recording_drops = 0

    # ------------------------------------------------------------------ lifecycle
    def subscribe(self, listener: LegListener) -> None:
        self._listeners.append(listener)

    def subscribe_transcript(self, listener: TranscriptListener) -> None:
        self._transcript_listeners.append(listener)

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(worker) for worker in self.workers))

    async def _spawn(self, worker: WorkerHandle) -> None:
        ours, theirs = socket.socketpair()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.media.worker", "--fd", str(theirs.fileno()),
                "--index", str(worker.index), pass_fds=(theirs.fileno(),), env=os.environ.copy())
        finally:
            theirs.close()
        worker.reader, worker.writer = await asyncio.open_connection(sock=ours)
        worker.writer.write(frame({"config": self._configs[worker.index], "log_level": self.log_level,
                                   "log_format": self.log_format}))
        try:
            ready = await asyncio.wait_for(read_frame(worker.reader), START_TIMEOUT_S)
        except (ChannelClosed, asyncio.TimeoutError) as exc:
            worker.process.kill()
            raise Unavailable(f"media worker {worker.index} did not start: {exc}", code="media_worker_failed") from None
        worker.pid = ready.get("ready")
        worker.alive = True
        worker.started_at = time.monotonic()
        worker.reader_task = asyncio.ensure_future(self._read(worker))
        log.info("media worker %d started (pid %s)", worker.index, worker.pid)

    async def close(self) -> None:
        self._closing = True
        for worker in self.workers:
            if worker.alive and worker.writer is not None:
                worker.writer.write(frame({"op": "close", "id": None}))
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("media worker %d did not stop within %.0f s: killed", worker.index, STOP_TIMEOUT_S)
                worker.process.kill()
                await worker.process.wait()
            if worker.reader_task is not None:
                worker.reader_task.cancel()
            if worker.writer is not None:
                worker.writer.close()
            worker.alive = False
        for task in list(self._tasks):
            task.cancel()
        self._call_worker.clear()
        self._legs.clear()
        self._transcripts.clear()
        self._lost_transcripts.clear()

    # ------------------------------------------------------------------ the channel
    async def _read(self, worker: WorkerHandle) -> None:
        assert worker.reader is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await read_frame(worker.reader)
                if "event" in message:
                    # after the reply it follows has resumed its waiter (that waiter records the leg id first)
                    loop.call_soon(self._emit, message["event"])
                elif "transcript" in message:
                    loop.call_soon(self._emit_segment, message["transcript"])
                elif "id" in message:
                    future = worker.pending.pop(message["id"], None)
                    if future is None or future.done():
                        continue
                    if message["ok"]:
                        future.set_result(message["result"])
                    else:
                        future.set_exception(message["error"].rebuild())
        except ChannelClosed:
            pass
        except Exception:  # noqa: BLE001 - a corrupt frame: treat the worker as lost
            log.exception("media worker %d: unreadable channel", worker.index)
        if not self._closing:
            self._lost(worker)

    def _send(self, worker: WorkerHandle, op: str, *args: Any, reply: bool = False,
              **kwargs: Any) -> asyncio.Future[Any] | None:
        if not worker.alive or worker.writer is None:
            raise WorkerDied(f"media worker {worker.index} is not running", code="media_worker_died")
        future: asyncio.Future[Any] | None = None
        request_id = None
        if reply:
            request_id = next(self._ids)
            future = asyncio.get_running_loop().create_future()
            worker.pending[request_id] = future
        worker.writer.write(frame({"op": op, "id": request_id, "args": args, "kwargs": kwargs}))
        return future

    async def _request(self, worker: WorkerHandle, op: str, *args: Any, **kwargs: Any) -> Any:
        future = self._send(worker, op, *args, reply=True, **kwargs)
        assert future is not None
        return await future

    def _emit(self, event: LegEvent) -> None:
        legs = self._legs.get(event.call_id)
        if legs is None or legs.get(event.participant) != event.leg_id:
            return  # a leg since replaced or removed, or a call since closed
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("media plane listener failed on %s", event)

    def _emit_segment(self, segment: TranscriptSegment) -> None:
        if segment.call_id not in self._transcripts:
            return  # a transcript since stopped
        for listener in list(self._transcript_listeners):
            try:
                listener(segment)
            except Exception:
                log.exception("transcript listener failed on %s", segment)

    # ------------------------------------------------------------------ a worker lost
    def _lost(self, worker: WorkerHandle) -> None:
        worker.alive = False
        self.deaths += 1
        code = worker.process.returncode if worker.process is not None else None
        calls = sorted(worker.calls)
        log.error("media worker %d (pid %s) died (exit %s): %d call(s) lose their media", worker.index, worker.pid,
                  code, len(calls))
        for call_id in [c for c, w in self._transcripts.items() if w is worker]:
            del self._transcripts[call_id]  # its last words died with the worker
            self._lost_transcripts.add(call_id)
        for future in worker.pending.values():
            if not future.done():
                future.set_exception(WorkerDied(f"media worker {worker.index} died", code="media_worker_died"))
        worker.pending.clear()
        worker.calls.clear()
        for call_id in calls:
            self._recording.discard(call_id)
            self._call_worker.pop(call_id, None)
            legs = self._legs.pop(call_id, {})
            for participant, leg_id in legs.items():
                event = LegEvent(call_id=call_id, participant=participant, leg_id=leg_id, kind="failed",
                                 reason="worker_died")
                for listener in list(self._listeners):
                    try:
                        listener(event)
                    except Exception:
                        log.exception("media plane listener failed on %s", event)
        task = asyncio.ensure_future(self._restart(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, worker: WorkerHandle) -> None:
        if worker.process is not None and worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
        soon = time.monotonic() - worker.started_at < 60
        worker.restarts = worker.restarts + 1 if soon else 0
        await asyncio.sleep(RESTART_BACKOFF_S[min(worker.restarts, len(RESTART_BACKOFF_S) - 1)])
        while not self._closing:
            try:
                await self._spawn(worker)
                return
            except Exception:  # noqa: BLE001 - keep trying: the other workers carry the calls meanwhile
                log.exception("media worker %d could not be restarted", worker.index)
                await asyncio.sleep(RESTART_BACKOFF_S[-1])

    # ------------------------------------------------------------------ the MediaPlane
    def has_call(self, call_id: str) -> bool:
        return call_id in self._call_worker

    def call_worker(self, call_id: str) -> int | None:
        """The index of the worker that holds the call's media (None: none)."""
        worker = self._call_worker.get(call_id)
        return worker.index if worker is not None else None

    def open_call(self, call_id: str) -> None:
        if call_id in self._call_worker:
            return
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise Unavailable("no media worker is running", code="media_unavailable")
        worker = min(alive, key=lambda w: (len(w.calls), w.index))
        self._send(worker, "open_call", call_id)
        worker.calls.add(call_id)
        self._call_worker[call_id] = worker
        self._legs[call_id] = {}

    def _worker_of(self, call_id: str) -> WorkerHandle:
        worker = self._call_worker.get(call_id)
        if worker is None:
            raise InvalidState("this call has no media (it has ended)", code="call_ended")
        return worker

    async def answer(self, call_id: str, participant: str, sdp: str) -> Answer:
        answer: Answer = await self._request(self._worker_of(call_id), "answer", call_id, participant, sdp)
        legs = self._legs.get(call_id)
        if legs is not None:
            legs[participant] = answer.leg_id
        return answer

    async def add_candidate(self, call_id: str, participant: str, candidate: str | None, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        await self._request(self._worker_of(call_id), "add_candidate", call_id, participant, candidate, sdp_mid,
                            sdp_mline_index)

    def set_scene(self, call_id: str, **changes: Any) -> None:
        worker = self._call_worker.get(call_id)
        if worker is not None and worker.alive:
            self._send(worker, "set_scene", call_id, **changes)

    async def remove(self, call_id: str, participant: str) -> None:
        worker = self._call_worker.get(call_id)
        legs = self._legs.get(call_id)
        if legs is not None:
            legs.pop(participant, None)
        if worker is not None and worker.alive:
            await self._request(worker, "remove", call_id, participant)

    async def reset_call(self, call_id: str) -> None:
        worker = self._call_worker.get(call_id)
        if call_id in self._legs:
            self._legs[call_id] = {}
        if worker is None or not worker.alive:
            self._call_worker.pop(call_id, None)
            self.open_call(call_id)
            return
        await self._request(worker, "reset_call", call_id)

    async def still(self, call_id: str, participant: str = CALLER) -> Still:
        result: Still = await self._request(self._worker_of(call_id), "still", call_id, participant)
        return result

    async def close_call(self, call_id: str) -> RecordingInfo | None:
        worker = self._call_worker.pop(call_id, None)
        self._legs.pop(call_id, None)
        if worker is None:
            orphan = self._orphan(call_id)  # its worker died while recording
            if orphan is None:
                return None
            described = await orphan
            if self._orphans.pop(call_id, None) is orphan and described is not None:
                self._finished[call_id] = described  # for a stop_recording after this
            return described
        worker.calls.discard(call_id)
        info: RecordingInfo | None = None
        if worker.alive:
            try:
                info = await self._request(worker, "close_call", call_id)
            except WorkerDied:
                pass
        self._recorded(call_id, info)
        if info is not None:
            self._finished[call_id] = info
            while len(self._finished) > 100:
                del self._finished[next(iter(self._finished))]
        return info

    # ------------------------------------------------------------------ recording (in the call's worker)
    def _recording_worker(self, call_id: str) -> WorkerHandle:
        worker = self._call_worker.get(call_id)
        if worker is None:
            raise NotFound("this call has no media (unknown or ended)", code="not_found")
        return worker

    async def start_recording(self, call_id: str, path: str, *, mixed_audio: bool = False) -> str:
        final: str = await self._request(self._recording_worker(call_id), "start_recording", call_id, path,
                                         mixed_audio=mixed_audio)
        self._recording.add(call_id)
        self._recording_paths[call_id] = final
        return final

    async def pause_recording(self, call_id: str) -> None:
        await self._request(self._recording_worker(call_id), "pause_recording", call_id)

    async def resume_recording(self, call_id: str) -> None:
        await self._request(self._recording_worker(call_id), "resume_recording", call_id)

    def _orphan(self, call_id: str) -> asyncio.Future[RecordingInfo | None] | None:
        """The info, being read back from its file, of the call's recording whose worker died (once per call)."""
        path = self._recording_paths.pop(call_id, None)
        if path is not None:
            self._orphans[call_id] = asyncio.ensure_future(self._describe(path))
        return self._orphans.get(call_id)

    async def _describe(self, path: str) -> RecordingInfo | None:
        """The info of a recording whose worker died (read back from its file, in a thread)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(None, describe, path)
        except Exception as exc:  # noqa: BLE001 - a file with nothing readable in it
            log.warning("the recording %s of a media worker that died cannot be read: %s", path, exc)
            return None

    def recording_totals(self) -> dict[str, int]:
        """For metrics (see LocalPlane.recording_totals), kept here from what the workers answered."""
        return {"active": len(self._recording), "finished": self._recordings_done,
                "bytes_written": self._recorded_bytes, "dropped": self._recording_drops}

    def _recorded(self, call_id: str, info: RecordingInfo | None) -> None:
        self._recording.discard(call_id)
        self._recording_paths.pop(call_id, None)
        if info is not None:
            self._recordings_done += 1
            self._recorded_bytes += info.size_bytes
            self._recording_drops += info.dropped_packets

    async def stop_recording(self, call_id: str) -> RecordingInfo | None:
        """A worker that died took its recording's info with it (the file stays, playable up to the death): None."""
        worker = self._call_worker.get(call_id)
        if worker is None or not worker.alive:
            self._recording.discard(call_id)
            orphan = self._orphan(call_id)
            if orphan is not None:
                described = await orphan
                if self._orphans.pop(call_id, None) is orphan:
                    return described
            return self._finished.pop(call_id, None)
        try:
            result: RecordingInfo | None = await self._request(worker, "stop_recording", call_id)
        except WorkerDied:
            result = None
        self._recorded(call_id, result)
        return result

    def start_transcript(self, call_id: str) -> None:
        worker = self._worker_of(call_id)
        self._send(worker, "start_transcript", call_id)
        self._transcripts[call_id] = worker

    async def stop_transcript(self, call_id: str) -> bool:
        """Waits for the worker to deliver the last segments (they come before its reply, see _read)."""
        if call_id in self._lost_transcripts:
            self._lost_transcripts.discard(call_id)
            raise WorkerDied("the media worker of this call died: the end of its transcript is lost",
                             code="media_worker_died")
        worker = self._transcripts.get(call_id)
        if worker is None:
            return True
        try:
            complete: bool = await self._request(worker, "stop_transcript", call_id)
            return complete
        finally:
            if self._transcripts.get(call_id) is worker:
                del self._transcripts[call_id]

    async def stats(self, call_id: str) -> dict[str, Any]:
        worker = self._call_worker.get(call_id)
        if worker is None or not worker.alive:
            return {}
        result: dict[str, Any] = await self._request(worker, "stats", call_id)
        return result
