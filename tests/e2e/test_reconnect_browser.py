"""The caller widget in Chromium across dropped connections: a chat line swallowed by a dying socket comes back
after the resume (the client sends the last seq it processed), and the agent's console dropping and coming back
shows on the caller's screen."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import WebSocketRoute, expect

from tests.e2e.browser import PHONE, eventually, new_page, open_demo, open_widget, widget
from tests.support.clients import Agent, WsClient

pytestmark = pytest.mark.browser


async def test_widget_gets_back_what_a_dying_socket_swallowed_and_shows_the_agent_reconnecting(gateway, browser):
    caller_ctx, caller = await new_page(browser, gateway.base_url, viewport=PHONE, is_mobile=True)
    # Every caller socket of the page goes through this relay, which can swallow what the gateway sends: the
    # gateway writes successfully, the page never gets it (a connection that dies without a close).
    swallow = {"on": False}
    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    def relay(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        sockets.append((page_side, server_side))
        server_side.on_message(lambda m: None if swallow["on"] else page_side.send(m))
        page_side.on_message(lambda m: server_side.send(m))

    await caller.route_web_socket("**/ws/caller", relay)
    agent = Agent(gateway.base_url)
    agent_welcome = await agent.connect()
    await open_demo(caller, "Dana Whitfield")
    await open_widget(caller)
    await caller.evaluate("""(() => {
        const c = Callin.widgets[0].client;
        window.seen = {reconnected: [], chat: []};
        c.addEventListener('reconnected', (e) => window.seen.reconnected.push(e.detail));
        c.addEventListener('chat', (e) => window.seen.chat.push(e.detail.message.text));
    })()""")
    await widget(caller, '.option[data-call-type="voice"]').click()
    offer = await agent.wait_offer(timeout=15)
    call_id = offer["call_id"]
    await agent.ws.request({"type": "call.accept", "call_id": call_id})
    await expect(widget(caller, ".presence .who")).to_have_text("Alice (demo agent)")

    # The agent's console drops: the caller is told, then told it is back.
    await agent.ws.close()
    await expect(widget(caller, ".banner")).to_be_visible()
    await expect(widget(caller, ".banner")).to_contain_text("The agent is reconnecting")
    console = WsClient(gateway.base_url, "/ws/agent")
    await console.connect()
    resumed = await console.request({"type": "hello", "token": agent.token, "last_seq": agent.ws.last_seq,
                                     "resume_token": agent_welcome["resume_token"]})
    assert resumed["resumed"] is True
    await expect(widget(caller, ".banner")).to_be_hidden()

    # The caller's connection dies: a chat line is written to it but never reaches the page.
    last_seq = await caller.evaluate("Callin.widgets[0].client.lastSeq")
    assert last_seq > 0
    session = gateway.board.sessions.get(gateway.board.calls[call_id].caller_session)
    swallow["on"] = True
    await console.request({"type": "chat.send", "call_id": call_id, "text": "Still with me?"})
    assert session.sent_seq > last_seq  # handed to the dying socket
    page_side, server_side = sockets[-1]
    await server_side.close()
    swallow["on"] = False
    await page_side.close(code=4000, reason="test: connection died")

    # The widget resumes with its last seq and gets the line again (and only what it missed).
    reconnected = await eventually(lambda: caller.evaluate("window.seen.reconnected[0] ?? null"),
                                   what="the widget's resume")
    # At least the chat line; on a loaded machine the caller's media.state (its leg connecting) may have been
    # swallowed too. That nothing already seen came again is checked on the chat line below.
    assert reconnected["resumed"] is True and reconnected["complete"] is True and reconnected["replayed"] >= 1
    await eventually(lambda: caller.evaluate("window.seen.chat.includes('Still with me?')"), what="the chat line")
    assert await caller.evaluate("Callin.widgets[0].client.lastSeq") > last_seq
    assert await caller.evaluate("Callin.widgets[0].client.state") == "connected"
    texts: Any = await caller.evaluate("window.seen.chat")
    assert texts.count("Still with me?") == 1
    await console.request({"type": "call.hangup", "call_id": call_id})
    await console.close()
    await caller_ctx.close()
