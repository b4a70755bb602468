"""The media watchdog, the per-viewer keyframe budget and the slow-viewer guard, driven by a fake clock (the
real-peer proof is tests/integration/test_media_health.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.media.forward import ForwardTrack
from gateway.media.health import Liveness, MediaWatchdog, WatchdogConfig
from gateway.media.viewer import KeyframeBudget, ViewerConfig, ViewerGuard
from tests.support.loops import event_loops
from tests.unit.test_packets import forwarder


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_watchdog_disconnected_after_silence_connected_on_recovery_dead_after_grace():
    changes: list[Liveness] = []
    dog = MediaWatchdog(WatchdogConfig(silence_s=4, grace_s=20), changes.append)
    assert dog.check(10, 0.0) is Liveness.CONNECTED and changes == []
    assert dog.check(20, 3.0) is Liveness.CONNECTED
    assert dog.check(20, 6.9) is Liveness.CONNECTED  # 3.9 s of silence
    assert dog.check(20, 7.0) is Liveness.DISCONNECTED and changes == [Liveness.DISCONNECTED]
    assert dog.check(21, 9.0) is Liveness.CONNECTED and changes[-1] is Liveness.CONNECTED  # something arrived
    assert dog.check(21, 13.0) is Liveness.DISCONNECTED
    assert dog.check(21, 32.9) is Liveness.DISCONNECTED  # the grace counts from the report
    assert dog.check(21, 33.0) is Liveness.DEAD
    assert dog.check(99, 34.0) is Liveness.DEAD  # dead stays dead: the call is ending
    assert changes == [Liveness.DISCONNECTED, Liveness.CONNECTED, Liveness.DISCONNECTED, Liveness.DEAD]


async def test_keyframe_budget_defers_beyond_the_burst_and_never_loses_a_request():
    clock = Clock()
    sent: list[float] = []
    budget = KeyframeBudget(interval_s=0.2, burst=2, clock=clock)
    send = lambda: sent.append(clock.t)  # noqa: E731
    assert budget.ask(send) and budget.ask(send)  # the burst
    assert not budget.ask(send) and not budget.ask(send) and not budget.ask(send)  # merged into one pending
    assert len(sent) == 2 and budget.deferred == 1 and budget.overruns_since(0) == 3
    clock.t += 0.2
    await asyncio.sleep(0.25)  # the pending request goes out once a token is back
    assert len(sent) == 3 and budget.sent == 3
    clock.t += 10  # a quiet viewer gets its burst back, not more
    assert budget.ask(send) and budget.ask(send) and not budget.ask(send)
    budget.close()
    await asyncio.sleep(0.25)
    assert len(sent) == 5  # closed: the pending request is dropped with its viewer


async def test_a_viewer_over_its_budget_costs_the_source_one_request_per_interval():
    """Many PLIs from one viewer (a lossy link) reach the source at the budget's pace, not the viewer's."""
    clock = Clock()
    to_source: list[float] = []
    track = ForwardTrack("video", 30)
    track._on_keyframe_needed = lambda: to_source.append(clock.t)
    track.budget = KeyframeBudget(interval_s=2.0, burst=2, clock=clock)
    for _ in range(50):  # 50 PLIs within 5 s
        track.request_keyframe()
        clock.t += 0.1
    assert len(to_source) == 2 and track.stats.keyframe_requests == 50
    track.stop()


class FakeConsumer:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.paused = False
        self.budget = KeyframeBudget(interval_s=2.0, burst=2) if kind == "video" else None
        self.resumes = 0

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.resumes += 1


def test_guard_pauses_video_only_on_a_lasting_backlog_and_resumes_once_drained():
    video, audio = FakeConsumer("video"), FakeConsumer("audio")
    changes: list[tuple[bool, str]] = []
    guard = ViewerGuard(ViewerConfig(max_backlog_bytes=64_000, resume_after_s=5), lambda: [video, audio],
                        lambda paused, reason: changes.append((paused, reason)))
    guard.check(200_000, 0.0)  # one check above the limit: a keyframe burst, not yet a slow link
    guard.check(1_000, 0.5)
    assert not video.paused and changes == []
    guard.check(100_000, 1.0)
    guard.check(120_000, 1.5)
    assert video.paused and not audio.paused and changes == [(True, "backlog")]
    guard.check(0, 3.0)  # drained, but the hold-off is not over
    assert video.paused
    guard.check(40_000, 6.6)  # hold-off over, but still too much queued
    assert video.paused
    guard.check(2_000, 7.0)
    assert not video.paused and video.resumes == 1 and changes[-1] == (False, "backlog")
    # Slow again soon after (on probation: one check is enough): paused again, the next try waits twice as long.
    guard.check(100_000, 8.0)
    assert video.paused and guard.pauses == 2
    guard.check(0, 8.0 + 9.9)
    assert video.paused
    guard.check(0, 8.0 + 10.0)
    assert not video.paused


class FakeSource:
    def __init__(self, *consumers: FakeConsumer) -> None:
        self.consumers = list(consumers)
        for consumer in consumers:
            consumer.source = self


def test_guard_pauses_a_viewer_that_keeps_overrunning_its_keyframe_budget():
    """...when the keyframes it causes go to other viewers too (the slow supervisor beside the agent)."""
    video, other = FakeConsumer("video"), FakeConsumer("video")
    FakeSource(video, other)
    changes: list[tuple[bool, str]] = []
    guard = ViewerGuard(ViewerConfig(), lambda: [video], lambda paused, reason: changes.append((paused, reason)))
    video.budget._overruns.extend([0.0, 1.0])  # two requests over the budget: not yet
    guard.check(0, 1.0)
    assert not video.paused
    video.budget._overruns.append(2.0)
    guard.check(0, 2.0)
    assert video.paused and changes == [(True, "keyframes")]


def test_a_lone_viewer_over_its_keyframe_budget_keeps_its_video():
    """The only viewer of a stream (the agent of a one-to-one call on a lossy link) costs nobody else: its requests
    are spaced out by its budget, and its picture is not taken away. Once a second viewer joins, the rule applies."""
    video = FakeConsumer("video")
    source = FakeSource(video)
    changes: list[tuple[bool, str]] = []
    guard = ViewerGuard(ViewerConfig(), lambda: [video], lambda paused, reason: changes.append((paused, reason)))
    video.budget._overruns.extend([0.0, 0.5, 1.0, 1.5, 2.0])
    guard.check(0, 2.0)
    assert not video.paused and changes == []
    source.consumers.append(FakeConsumer("video"))  # a supervisor starts watching
    guard.check(0, 2.5)
    assert video.paused and changes == [(True, "keyframes")]


def test_guard_ignores_a_leg_that_receives_no_video():
    audio = FakeConsumer("audio")
    guard = ViewerGuard(ViewerConfig(), lambda: [audio], lambda *_: None)
    guard.check(10_000_000, 0.0)
    guard.check(10_000_000, 1.0)
    assert not guard.paused


def _rtp(ssrc: int, size: int = 100, seq: int = 1) -> bytes:
    from aiortc.rtp import RtpPacket

    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=1, ssrc=ssrc, payload=b"x" * size).serialize()


@pytest.mark.parametrize("new_loop", event_loops())
def test_send_queue_holds_what_the_kernel_refuses_in_order_and_drops_only_the_paused_streams_rtp(new_loop, tmp_path):
    """A unix datagram socket whose receiver does not read refuses (EAGAIN) once the receiver's queue is full: the
    SendQueue keeps the rest, in order, on asyncio and on uvloop alike (uvloop's own transport would queue in libuv,
    out of reach); drop_queued takes one stream's RTP out of it; once the receiver reads, the queue drains in order
    through the loop's writer callback on the dup'd socket, and closing leaves no writer and no fd behind."""
    import os
    import socket
    from types import SimpleNamespace

    from gateway.media import aiortc_internals as internals

    rtcp = bytes([0x80, 201, 0, 1]) + (7).to_bytes(4, "big")  # a receiver report from SSRC 7

    async def body() -> None:
        loop = asyncio.get_running_loop()
        path = str(tmp_path / "viewer")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        receiver.setblocking(False)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
        protocol = SimpleNamespace(transport=transport)
        queue = internals.send_queue(protocol)
        assert type(queue) is internals.SendQueue and protocol.transport is queue
        assert internals.send_queue(protocol) is queue  # installed once
        sent = []
        for seq in range(400):  # audio (9) and video (7) interleaved, an RTCP and a DTLS record now and then
            for data in (_rtp(9, 60, seq), _rtp(7, 200, seq)) + ((rtcp, b"\x16\xfe\xfd") if seq % 50 == 0 else ()):
                queue.sendto(data, path)
                sent.append(data)
        held = queue.get_write_buffer_size()
        assert held > 0, "the receiver's queue never filled: nothing was held"
        in_queue = [d for d, _ in queue._queue]
        assert sent[len(sent) - len(in_queue):] == in_queue  # the newest, in order
        dropped = queue.drop_queued({7})
        video_held = [d for d in in_queue if d[8:12] == (7).to_bytes(4, "big") and d[1] & 0x7F == 96]
        assert video_held and dropped == {7: int.from_bytes(video_held[0][2:4], "big")}
        kept = [d for d in in_queue if d not in video_held]
        assert [d for d, _ in queue._queue] == kept
        assert queue.get_write_buffer_size() == sum(map(len, kept))
        # The receiver reads: the writer callback sends the rest, in order.
        got: list[bytes] = []
        deadline = loop.time() + 10
        while queue.get_write_buffer_size() and loop.time() < deadline:
            try:
                while True:
                    got.append(receiver.recv(2048))
            except BlockingIOError:
                pass
            await asyncio.sleep(0.01)
        assert queue.get_write_buffer_size() == 0
        try:
            while True:
                got.append(receiver.recv(2048))
        except BlockingIOError:
            pass
        expected = [d for d in sent[:len(sent) - len(in_queue)]] + kept
        assert got == expected
        fd = queue._fd
        queue.close()
        assert queue.is_closing()
        with pytest.raises(OSError):
            os.fstat(fd)  # the dup is closed
        receiver.close()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(body())


@pytest.mark.parametrize("new_loop", event_loops())
def test_send_queue_on_a_connected_socket_sends_without_an_address_and_tells_the_protocol_of_errors(new_loop):
    """As asyncio's transport: sendto(data) without an address on a connected socket; a send error other than
    EAGAIN/ENOBUFS (here: the peer is gone) loses the datagram and reaches the protocol's error_received."""
    import socket
    from types import SimpleNamespace

    from gateway.media import aiortc_internals as internals

    class Protocol(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.errors: list[OSError] = []

        def error_received(self, exc: Exception) -> None:
            self.errors.append(exc)  # type: ignore[arg-type]

    async def body() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        protocol = Protocol()
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=ours)
        holder = SimpleNamespace(transport=transport)
        queue = internals.send_queue(holder)
        assert type(queue) is internals.SendQueue
        queue.sendto(b"hello")
        assert theirs.recv(100) == b"hello"
        theirs.close()
        queue.sendto(b"lost")
        assert protocol.errors and isinstance(protocol.errors[0], OSError), protocol.errors
        assert queue.get_write_buffer_size() == 0
        queue.close()

    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(body())


