"""Pushed content, chat with attachments, and snapshots of the caller's video, through the real server."""

from __future__ import annotations

import io

import aiohttp
import av
import pytest

from tests.support.api import Api
from tests.support.clients import Agent, Caller, wait_until
from tests.support.media import read_counter

pytestmark = pytest.mark.media

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa75\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


async def in_call(gateway, caller_token, sub: str = "cust-42"):
    agent = Agent(gateway.base_url)
    await agent.connect()
    token = caller_token(sub=sub)
    caller = Caller(gateway.base_url, token)
    await caller.connect()
    await caller.start("video")
    offer = await agent.wait_offer()
    await agent.accept(offer["call_id"])
    return caller, agent, offer["call_id"], token


async def upload(gateway, call_id: str, token: str, data: bytes, name: str = "shot.png") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.base_url}/api/v1/calls/{call_id}/attachments", params={"name": name},
                             data=data, headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/octet-stream"}) as r:
            return r.status, await r.json()


async def fetch(gateway, path: str, token: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(gateway.base_url + path, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.read(), r.headers.get("Content-Type", "")


async def test_push_content_and_seen_opened_reports(gateway, caller_token):
    caller, agent, call_id, _ = await in_call(gateway, caller_token)
    sent = await agent.ws.request({"type": "content.push", "call_id": call_id, "kind": "link",
                                   "title": "Reset your PIN", "url": "https://bank.example/pin"})
    assert sent["type"] == "content.sent", sent
    pushed = await caller.ws.wait("content.pushed")
    content = pushed["content"]
    assert content["kind"] == "link" and content["url"] == "https://bank.example/pin" and content["title"]
    for status in ("seen", "opened"):
        ack = await caller.ws.request({"type": "content.status", "content_id": content["content_id"], "status": status})
        assert ack["type"] == "ack"
        report = await agent.ws.wait(lambda m, s=status: m["type"] == "content.status" and m["status"] == s)
        assert report["content_id"] == content["content_id"]
    text = await agent.ws.request({"type": "content.push", "call_id": call_id, "kind": "text", "text": "Ticket #123"})
    assert text["content"]["text"] == "Ticket #123"
    # Bad pushes: typed errors.
    for body, code in (({"kind": "link"}, "invalid_message"),
                       ({"kind": "link", "url": "javascript:alert(1)"}, "invalid_message"),
                       ({"kind": "image", "url": "http://insecure.example/a.png"}, "invalid_message"),
                       ({"kind": "image", "attachment_id": "0123456789abcdef"}, "unknown_attachment")):
        reply = await agent.ws.request({"type": "content.push", "call_id": call_id, **body})
        assert reply["code"] == code, (body, reply)
    unknown = await caller.ws.request({"type": "content.status", "content_id": "nope", "status": "seen"})
    assert unknown["code"] == "unknown_content"
    bob = Agent(gateway.base_url, "bob", "bob-demo")
    await bob.connect(available=False)
    foreign = await bob.ws.request({"type": "content.push", "call_id": call_id, "kind": "text", "text": "hi"})
    assert foreign["code"] == "not_your_call"
    kinds = [e.kind for e in gateway.board.calls[call_id].events]
    assert ["content_pushed", "content_seen", "content_opened"] == [k for k in kinds if k.startswith("content")][:3]
    await caller.close()
    await agent.close()
    await bob.close()


async def test_chat_both_ways_with_an_attachment(gateway, caller_token):
    caller, agent, call_id, token = await in_call(gateway, caller_token)
    status, attachment = await upload(gateway, call_id, token, PNG, "app screen.png")
    assert status == 201 and attachment["mime"] == "image/png" and attachment["name"] == "app screen.png"
    ack = await caller.ws.request({"type": "chat.send", "text": "this is what I see", "attachment_id": attachment["id"]})
    assert ack["type"] == "ack"
    message = (await agent.ws.wait("chat.message"))["message"]
    assert message["from"]["role"] == "caller" and message["text"] == "this is what I see"
    assert message["attachment"]["url"].endswith(attachment["id"])
    status, body, mime = await fetch(gateway, message["attachment"]["url"], agent.token)
    assert status == 200 and body == PNG and mime == "image/png"
    await agent.ws.request({"type": "chat.send", "call_id": call_id, "text": "Thanks, I see it"})
    reply = await caller.ws.wait(lambda m: m["type"] == "chat.message" and m["message"]["from"]["role"] == "agent")
    assert reply["message"]["text"] == "Thanks, I see it" and reply["message"]["from"]["name"].startswith("Alice")
    # Limits and ownership.
    status, body = await upload(gateway, call_id, token, b"\x00\x01binary junk\x00")
    assert status == 422 and body["code"] == "attachment_type"
    status, body = await upload(gateway, call_id, token, b"\x89PNG\r\n\x1a\n" + b"0" * (6 * 1024 * 1024))
    assert status == 422 and body["code"] == "attachment_too_large"
    status, body = await upload(gateway, call_id, caller_token(sub="someone-else"), PNG)
    assert status == 404 and body["code"] == "unknown_call"
    status, _, _ = await fetch(gateway, message["attachment"]["url"], caller_token(sub="someone-else"))
    assert status == 404
    too_long = await caller.ws.request({"type": "chat.send", "text": "x" * 2001})
    assert too_long["code"] == "invalid_message"
    empty = await caller.ws.request({"type": "chat.send"})
    assert empty["code"] == "invalid_message"
    # Stored with the call: the record's event log has the chat lines and the file.
    await caller.hangup()
    api = Api(gateway.base_url)
    await api.login("admin", "admin-demo")
    record = await api.ended_record(call_id)
    chats = [e["detail"] for e in record["events"] if e["kind"] == "chat"]
    assert [c["text"] for c in chats] == ["this is what I see", "Thanks, I see it"]
    assert chats[0]["attachment"] == attachment["id"]
    await api.close()
    await caller.close()
    await agent.close()


async def test_snapshot_is_decoded_on_demand_and_can_be_pushed_back(gateway, caller_token):
    caller, agent, call_id, token = await in_call(gateway, caller_token)
    await wait_until(lambda: "video" in agent.peer.sinks and len(agent.peer.sinks["video"].counters) > 10, 15)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.base_url}/api/v1/calls/{call_id}/snapshot",
                             headers={"Authorization": f"Bearer {agent.token}"}) as r:
            assert r.status == 201, await r.text()
            snap = await r.json()
    assert snap["mime"] == "image/jpeg" and (snap["width"], snap["height"]) == (320, 240)
    status, jpeg, mime = await fetch(gateway, snap["url"], agent.token)
    assert status == 200 and mime == "image/jpeg"
    picture = next(av.open(io.BytesIO(jpeg)).decode(video=0))
    counter = read_counter(picture)
    assert counter is not None and caller.video.counter - 90 <= counter <= caller.video.counter
    # The caller cannot take snapshots; the agent pushes the (drawn-on) still back as an image.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.base_url}/api/v1/calls/{call_id}/snapshot",
                             headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status in (401, 403)
    await agent.ws.request({"type": "content.push", "call_id": call_id, "kind": "image", "title": "Tap here",
                            "attachment_id": snap["id"]})
    pushed = (await caller.ws.wait("content.pushed"))["content"]
    status, body, _ = await fetch(gateway, pushed["attachment"]["url"], token)
    assert status == 200 and body == jpeg
    await caller.close()
    await agent.close()


