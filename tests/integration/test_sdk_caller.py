"""The Python caller SDK (callin_sdk) against the real gateway and a real aiortc agent: media checked by content
both ways (frame counters and tones), a silently dropped socket resumed with the call and its media going on, and
a call ended for media failure recovered by placing the call again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import pytest

from callin_sdk import CallinCaller, CallinError, FrameCallback, synthetic
from tests.support.clients import Agent, wait_until
from tests.support.media import audio_frame_mono, dominant_frequency, read_counter
from tests.support.server import running_gateway
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.media


class Received:
    """What the SDK handed back of the agent's media: counters read from its video, its audio."""

    def __init__(self) -> None:
        self.counters: list[int | None] = []
        self.audio: list[Any] = []
        self.audio_total = 0

    def sink(self) -> FrameCallback:
        return FrameCallback(on_video=lambda f: self.counters.append(read_counter(f)), on_audio=self.on_audio)

    def on_audio(self, frame: Any) -> None:
        self.audio.append(audio_frame_mono(frame))
        self.audio_total += 1
        del self.audio[:-100]

    def frequency(self) -> float:
        import numpy as np

        return dominant_frequency(np.concatenate(self.audio[-50:]), 48000)


def readable(counters: list[int | None]) -> list[int]:
    return [c for c in counters if c is not None]


async def answered_call(gw: Any, caller: CallinCaller, agent: Agent) -> str:
    """The SDK caller places a video call and the agent takes it, sending its own counter video and a 440 Hz tone."""
    queued = await caller.start_call(video=synthetic(fps=15, tone_hz=880))
    offer = await agent.wait_offer()
    assert offer["call_id"] == queued["call_id"]
    await agent.accept(offer["call_id"], tone_hz=440, send_video=True)
    await caller.wait_for("answered", since=0, timeout=10)
    return queued["call_id"]


async def test_an_sdk_caller_and_a_real_agent_exchange_media_checked_by_content(caller_token):
    async with running_gateway() as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        got = Received()
        caller = CallinCaller(gw.base_url, caller_token(sub="kiosk-7", name="Lobby kiosk 7"), sink=got.sink(),
                              host_addresses=["127.0.0.1"])
        try:
            welcome = await caller.connect()
            assert welcome.caller is not None and welcome.caller["subject"] == "kiosk-7"
            mark = caller.mark()
            call_id = await answered_call(gw, caller, agent)
            queued = await caller.wait_for("queued", since=mark)
            assert queued["call_id"] == call_id and queued["position"] == 1 and queued["queue"] == "default"
            ringing = await caller.wait_for("ringing", since=mark)  # call.ringing: "Connecting you to Alice…"
            assert ringing["ringing"] is True and ringing["agent_name"] == "Alice (demo agent)"
            card = (agent.ws.of_type("call.offered"))[0]["card"]
            assert card["identity"]["name"] == "Lobby kiosk 7" and card["call_type"] == "video"
            await caller.wait_for("connected", since=mark, timeout=15)
            assert caller.state == "connected" and caller.agent_name == "Alice (demo agent)"

            # The caller's counter video and tone reach the agent, in order and intact...
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 30, 20)
            at_agent = agent.peer.sinks["video"].counters
            assert None not in at_agent and at_agent == sorted(at_agent) and at_agent[-1] > at_agent[0]
            await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 15)
            assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
            # ...and the agent's counter video and tone come back through the SDK's frame callback.
            await wait_until(lambda: len(readable(got.counters)) >= 30 and got.audio_total >= 50, 20)
            back = readable(got.counters)
            assert back == sorted(back) and back[-1] > back[0]
            assert len(back) >= 0.9 * len(got.counters), got.counters
            assert abs(got.frequency() - 440) < 30

            # Chat both ways; the SDK's own line comes back as a chat event too.
            mark = caller.mark()
            await caller.send_chat("my card is stuck in the machine")
            line = await agent.ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["from"]["role"] == "caller")
            assert line["message"]["text"] == "my card is stuck in the machine"
            await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "I see it, one moment"})
            heard = await caller.wait_for("chat", lambda e: e["sender"]["role"] == "agent", since=mark)
            assert heard["text"] == "I see it, one moment"

            # Content pushed by the agent arrives as an event and the caller's report reaches the agent.
            sent = await agent.ws.request({"type": "content.push", "call_id": call_id, "kind": "link",
                                           "title": "Card help", "url": "https://bank.example.com/cards"})
            pushed = await caller.wait_for("content", since=mark)
            assert pushed["content"]["content_id"] == sent["content"]["content_id"]
            await caller.report_content(pushed["content"]["content_id"], "opened")
            status = await agent.ws.wait("content.status")
            assert status["status"] == "opened"

            mark = caller.mark()
            await caller.hangup()
            ended = await caller.wait_for("ended", since=mark)
            assert ended["reason"] == "caller_hangup" and ended["call_id"] == call_id
            assert (await agent.ws.wait("call.ended"))["reason"] == "caller_hangup"
            assert caller.peer_connection is None
        finally:
            await caller.close()
            await agent.close()


