"""TURN with ephemeral credentials (issue 12 items 3-4), against a real coturn started inside the test's loopback-only
network namespace. The caller gathers on an address of its own; an iptables rule drops what a firewall in its network
would drop, so its media must go through TURN: over UDP, over TCP when UDP is blocked, over TLS when only TLS gets
through. Media is checked by content at the agent (frame counters in order, the caller's tone)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aioice.turn
from aioice.stun import TransactionFailed
import pytest
from aiortc import RTCIceServer

from gateway.media import aiortc_internals as internals
from gateway.turn import mint_turn_server, turn_password
from tests.support import netns
from tests.support.clients import Agent, Caller, Peer, WsClient, wait_until
from tests.support.server import running_gateway
from tests.support.turn import TURN_SECRET, Turn, running_turn

pytestmark = pytest.mark.media

CALLER_ADDRESS = "10.77.0.5"  # the caller's own network (on lo); the gateway's media and coturn are on 127.0.0.1


def turn_entry(welcome: dict[str, Any]) -> dict[str, Any]:
    entries = [s for s in welcome["ice_servers"] if any(u.startswith(("turn:", "turns:")) for u in s["urls"])]
    assert len(entries) == 1, welcome["ice_servers"]
    return entries[0]


def using(entry: dict[str, Any], url: str) -> list[RTCIceServer]:
    """The welcome's TURN entry with `url` alone (aiortc uses one TURN URL; a browser tries them all)."""
    assert url in entry["urls"], (url, entry["urls"])
    return [RTCIceServer(urls=[url], username=entry["username"], credential=entry["credential"])]


async def call_through(gw: Any, caller_token: Any, turn: Turn, transport: str) -> tuple[Caller, Agent]:
    """A caller on CALLER_ADDRESS with the welcome's TURN credentials (URL of `transport`), answered by an agent;
    returns once the agent gets the caller's video."""
    caller = Caller(gw.base_url, caller_token(sub=f"turn-{transport}"), addresses=[CALLER_ADDRESS])
    welcome = await caller.connect()
    caller.peer = Peer([CALLER_ADDRESS], ice_servers=using(turn_entry(welcome), turn.url(transport)))
    agent = Agent(gw.base_url)
    await agent.connect()
    await caller.start("video")
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"], tone_hz=440)
    return caller, agent


async def media_arrives_through_the_relay(caller: Caller, agent: Agent) -> None:
    assert agent.peer is not None
    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) >= 30, 30)
    counters = agent.peer.sinks["video"].counters
    assert None not in counters and counters == sorted(counters) and counters[-1] > counters[0]
    await wait_until(lambda: "audio" in agent.peer.sinks and len(agent.peer.sinks["audio"].audio) >= 50, 20)
    assert abs(agent.peer.sinks["audio"].dominant_frequency() - 880) < 30
    assert {local for local, _ in internals.nominated_candidate_types(caller.peer.pc)} == {"relay"}


@pytest.fixture
async def turn(tmp_path: Path):
    async with running_turn(tmp_path) as server:
        yield server


def turn_settings(turn: Turn, **more: Any) -> dict[str, Any]:
    return {"turn_urls": turn.urls, "turn_secret": TURN_SECRET, **more}


async def test_turn_over_udp_carries_the_call_when_the_direct_path_is_blocked(caller_token, turn):
    async with running_gateway(**turn_settings(turn)) as gw, netns.extra_address(CALLER_ADDRESS):
        async with netns.firewall(["-p", "udp", "-s", CALLER_ADDRESS]):  # no UDP from the caller's own address
            caller, agent = await call_through(gw, caller_token, turn, "udp")
            try:
                await media_arrives_through_the_relay(caller, agent)
            finally:
                await caller.close()
                await agent.close()


async def test_without_turn_the_same_firewall_leaves_the_call_without_media(caller_token, turn):
    """The control: with the rule of the tests above and no TURN server, ICE never connects and the gateway ends the
    call media_failed (so it is TURN that carried the calls above). The gateway gives up after 10 s here, not the
    default 30: no path exists, so waiting longer only proves the same thing later."""
    async with running_gateway(**turn_settings(turn, media_connect_timeout_s=10)) as gw, \
            netns.extra_address(CALLER_ADDRESS):
        async with netns.firewall(["-p", "udp", "-s", CALLER_ADDRESS]):
            caller = Caller(gw.base_url, caller_token(sub="turn-none"), addresses=[CALLER_ADDRESS])
            await caller.connect()
            agent = Agent(gw.base_url)
            await agent.connect()
            try:
                await caller.start("video")
                await agent.accept((await agent.wait_offer())["call_id"], tone_hz=440)
                ended = await caller.ws.wait("call.ended", timeout=90)  # the gateway gives up on the caller's leg
                assert ended["reason"] == "media_failed", ended
                assert not internals.nominated_candidate_types(caller.peer.pc)
            finally:
                await caller.close()
                await agent.close()