async def test_a_photo_from_the_caller_gives_the_agent_its_codes_and_where_it_was_taken(gateway, caller_token):
    """Spare the caller typing: the QR code on a meter and the barcode of a parcel, read from the photo the caller
    sends; the photo's own GPS position with it. A picture the agent sends is not read."""
    import zxingcpp

    from tests.support.pictures import picture

    caller, agent, call_id, token = await in_call(gateway, caller_token)
    photo = picture([("METER 04-771-3392", zxingcpp.BarcodeFormat.QRCode),
                     ("<b>PARCEL</b> 77", zxingcpp.BarcodeFormat.Code128)], fmt="JPEG", gps=(48.858222, 2.2945))
    status, attachment = await upload(gateway, call_id, token, photo, "meter.jpg")
    assert status == 201 and attachment["mime"] == "image/jpeg", attachment
    await caller.ws.request({"type": "chat.send", "attachment_id": attachment["id"]})
    scan = (await agent.ws.wait("chat.message"))["message"]["attachment"]["scan"]
    assert sorted((c["format"], c["text"]) for c in scan["codes"]) == [("Code 128", "<b>PARCEL</b> 77"),
                                                                        ("QR Code", "METER 04-771-3392")]
    assert abs(scan["location"]["lat"] - 48.858222) < 1e-4 and abs(scan["location"]["lon"] - 2.2945) < 1e-4
    status, staff = await upload(gateway, call_id, agent.token, photo, "same.jpg")
    assert status == 201 and staff["scan"] is None
    await caller.close()
    await agent.close()
