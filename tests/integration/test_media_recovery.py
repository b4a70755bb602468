"""Media recovery in the same call (issue 12): a participant whose network changes gets its media back within 3 s
with a new peer connection over the same signaling session, the gateway replacing its leg.

The network change is real: inside the loopback-only namespace the participant gathers only on an extra address of
its own; the test takes that address away mid-call (`ip addr del`) and gives it another one (the new network).
Nobody tells the client: the Python SDK notices by itself (its peer connection goes silent), the test agent the way
the console does (the gateway's `media.state` `disconnected` for its own leg). Media is checked by content: the
caller's frame counters and tone at the agent, the agent's tone at the caller.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from callin_sdk import CallinCaller, FrameCallback, synthetic
from tests.support import netns
from tests.support.clients import Agent, Caller, wait_until
from tests.support.media import audio_frame_mono, dominant_frequency
from tests.support.server import running_gateway

pytestmark = pytest.mark.media

CALLER_HZ, AGENT_HZ = 880, 440
RECOVERY_S = 3.0


class Heard:
    """What the SDK caller got of the agent's media (its tone), with arrival times."""

    def __init__(self) -> None:
        self.audio: list[Any] = []
        self.arrivals: list[float] = []

    def sink(self) -> FrameCallback:
        return FrameCallback(on_audio=self.on_audio)

    def on_audio(self, frame: Any) -> None:
        self.audio.append(audio_frame_mono(frame))
        self.arrivals.append(time.monotonic())
        del self.audio[:-100]

    def frequency(self) -> float:
        import numpy as np

        return dominant_frequency(np.concatenate(self.audio[-25:]), 48000)


def frames_after(sink: Any, moment: float) -> list[tuple[float, int]]:
    """(arrival, counter) of the readable video frames a test Sink received after `moment`."""
    return [(at, c) for at, c in zip(sink.arrivals, sink.counters) if at > moment and c is not None]


async def video_resumes(sink: Any, removed_at: float, last_before: int, timeout: float = 10) -> float:
    """Seconds from the network change to the first new frame (a counter above the last one before) at the agent."""
    await wait_until(lambda: any(c > last_before for _, c in frames_after(sink, removed_at)), timeout)
    first = next(at for at, c in frames_after(sink, removed_at) if c > last_before)
    return first - removed_at


async def sdk_call(gw: Any, caller_token: Any, addresses: list[str], heard: Heard) -> tuple[CallinCaller, Agent, str]:
    agent = Agent(gw.base_url)
    await agent.connect()
    caller = CallinCaller(gw.base_url, caller_token(sub="commuter", name="Dana Commuter"), sink=heard.sink(),
                          host_addresses=lambda: list(addresses))
    await caller.connect()
    queued = await caller.start_call(video=synthetic(fps=15, tone_hz=CALLER_HZ))
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"], tone_hz=AGENT_HZ)
    await caller.wait_for("connected", since=0, timeout=15)
    assert agent.peer is not None
    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 10, 15)
    return caller, agent, queued["call_id"]


@pytest.mark.parametrize("media_workers", [0, 1], ids=["in-process", "worker"])
async def test_a_caller_whose_network_changes_gets_media_back_within_3_s_in_the_same_call(caller_token,
                                                                                            media_workers):
    async with running_gateway(media_workers=media_workers, media_silence_s=1.0) as gw:
        async with netns.extra_address("10.77.1.2") as wifi, netns.extra_address("10.77.1.3") as cellular:
            addresses = [wifi]  # the device's addresses as its platform reports them
            heard = Heard()
            caller, agent, call_id = await sdk_call(gw, caller_token, addresses, heard)
            assert agent.peer is not None
            try:
                await caller.send_chat("on the train")
                await agent.ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["text"] == "on the train")
                first_pc = caller.peer_connection
                video = agent.peer.sinks["video"]
                last_before = max(c for c in video.counters if c is not None)
                mark, agent_mark = caller.mark(), len(agent.ws.messages)

                # Wi-Fi gone, cellular up: the old peer connection's only address disappears.
                addresses[:] = [cellular]
                await netns.remove_address(wifi)
                removed_at = time.monotonic()

                took = await video_resumes(video, removed_at, last_before)
                assert took < RECOVERY_S, f"the caller's video came back at the agent after {took:.2f} s"
                recovered = await caller.wait_for("media_recovered", since=mark, timeout=5)
                assert recovered["call_id"] == call_id
                assert caller.peer_connection is not first_pc and first_pc.connectionState == "closed"
                # ... in order, and the caller's voice with it; the agent's voice back at the caller.
                await wait_until(lambda: len(frames_after(video, removed_at)) >= 10, 10)
                after = [c for _, c in frames_after(video, removed_at)]
                assert after == sorted(after), after
                sink = agent.peer.slots["audio"]
                audio_mark = sink.mark()
                await wait_until(lambda: sink.audio_since(audio_mark) >= 25, 5)
                assert abs(sink.frequency_since(audio_mark, at_most=25) - CALLER_HZ) < 30
                await wait_until(lambda: sum(at > removed_at + 0.2 for at in heard.arrivals) >= 25, 5)
                assert abs(heard.frequency() - AGENT_HZ) < 30

                # The same call, connected, its chat going on; the agent was told reconnecting, then reconnected.
                assert caller.call_id == call_id and caller.state == "connected"
                call = gw.board.calls[call_id]
                assert call.state.value == "connected"
                told = [(m["type"], m["role"], m["cause"]) for m in agent.ws.messages[agent_mark:]
                        if m.get("type", "").startswith("participant.")]
                assert told[:2] == [("participant.reconnecting", "caller", "media"),
                                    ("participant.reconnected", "caller", "media")], told
                assert not [m for m in agent.ws.messages[agent_mark:] if m.get("type") == "call.ended"]
                kinds = [e.kind for e in call.events]
                assert "media_replaced" in kinds and "media_failed" not in kinds, kinds
                await caller.send_chat("still here")
                await agent.ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["text"] == "still here")
                stats = await gw.board.plane.stats(call_id)
                assert stats["caller"]["recoveries"] >= 1 and stats["caller"]["state"] == "connected"
            finally:
                await caller.close()
                await agent.close()


