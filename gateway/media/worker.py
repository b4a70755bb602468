"""A media worker process: one event loop running a LocalPlane, driven by the engine over a channel (channel.py).

Started by WorkerPlane (workers.py) as `python -m gateway.media.worker --fd N --index I`, with one end of a socket
pair inherited as fd N. The first frame is the worker's set-up ({"config": MediaConfig, "log_level", "log_format"});
then requests, answered in order of completion, and leg events as they happen. When the channel closes (the engine
stopped or died) the worker closes every call's media and exits: it never outlives its engine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from .channel import ChannelClosed, ErrorInfo, frame, read_frame
from .local import LocalPlane
from .plane import LegEvent, TranscriptSegment

log = logging.getLogger("callin.media.worker")

# What the engine may ask (the MediaPlane methods a worker serves); anything else is a protocol error.
ASYNC_OPS = frozenset({"answer", "add_candidate", "remove", "reset_call", "still", "close_call", "stats",
                       "start_recording", "pause_recording", "resume_recording", "stop_recording",
                       "stop_transcript"})
SYNC_OPS = frozenset({"open_call", "set_scene", "start_transcript"})


class Worker:
    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.reader, self.writer = reader, writer
        self.plane: LocalPlane | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, value: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(frame(value))

    def _on_event(self, event: LegEvent) -> None:
        self.send({"event": event})

    def _on_segment(self, segment: TranscriptSegment) -> None:
        self.send({"transcript": segment})

    async def serve(self) -> None:
        setup = await read_frame(self.reader)
        from .. import logs

        logs.configure(setup.get("log_level", "info"), setup.get("log_format", "json"))
        self.plane = LocalPlane(setup["config"], leg_prefix=f"w{self.index}/")
        self.plane.subscribe(self._on_event)
        self.plane.subscribe_transcript(self._on_segment)
        self.send({"ready": os.getpid()})
        log.info("media worker %d ready (pid %d)", self.index, os.getpid())
        try:
            while True:
                message = await read_frame(self.reader)
                if message.get("op") == "close":
                    break
                self._handle(message)
        except ChannelClosed:
            log.warning("media worker %d: the engine went away; closing its calls", self.index)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.plane.close()
            self.send({"closed": True})
            try:
                await asyncio.wait_for(self.writer.drain(), 2)
            except (ConnectionError, asyncio.TimeoutError):
                pass
            self.writer.close()

    def _handle(self, message: dict[str, Any]) -> None:
        op, request_id = message.get("op"), message.get("id")
        args, kwargs = message.get("args", ()), message.get("kwargs", {})
        assert self.plane is not None
        if op in SYNC_OPS:
            try:
                result = getattr(self.plane, op)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - answered to the engine as an error
                self._reply(request_id, error=exc)
            else:
                self._reply(request_id, result=result)
            return
        if op not in ASYNC_OPS:
            self._reply(request_id, error=ValueError(f"unknown media worker op {op!r}"))
            return
        task = asyncio.ensure_future(self._run(request_id, op, args, kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request_id: int | None, op: str, args: Any, kwargs: Any) -> None:
        try:
            result = await getattr(self.plane, op)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - answered to the engine as an error
            if not hasattr(exc, "code"):
                log.exception("media worker %d: %s failed", self.index, op)
            self._reply(request_id, error=exc)
        else:
            self._reply(request_id, result=result)

    def _reply(self, request_id: int | None, *, result: Any = None, error: BaseException | None = None) -> None:
        if request_id is None:
            if error is not None:
                log.warning("media worker %d: a request without reply failed: %s", self.index, error)
            return
        if error is not None:
            self.send({"id": request_id, "ok": False, "error": ErrorInfo.of(error)})
        else:
            self.send({"id": request_id, "ok": True, "result": result})


async def main_async(fd: int, index: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    await Worker(index, reader, writer).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description="Callin media worker (started by `callin serve`)")
    parser.add_argument("--fd", type=int, required=True, help="the inherited channel socket")
    parser.add_argument("--index", type=int, required=True)
    args = parser.parse_args()
    # Ctrl-C in a terminal and a service manager's SIGTERM reach the whole process group: the engine decides when
    # this worker stops (after its calls have ended with their reason), or the channel closing does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    asyncio.run(main_async(args.fd, args.index))
    sys.exit(0)


if __name__ == "__main__":
    main()
