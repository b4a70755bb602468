"""Nothing lost across a silent drop: numbered events and replay on resume, the other side told, resume failures
that say why, and routing that skips consoles whose socket is gone."""

from __future__ import annotations

from typing import Any

from tests.support.clients import Agent, Caller, WsClient, wait_until
from tests.support.server import running_gateway


async def connected_call(gw: Any, caller_token: Any, sub: str = "cust-1") -> tuple[Caller, Agent, str]:
    """A caller and alice in a connected call (signaling only: chat and notices need no media)."""
    agent = Agent(gw.base_url)
    await agent.connect()
    caller = Caller(gw.base_url, caller_token(sub=sub))
    await caller.connect()
    queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
    offer = await agent.wait_offer()
    accepted = await agent.ws.request({"type": "call.accept", "call_id": offer["call_id"]})
    assert accepted["type"] == "call.accepted", accepted
    await caller.ws.wait("call.answered")
    return caller, agent, queued["call_id"]


async def resume(gw: Any, token: str, resume_token: str, last_seq: int | None) -> tuple[WsClient, dict[str, Any]]:
    ws = WsClient(gw.base_url, "/ws/caller")
    await ws.connect()
    hello: dict[str, Any] = {"type": "hello", "token": token, "resume_token": resume_token}
    if last_seq is not None:
        hello["last_seq"] = last_seq
    return ws, await ws.request(hello)


async def test_a_chat_line_sent_while_the_caller_silently_vanished_is_replayed_after_resume(caller_token):
    async with running_gateway(ws_heartbeat_s=2.0, resume_grace_s=30) as gw:
        caller, agent, call_id = await connected_call(gw, caller_token)
        seqs = [m["seq"] for m in caller.ws.messages if "seq" in m and m["seq"] is not None]
        assert seqs and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # every event numbered, in order
        last_seen = caller.ws.last_seq
        session = gw.board.sessions.get(caller.welcome["session_id"])

        caller.ws.silence()  # the phone is gone: the socket stays open, nothing is read, no pong
        ack = await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "are you still there?"})
        assert ack["type"] == "ack"
        # The line was written to the dead socket (this is what used to be lost).
        assert session.attached and session.sent_seq > last_seen

        # The heartbeat finds the dead peer within seconds; alice is told.
        notice = await agent.ws.wait("participant.reconnecting", timeout=15)
        assert notice["call_id"] == call_id and notice["role"] == "caller" and notice["seq"] >= 1
        assert not session.attached

        ws, welcome = await resume(gw, caller.token, caller.welcome["resume_token"], last_seen)
        assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
        assert welcome["replay_complete"] is True and welcome["replayed"] >= 1
        line = await ws.wait("chat.message")
        assert line["message"]["text"] == "are you still there?" and line["seq"] > last_seen
        back = await agent.ws.wait("participant.reconnected")
        assert back["call_id"] == call_id and back["role"] == "caller"
        # Numbering goes on in the same sequence after the resume.
        await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "welcome back"})
        after = await ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["text"] == "welcome back")
        assert after["seq"] == line["seq"] + 1 or after["seq"] > line["seq"]
        assert [m["seq"] for m in ws.messages if m.get("seq")] == sorted(m["seq"] for m in ws.messages if m.get("seq"))
        await ws.close()
        await caller.close()
        await agent.close()