async def recover_agent_media(agent: Agent, call_id: str) -> None:
    """What the console does when the gateway says it hears nothing from it: a new peer connection and its offer
    in the same call; the old one is closed once the new one is answered."""
    old = agent.peer
    await agent.join_media(call_id, tone_hz=AGENT_HZ)
    if old is not None:
        await old.close()


async def test_an_agent_whose_network_changes_gets_media_back_within_3_s(caller_token):
    async with running_gateway(media_silence_s=1.0) as gw:
        async with netns.extra_address("10.77.2.2") as office, netns.extra_address("10.77.2.3") as hotspot:
            agent = Agent(gw.base_url, addresses=[office])
            await agent.connect()
            caller = Caller(gw.base_url, caller_token(sub="steady"))
            await caller.connect()
            try:
                await caller.start("video", tone_hz=CALLER_HZ)
                offer = await agent.wait_offer()
                call_id = offer["call_id"]
                await agent.accept(call_id, tone_hz=AGENT_HZ)
                assert agent.peer is not None
                await wait_until(lambda: "audio" in caller.peer.slots and "video" in agent.peer.sinks
                                 and len(agent.peer.sinks["video"].counters) >= 10, 15)
                at_caller = caller.peer.slots["audio"]
                mark, caller_mark = len(agent.ws.messages), len(caller.ws.messages)

                agent.addresses = [hotspot]
                await netns.remove_address(office)
                removed_at = time.monotonic()
                await agent.ws.wait(lambda m: m.get("type") == "media.state" and m["leg"] == "agent"
                                    and m["state"] == "disconnected", timeout=5, since=mark)
                old_peer = agent.peer
                await recover_agent_media(agent, call_id)
                assert agent.peer is not old_peer

                # The agent's voice is back at the caller, the caller's video and voice at the agent.
                audio_mark = at_caller.mark()
                await wait_until(lambda: at_caller.audio_since(audio_mark) >= 5, 5)
                took = time.monotonic() - removed_at
                assert took < RECOVERY_S, f"the agent's voice came back at the caller after {took:.2f} s"
                await wait_until(lambda: at_caller.audio_since(audio_mark) >= 25, 5)
                assert abs(at_caller.frequency_since(audio_mark, at_most=25) - AGENT_HZ) < 30
                video = agent.peer.sinks["video"]
                await wait_until(lambda: len([c for c in video.counters if c is not None]) >= 10, 5)
                counters = [c for c in video.counters if c is not None]
                assert counters == sorted(counters)
                sink = agent.peer.slots["audio"]
                await wait_until(lambda: sink.audio_since(0) >= 25, 5)
                assert abs(sink.dominant_frequency(25) - CALLER_HZ) < 30

                assert gw.board.calls[call_id].state.value == "connected"
                told = [(m["type"], m["role"], m["cause"]) for m in caller.ws.messages[caller_mark:]
                        if m.get("type", "").startswith("participant.")]
                assert told[:2] == [("participant.reconnecting", "agent", "media"),
                                    ("participant.reconnected", "agent", "media")], told
                chat = await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "sorry, I was cut off"})
                assert chat["type"] != "error", chat
                await caller.ws.wait(lambda m: m["type"] == "chat.message"
                                     and m["message"]["text"] == "sorry, I was cut off")
            finally:
                await caller.close()
                await agent.close()


async def test_a_peer_connection_closed_under_the_caller_is_replaced_before_the_call_would_end(caller_token):
    """The app's media stack dies and says so (DTLS close): the gateway waits media_recovery_grace_s for a new
    offer instead of ending the call, and the SDK sends one at once: the same call goes on."""
    async with running_gateway(media_recovery_grace_s=5.0) as gw:
        heard = Heard()
        caller, agent, call_id = await sdk_call(gw, caller_token, ["127.0.0.1"], heard)
        assert agent.peer is not None
        try:
            video = agent.peer.sinks["video"]
            last_before = max(c for c in video.counters if c is not None)
            mark = caller.mark()
            first_pc = caller.peer_connection
            await first_pc.close()
            closed_at = time.monotonic()
            took = await video_resumes(video, closed_at, last_before)
            assert took < RECOVERY_S, took
            assert (await caller.wait_for("media_recovering", since=mark))["cause"] == "closed"
            assert caller.call_id == call_id and gw.board.calls[call_id].state.value == "connected"
            assert not [e for e in caller.events if e.name == "redialing"]
        finally:
            await caller.close()
            await agent.close()
