"""Two nodes on one Redis and one PostgreSQL (issue 10, item 9): the demo caller page on node A, the agent console
on node B, in real Chromium. The call is homed on A; the console's accept, SDP and hang-up reach A through B, and
media flows both ways (packets counted by each page's own WebRTC stats). Files across nodes: the console on B takes
a snapshot of the caller on A and sends the drawing back, shown by the widget on A.

Run inside a loopback-only network namespace:
    unshare -rn sh -c 'ip link set lo up; python -m pytest tests/e2e/test_cluster_browser.py -x -q'
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.browser import (
    DESKTOP,
    PHONE,
    caller_state,
    caller_stats,
    console_stats,
    eventually,
    new_page,
    open_console,
    open_demo,
    open_widget,
    widget,
)
from tests.support.cluster_nodes import Cluster, cluster


pytestmark = pytest.mark.browser


async def packets(read, key: str, at_least: int):
    stats = await read()
    value = ((stats or {}).get(key.split(".")[0]) or {}).get(key.split(".")[1]) or 0
    return value if value >= at_least else None


async def pages_across(nodes: Cluster, browser) -> tuple:
    """bob's console on node B and the demo caller page (Sam Okafor) on node A with its widget open, each in its
    own browser context, closed at the end. Returns (console page, caller page)."""
    a, b = nodes.nodes
    agent_ctx, agent = await new_page(browser, b.base_url, viewport=DESKTOP)
    nodes.closes(agent_ctx)
    caller_ctx, caller = await new_page(browser, a.base_url, viewport=PHONE, is_mobile=True)
    nodes.closes(caller_ctx)
    await open_console(agent, "bob", "bob-demo")
    await open_demo(caller, "Sam Okafor")
    await open_widget(caller)
    return agent, caller


async def call_rings(agent, caller, call_type: str) -> None:
    """The caller places a call of `call_type` (voice, video) from the widget; it rings at the console."""
    await widget(caller, f'.option[data-call-type="{call_type}"]').click()
    await expect(agent.locator("#view-ringing")).to_be_visible(timeout=20_000)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_caller_page_on_node_a_console_on_node_b(database_url, redis_url, tmp_path, browser):
    async with cluster(database_url, redis_url, tmp_path) as nodes:
        agent, caller = await pages_across(nodes, browser)
        await call_rings(agent, caller, "voice")
        await expect(agent.locator('#card [data-testid="caller-name"]')).to_have_text("Sam Okafor")
        await agent.click("#accept-button")
        await expect(widget(caller, ".presence .who")).to_have_text("Bob (demo agent)", timeout=20_000)
        await eventually(lambda: packets(lambda: caller_stats(caller), "audioIn.packetsReceived", 50), timeout=30,
                         what="the agent's audio at the caller (node B's console, media on node A)")
        await eventually(lambda: packets(lambda: console_stats(agent), "audioIn.packetsReceived", 50), timeout=30,
                         what="the caller's audio at the agent")

        await agent.keyboard.press("h")
        await expect(agent.locator("#view-ended")).to_be_visible(timeout=20_000)
        await expect(widget(caller, ".ended-text")).to_have_text("Bob (demo agent) ended the call.", timeout=20_000)
        assert await caller_state(caller) == "ended"


async def video_frames(agent) -> bool:
    stats = await console_stats(agent)
    return ((stats or {}).get("videoIn") or {}).get("framesDecoded", 0) > 5


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_console_on_node_b_snapshots_the_caller_on_node_a_and_pushes_the_drawing(database_url, redis_url,
                                                                                       tmp_path, browser):
    """Files across nodes in the browser: the console on B asks B for a snapshot (taken by A, where the caller's
    media is), the agent draws on it and sends it (uploaded through B, adopted by A), and the caller's widget on A
    shows the picture (downloaded through A from the shared database)."""
    async with cluster(database_url, redis_url, tmp_path) as nodes:
        agent, caller = await pages_across(nodes, browser)
        await call_rings(agent, caller, "video")
        await agent.click("#accept-button")
        await expect(agent.locator("#view-call")).to_be_visible(timeout=20_000)
        await eventually(lambda: video_frames(agent), timeout=30, what="the caller's video at the console on B")

        await agent.click("#snapshot-button")
        await expect(agent.locator("#snapshot-dialog")).to_be_visible()
        await expect(agent.locator("#snap-loading")).to_be_hidden(timeout=20_000)
        canvas = agent.locator("#snap-canvas")
        box = await canvas.bounding_box()
        await agent.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
        await agent.mouse.down()
        await agent.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=10)
        await agent.mouse.up()
        await agent.click("#snap-send")
        await expect(agent.locator("#snapshot-dialog")).to_be_hidden(timeout=20_000)
        image = widget(caller, ".tray .pushed.image")
        await expect(image).to_be_visible(timeout=20_000)
        await eventually(lambda: image.locator("img").evaluate("img => img.complete && img.naturalWidth > 0"),
                         timeout=20, what="the drawn snapshot on the caller's screen (node A)")