async def test_the_caller_is_told_when_the_agent_reconnects(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:
        caller, agent, call_id = await connected_call(gw, caller_token)
        welcome = await agent.ws.wait("welcome")
        await agent.ws.close()  # the console's socket drops (no bye)
        notice = await caller.ws.wait("participant.reconnecting")
        assert notice["role"] == "agent" and notice["name"] == "Alice (demo agent)" and notice["call_id"] == call_id
        console = WsClient(gw.base_url, "/ws/agent")
        await console.connect()
        resumed = await console.request({"type": "hello", "token": agent.token,
                                         "resume_token": welcome["resume_token"], "last_seq": agent.ws.last_seq})
        assert resumed["resumed"] is True and resumed["call"]["call_id"] == call_id
        assert (await caller.ws.wait("participant.reconnected"))["role"] == "agent"
        await console.close()
        await caller.close()


async def test_a_resume_after_the_grace_period_says_why_and_how_the_call_ended(caller_token):
    async with running_gateway(resume_grace_s=0.5) as gw:
        caller, agent, call_id = await connected_call(gw, caller_token)
        await caller.ws.close()  # away, without bye
        await agent.ws.wait("participant.reconnecting")
        await agent.ws.request({"type": "call.hangup", "call_id": call_id})  # the agent hangs up meanwhile
        await wait_until(lambda: gw.board.sessions.get(caller.welcome["session_id"]) is None, 10)
        ws, refused = await resume(gw, caller.token, caller.welcome["resume_token"], caller.ws.last_seq)
        assert refused["type"] == "error" and refused["code"] == "resume_failed"
        assert refused["detail"]["why"] == "expired"
        assert refused["detail"]["call"] == {"call_id": call_id, "reason": "agent_hangup", "by": "agent"}
        assert "agent_hangup" in refused["reason"]
        await wait_until(lambda: ws.close_code == 4401, 5)
        await ws.close()

        # A token never issued here (or before a restart) is "unknown"; a session closed with bye is "closed".
        ws, refused = await resume(gw, caller.token, "no-such-token", None)
        assert refused["code"] == "resume_failed" and refused["detail"] == {"why": "unknown", "call": None}
        await ws.close()
        other = Caller(gw.base_url, caller_token(sub="cust-2"))
        await other.connect()
        await other.ws.request({"type": "call.start", "call_type": "voice"})
        await other.ws.request({"type": "bye"})
        ws, refused = await resume(gw, other.token, other.welcome["resume_token"], None)
        assert refused["detail"]["why"] == "closed"
        assert refused["detail"]["call"]["reason"] == "caller_disconnected"
        await ws.close()
        await other.close()
        await caller.close()
        await agent.close()


async def test_a_replay_that_no_longer_holds_every_missed_event_says_so(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:  # the default buffer: 256 events
        caller, agent, call_id = await connected_call(gw, caller_token)
        last_seen = caller.ws.last_seq
        await caller.ws.close()
        await agent.ws.wait("participant.reconnecting")
        for i in range(300):
            await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": f"line {i}"})
        ws, welcome = await resume(gw, caller.token, caller.welcome["resume_token"], last_seen)
        assert welcome["replay_complete"] is False and welcome["replayed"] == 256
        await ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["text"] == "line 299")
        texts = [m["message"]["text"] for m in ws.of_type("chat.message")]
        assert texts == [f"line {i}" for i in range(44, 300)]  # the newest 256, in order, on a socket left open
        assert ws.close_code is None
        # A last_seq ahead of the session's events is refused, and nothing changes.
        bad = WsClient(gw.base_url, "/ws/caller")
        await bad.connect()
        refused = await bad.request({"type": "hello", "token": caller.token,
                                     "resume_token": caller.welcome["resume_token"], "last_seq": 10**6})
        assert refused["code"] == "invalid_last_seq"
        assert gw.board.sessions.get(caller.welcome["session_id"]).attached  # still on the good socket
        await bad.close()
        await ws.close()
        await caller.close()
        await agent.close()


async def test_queue_positions_replayed_are_only_the_latest(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:
        waiting = [Caller(gw.base_url, caller_token(sub=f"w{i}")) for i in range(4)]
        queued = []
        for c in waiting:
            await c.connect()
            queued.append(await c.ws.request({"type": "call.start", "call_type": "voice"}))
        last = waiting[-1]
        last_seen = last.ws.last_seq
        await last.ws.close()
        await wait_until(lambda: not gw.board.sessions.get(last.welcome["session_id"]).attached)
        for c in waiting[:3]:  # the three ahead give up: position 4 -> 3 -> 2 -> 1
            await c.ws.request({"type": "call.hangup"})
        # Positions are coalesced (at most one a second per caller): wait until the last one has been delivered.
        await wait_until(lambda: (gw.board.positions.told(queued[-1]["call_id"]) or (0,))[0] == 1)
        ws, welcome = await resume(gw, last.token, last.welcome["resume_token"], last_seen)
        position = await ws.wait("queue.position")
        assert position["position"] == 1 and welcome["replayed"] == 1 and welcome["replay_complete"] is True
        await ws.close()
        for c in waiting:
            await c.close()


async def test_routing_skips_an_agent_whose_console_is_gone_and_offers_again_when_it_is_back(caller_token):
    async with running_gateway(resume_grace_s=30) as gw:
        alice = Agent(gw.base_url)
        welcome = await alice.connect()
        await alice.ws.close()  # her socket drops; she is still signed in and available, within her grace
        await wait_until(lambda: not gw.board.sessions.get(welcome["session_id"]).attached)
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        call = gw.board.calls[queued["call_id"]]
        assert call.state.value == "queued" and call.offered_to is None  # not rung at a console nobody sees
        assert gw.board.agents["alice"].status.value == "available"

        console = WsClient(gw.base_url, "/ws/agent")
        await console.connect()
        resumed = await console.request({"type": "hello", "token": alice.token,
                                         "resume_token": welcome["resume_token"], "last_seq": alice.ws.last_seq})
        assert resumed["resumed"] is True
        offer = await console.wait("call.offered")  # back: the waiting call rings there now
        assert offer["call_id"] == queued["call_id"]
        assert console.messages.index(resumed) < console.messages.index(offer)
        await console.close()
        await caller.close()


async def test_a_call_ringing_at_a_console_that_drops_goes_to_another_agent_at_once(caller_token):
    async with running_gateway(resume_grace_s=30, ring_timeout_s=60) as gw:
        alice, bob = Agent(gw.base_url), Agent(gw.base_url, "bob", "bob-demo")
        await alice.connect()
        await bob.connect(available=False)
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        await alice.wait_offer()
        await bob.ws.request({"type": "agent.status", "status": "available"})
        await alice.ws.close()  # the ringing console drops: the call must not ring there for a minute
        offer = await bob.wait_offer(timeout=10)
        assert offer["call_id"] == queued["call_id"]
        await caller.close()
        await bob.close()


async def test_a_lone_agent_whose_console_dropped_while_ringing_is_offered_the_call_again_once_back(caller_token):
    async with running_gateway(resume_grace_s=30, ring_timeout_s=60, reoffer_after_decline_s=600) as gw:
        alice = Agent(gw.base_url)
        welcome = await alice.connect()
        caller = Caller(gw.base_url, caller_token())
        await caller.connect()
        queued = await caller.ws.request({"type": "call.start", "call_type": "voice"})
        await alice.wait_offer()
        await alice.ws.close()
        await wait_until(lambda: gw.board.calls[queued["call_id"]].state.value == "queued")
        console = WsClient(gw.base_url, "/ws/agent")
        await console.connect()
        await console.request({"type": "hello", "token": alice.token, "resume_token": welcome["resume_token"],
                               "last_seq": alice.ws.last_seq})
        withdrawn = await console.wait("call.offer_withdrawn")  # replayed: what happened while she was away
        assert withdrawn["reason"] == "agent_disconnected"
        again = await console.wait(lambda m: m["type"] == "call.offered" and m["call_id"] == queued["call_id"])
        assert again["seq"] > withdrawn["seq"]  # at once, not after the 10-minute new round
        await console.close()
        await caller.close()
