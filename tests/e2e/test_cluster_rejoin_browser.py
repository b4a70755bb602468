"""A caller cut off by its node's death, in real Chromium (issue 10, item 6): the caller's page reaches the gateway
through a balancer, its call is homed on node A and answered by a console on node B; `kill -9` of A: the widget
reconnects (through the balancer, to B) with its resume token, says the call was cut off and that the caller is first
in line, sets up new media by itself, and the console on B is offered the caller again; media flows both ways.

Run inside a loopback-only network namespace:
    unshare -rn sh -c 'ip link set lo up; python -m pytest tests/e2e/test_cluster_rejoin_browser.py -x -q'
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.browser import (
    DESKTOP,
    PHONE,
    caller_stats,
    console_stats,
    eventually,
    new_page,
    open_console,
    open_demo,
    open_widget,
    widget,
)
from tests.e2e.test_cluster_browser import packets
from tests.support.balancer import RoundRobin
from tests.support.cluster_nodes import node, record_state, start


pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_widget_rejoins_at_the_front_when_its_node_dies(database_url, redis_url, tmp_path, browser):
    settings = {"node_dead_after_s": 3, "node_beat_s": 0.5}
    a = node(database_url, redis_url, tmp_path, "node-a", True, **settings)
    b = node(database_url, redis_url, tmp_path, "node-b", False, **settings)
    balancer = RoundRobin([a.port, b.port])
    try:
        await start(a)
        await start(b)
        balancer.ports = [a.port, a.port]  # the caller's page and sockets reach A while it lives
        await balancer.start()
        agent_ctx, agent = await new_page(browser, b.base_url, viewport=DESKTOP)
        caller_ctx, caller = await new_page(browser, balancer.base_url, viewport=PHONE, is_mobile=True)
        await open_console(agent, "bob", "bob-demo")
        await open_demo(caller, "Sam Okafor")
        await open_widget(caller)
        await caller.evaluate("window.cutOff = []; Callin.widgets[0].client.addEventListener('interrupted', "
                              "(e) => window.cutOff.push(e.detail))")
        await widget(caller, '.option[data-call-type="voice"]').click()
        await expect(agent.locator("#view-ringing")).to_be_visible(timeout=20_000)
        await agent.click("#accept-button")
        await expect(widget(caller, ".presence .who")).to_have_text("Bob (demo agent)", timeout=20_000)
        await eventually(lambda: packets(lambda: caller_stats(caller), "audioIn.packetsReceived", 50), timeout=30,
                         what="the agent's audio at the caller, before")
        first_call = await caller.evaluate("Callin.widgets[0].client.callId")
        await record_state(database_url, first_call, "connected")

        balancer.ports = [b.port, b.port]
        a.kill()
        await expect(agent.locator("#view-ringing")).to_be_visible(timeout=40_000)  # offered the caller again
        cut_off = await caller.evaluate("window.cutOff")
        assert len(cut_off) == 1 and cut_off[0]["callId"] == first_call, cut_off
        second_call = await caller.evaluate("Callin.widgets[0].client.callId")
        assert second_call == cut_off[0]["rejoinedCallId"] != first_call
        assert await caller.evaluate("Callin.widgets[0].client.state") == "queued"
        await expect(agent.locator('#card [data-testid="caller-name"]')).to_have_text("Sam Okafor")
        await agent.click("#accept-button")
        await expect(widget(caller, ".presence .who")).to_have_text("Bob (demo agent)", timeout=20_000)
        await eventually(lambda: packets(lambda: caller_stats(caller), "audioIn.packetsReceived", 50), timeout=30,
                         what="the agent's audio at the caller, after (new media, on node B)")
        await eventually(lambda: packets(lambda: console_stats(agent), "audioIn.packetsReceived", 50), timeout=30,
                         what="the caller's audio at the agent, after")
        await caller_ctx.close()
        await agent_ctx.close()
    finally:
        await balancer.close()
        a.close()
        b.close()
