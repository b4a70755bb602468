"""The browser clients do not trickle candidates the gateway refuses (mDNS names), in real Chromium."""

from __future__ import annotations

import pytest

from tests.e2e.browser import DESKTOP, new_page

pytestmark = pytest.mark.browser

CHECK = """async () => {
  const { candidateMessage } = await import('/static/caller/callin-client.js');
  const mdns = {candidate: 'candidate:1 1 udp 2122260223 9b36a2c4-2e1f-4b8e-8f43-3d2c1a0b9e8f.local 54321 typ host',
                sdpMid: '0', sdpMLineIndex: 0};
  const ip = {candidate: 'candidate:2 1 udp 2122260223 192.0.2.10 54321 typ host', sdpMid: '0', sdpMLineIndex: 0};
  // What Chromium itself makes of such a line: the address an RTCIceCandidate reports.
  const parsed = new RTCIceCandidate(mdns);
  return {mdns: candidateMessage(mdns, 'c1'), parsed: candidateMessage(parsed, 'c1'), parsedAddress: parsed.address,
          ip: candidateMessage(ip, 'c1'), end: candidateMessage(null, 'c1')};
}"""


async def test_mdns_candidates_are_not_sent(gateway, browser):
    context, page = await new_page(browser, gateway.base_url, viewport=DESKTOP)
    try:
        await page.goto("/caller/")
        result = await page.evaluate(CHECK)
    finally:
        await context.close()
    assert result["parsedAddress"].endswith(".local")
    assert result["mdns"] is None and result["parsed"] is None
    assert result["ip"]["candidate"].startswith("candidate:2 ") and result["ip"]["call_id"] == "c1"
    assert result["end"]["candidate"] is None  # end of candidates is still sent