async def test_repeated_requests_while_waiting_for_a_keyframe_are_not_held_against_the_viewer():
    """A browser repeats its PLI until the picture comes back (e.g. every 200 ms at the start of a stream): that is
    one outstanding request, not a viewer that keeps losing the picture."""
    from gateway.media.forward import EncodedFrame

    clock = Clock()
    track = ForwardTrack("video", 30)
    track._on_keyframe_needed = lambda: None
    track.budget = KeyframeBudget(interval_s=2.0, burst=2, clock=clock)
    assert track.needs_keyframe  # a new video consumer starts at a keyframe
    for _ in range(10):
        track.request_keyframe()
    assert track.budget.overruns_since(0) == 0
    track.push(EncodedFrame(data=b"k", timestamp=1, keyframe=True, arrived=0.0))
    assert not track.needs_keyframe
    for _ in range(5):  # the picture was there, and is lost again and again: that counts
        track.request_keyframe()
    assert track.budget.overruns_since(0) == 5
    track.stop()


@pytest.mark.parametrize("viewer", ["frames", "packets"])
async def test_both_kinds_of_viewer_pass_keyframe_requests_on_by_the_same_rules(viewer):
    """A frame-level ForwardTrack and a packet-level RtpForwarder pass a keyframe request on alike
    (viewer.pass_keyframe_request): never without a source or while paused (but counted), straight on without a
    budget, within the budget with one; a request while a keyframe is awaited already is no overrun."""
    clock = Clock()
    if viewer == "frames":
        track: Any = ForwardTrack("video", 30)
    else:
        track, _, _ = forwarder("video")
    track._on_keyframe_needed = None
    track.request_keyframe()  # no source yet
    to_source: list[float] = []
    track._on_keyframe_needed = lambda: to_source.append(clock.t)
    track.paused = True
    track.request_keyframe()
    track.paused = False
    assert to_source == [] and track.stats.keyframe_requests == 2
    track.request_keyframe()
    track.request_keyframe()
    assert len(to_source) == 2  # no budget: every request
    track.budget = KeyframeBudget(interval_s=2.0, burst=1, clock=clock)
    track._needs_keyframe = True
    track.request_keyframe()
    track.request_keyframe()  # over the budget, deferred; it waits for a keyframe already: not an overrun
    assert len(to_source) == 3 and track.budget.deferred == 1 and track.budget.overruns_since(0) == 0
    track._needs_keyframe = False
    track.request_keyframe()  # over the budget and not waiting: an overrun
    assert track.budget.overruns_since(0) == 1 and track.stats.keyframe_requests == 7
    track.budget.close()
    if viewer == "frames":
        track.stop()