async def test_a_socket_dropped_without_a_close_frame_is_resumed_and_the_call_goes_on_with_media(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:
        proxy = TcpProxy(gw.settings.port)
        await proxy.start()
        agent = Agent(gw.base_url)
        await agent.connect()
        got = Received()
        caller = CallinCaller(proxy.base_url, caller_token(sub="teller-3"), sink=got.sink(),
                              host_addresses=["127.0.0.1"])
        try:
            await caller.connect()
            session_id = caller.session_id
            call_id = await answered_call(gw, caller, agent)
            await wait_until(lambda: len(readable(got.counters)) >= 10, 20)

            mark = caller.mark()
            seq_before = caller.last_seq
            proxy.cut()  # the TCP connection resets: no close frame on either side
            # While the caller is away the agent writes; the line must not be lost.
            await agent.ws.wait("participant.reconnecting", timeout=15)
            await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "still with you"})
            back = await caller.wait_for("reconnected", since=mark, timeout=20)
            assert back["resumed"] is True and back["complete"] is True
            assert caller.session_id == session_id and caller.call_id == call_id and caller.state == "connected"
            line = await caller.wait_for("chat", since=mark, timeout=5)
            assert line["text"] == "still with you" and caller.last_seq > seq_before
            assert proxy.accepted >= 2  # a new socket carried the resumed session
            assert (await agent.ws.wait("participant.reconnected"))["role"] == "caller"
            assert not [e for e in caller.events[mark:] if e.name == "ended"]

            # Media went on through it all, both ways: new counters after the resume on both sides.
            agent_seen = len(agent.peer.sinks["video"].counters)
            caller_seen = len(got.counters)
            await wait_until(lambda: len(agent.peer.sinks["video"].counters) >= agent_seen + 15
                             and len(readable(got.counters[caller_seen:])) >= 15, 15)
            tail = agent.peer.sinks["video"].counters[agent_seen:]
            assert None not in tail and tail == sorted(tail)

            # Requests work on the resumed socket.
            await caller.send_chat("thanks")
            assert (await agent.ws.wait(lambda m: m["type"] == "chat.message"
                                        and m["message"]["text"] == "thanks"))["call_id"] == call_id
        finally:
            await caller.close()
            await agent.close()
            await proxy.close()


async def test_a_socket_that_goes_silent_is_noticed_by_the_sdk_ping_and_resumed(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:
        proxy = TcpProxy(gw.settings.port)
        await proxy.start()
        agent = Agent(gw.base_url)
        await agent.connect()
        caller = CallinCaller(proxy.base_url, caller_token(sub="atm-12"), host_addresses=["127.0.0.1"],
                              ping_interval_s=0.5, ping_timeout_s=1.0)
        try:
            await caller.connect()
            call_id = await answered_call(gw, caller, agent)
            mark = caller.mark()
            proxy.dark = True  # nothing passes any more, and no connection is closed: only a ping can tell
            await caller.wait_for("reconnecting", since=mark, timeout=10)
            proxy.dark = False  # the network is back: new connections pass again
            await caller.wait_for("reconnected", since=mark, timeout=20)
            assert caller.call_id == call_id and caller.state == "connected"
            await caller.send_chat("back again")
            await agent.ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["text"] == "back again")
        finally:
            await caller.close()
            await agent.close()
            await proxy.close()