async def test_turn_over_tcp_when_the_callers_network_blocks_udp(caller_token, turn):
    async with running_gateway(**turn_settings(turn)) as gw, netns.extra_address(CALLER_ADDRESS):
        # No UDP from the caller at all: neither directly to the relay nor to the TURN server.
        async with netns.firewall(["-p", "udp", "-s", CALLER_ADDRESS], ["-p", "udp", "--dport", str(turn.port)]):
            caller, agent = await call_through(gw, caller_token, turn, "tcp")
            try:
                await media_arrives_through_the_relay(caller, agent)
            finally:
                await caller.close()
                await agent.close()


async def test_turn_over_tls_when_only_tls_gets_through(caller_token, turn, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(turn.cert))  # the test TURN server's certificate is trusted
    async with running_gateway(**turn_settings(turn)) as gw, netns.extra_address(CALLER_ADDRESS):
        async with netns.firewall(["-p", "udp", "-s", CALLER_ADDRESS], ["-p", "udp", "--dport", str(turn.port)],
                                  ["-p", "tcp", "--dport", str(turn.port)]):
            caller, agent = await call_through(gw, caller_token, turn, "tls")
            try:
                await media_arrives_through_the_relay(caller, agent)
            finally:
                await caller.close()
                await agent.close()


async def allocate(turn: Turn, username: str, password: str, transport: str = "udp") -> tuple[str, int]:
    endpoint, _ = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol, server_addr=("127.0.0.1", turn.port), username=username, password=password,
        transport=transport)
    try:
        return endpoint.get_extra_info("sockname")
    finally:
        endpoint.close()


async def test_minted_credentials_are_accepted_and_expired_or_forged_ones_refused(turn):
    fresh = mint_turn_server(TURN_SECRET, turn.urls, "session-1", 600, time.time())
    assert fresh.username is not None and fresh.credential is not None
    relayed = await allocate(turn, fresh.username, fresh.credential)
    assert relayed[0] == "127.0.0.1" and turn.relay_ports[0] <= relayed[1] <= turn.relay_ports[1]
    expired = mint_turn_server(TURN_SECRET, turn.urls, "session-1", 600, time.time() - 3600)  # ran out 50 min ago
    with pytest.raises(TransactionFailed, match="401"):
        await allocate(turn, expired.username, expired.credential)
    with pytest.raises(TransactionFailed, match="401"):  # a password not made with the secret
        await allocate(turn, fresh.username, turn_password("another-secret-of-16+", fresh.username))


async def test_welcome_mints_a_credential_per_session_renewed_on_resume_and_relay_only_for_callers(caller_token, turn):
    async with running_gateway(**turn_settings(turn, turn_credential_ttl_s=600, turn_relay_only_callers=True)) as gw:
        caller = WsClient(gw.base_url, "/ws/caller")
        await caller.connect()
        token = caller_token(sub="turn-welcome")
        welcome = await caller.request({"type": "hello", "token": token})
        entry = turn_entry(welcome)
        expiry, _, session = entry["username"].partition(":")
        assert session == welcome["session_id"] and 590 <= int(expiry) - time.time() <= 610
        assert entry["credential"] == turn_password(TURN_SECRET, entry["username"])
        assert entry["urls"] == turn.urls and welcome["ice_transport_policy"] == "relay"
        await asyncio.sleep(1.1)
        await caller.close()
        again = WsClient(gw.base_url, "/ws/caller")
        await again.connect()
        resumed = await again.request({"type": "hello", "token": token, "resume_token": welcome["resume_token"]})
        assert resumed["resumed"] is True
        renewed = turn_entry(resumed)
        assert int(renewed["username"].partition(":")[0]) > int(expiry)  # a fresh credential, not the old one
        await again.close()
        agent = Agent(gw.base_url)
        await agent.connect()
        agent_welcome = next(m for m in agent.ws.messages if m["type"] == "welcome")
        assert agent_welcome["ice_transport_policy"] == "all"  # the console is not forced through the relay
        assert turn_entry(agent_welcome)["username"].endswith(":" + agent_welcome["session_id"])
        await agent.close()