async def test_a_call_ended_for_media_failure_is_recovered_by_placing_the_call_again(caller_token):
    """The media worker that holds the call dies: the gateway ends the call with media_failed (nothing to recover
    in it), and the SDK places the same call again once a worker is back. (A network change keeps the call: the SDK
    sends a new offer in it, tests/integration/test_media_recovery.py.)"""
    async with running_gateway(media_workers=1) as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        caller = CallinCaller(gw.base_url, caller_token(sub="kiosk-9"), host_addresses=["127.0.0.1"])
        try:
            await caller.connect()
            first = await answered_call(gw, caller, agent)
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 5, 20)
            mark = caller.mark()
            os.kill(gw.board.plane.workers[0].pid, signal.SIGKILL)  # the call's media dies with its worker

            redial = await caller.wait_for("redialing", since=mark, timeout=15)
            assert redial["previous_call_id"] == first and redial["attempt"] == 1
            ended = await caller.wait_for("ended", since=mark)
            assert ended["call_id"] == first and ended["reason"] == "media_failed"
            assert (await agent.ws.wait("call.ended"))["call_id"] == first
            await agent.peer.close()
            agent.peer = None

            # The same call is placed again: the agent takes it and media flows with a new peer connection.
            offer = await agent.ws.wait(lambda m: m["type"] == "call.offered" and m["call_id"] != first, timeout=15)
            await agent.accept(offer["call_id"], tone_hz=440)
            await caller.wait_for("connected", lambda e: e["call_id"] == offer["call_id"], since=mark, timeout=15)
            assert caller.call_id == offer["call_id"] and caller.state == "connected"
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 15, 20)
            again = agent.peer.sinks["video"].counters
            assert None not in again and again == sorted(again)
        finally:
            await caller.close()
            await agent.close()


async def test_the_kiosk_command_places_a_call_with_the_synthetic_camera(caller_token):
    import io

    from callin_sdk import kiosk
    from tests.support.server import TEST_SECRET

    async with running_gateway() as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        out = io.StringIO()
        args = kiosk.build_parser().parse_args([
            "--gateway", gw.base_url, "--secret", TEST_SECRET, "--sub", "atm-0042", "--name", "ATM Main Street",
            "--duration", "30", "--chat", "hello from the ATM", "--host-address", "127.0.0.1"])
        task = asyncio.ensure_future(kiosk.run(args, out=out))
        try:
            offer = await agent.wait_offer()
            assert offer["card"]["identity"]["subject"] == "atm-0042"
            await agent.accept(offer["call_id"], tone_hz=440)
            line = await agent.ws.wait("chat.message")
            assert line["message"]["text"] == "hello from the ATM"
            await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 15, 20)
            counters = agent.peer.sinks["video"].counters
            assert None not in counters and counters == sorted(counters)
            await agent.hangup(offer["call_id"])
            assert await asyncio.wait_for(task, 15) == 0
        finally:
            task.cancel()
            await agent.close()
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        names = [e["event"] for e in events]
        assert "queued" in names and "answered" in names and "connected" in names
        assert [e for e in events if e["event"] == "ended"][-1]["reason"] == "agent_hangup"


async def test_an_sdk_caller_sends_its_location_after_the_start_and_the_agent_gets_it(caller_token):
    """send_location (call.location): the call is answered without a location, the location follows; the agent is
    told and the call keeps it; a second one is refused with its code, and the first kept."""
    late = {"lat": 48.8566, "lon": 2.3522, "accuracy_m": 35.0, "timestamp": 1_795_468_254.0}
    async with running_gateway() as gw:
        agent = Agent(gw.base_url)
        await agent.connect()
        caller = CallinCaller(gw.base_url, caller_token(sub="kiosk-loc"), host_addresses=["127.0.0.1"])
        try:
            await caller.connect()
            with pytest.raises(CallinError) as early:
                await caller.send_location(late)  # no call yet
            assert early.value.code == "invalid_state"
            call_id = await answered_call(gw, caller, agent)
            assert gw.board.call(call_id).location is None
            mark = len(agent.ws.messages)
            await caller.send_location(late)
            told = await agent.ws.wait(lambda m: m["type"] == "call.location", since=mark)
            assert told["call_id"] == call_id and told["location"] == {**late, "source": "device"}
            assert gw.board.call(call_id).location.lat == late["lat"]
            with pytest.raises(CallinError) as again:
                await caller.send_location({**late, "lat": 0.0})
            assert again.value.code == "location_already_set"
            assert gw.board.call(call_id).location.lat == late["lat"]
        finally:
            await caller.close()
            await agent.close()
