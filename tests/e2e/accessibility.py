"""axe-core (from the npm registry, installed by scripts/setup.sh --test beside TypeScript; never fetched by a page)
run in a page, for the accessibility tests (tests/e2e/test_accessibility.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE_VERSION = "4.10.3"
AXE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "callin" / f"axe-core-{AXE_VERSION}"
AXE_JS = AXE_HOME / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


async def violations(page: Page, state: str) -> list[str]:
    """The serious and critical WCAG 2 A/AA violations on the page as it is now (inside open shadow roots too), one
    line each: state, rule, impact, where, why."""
    assert AXE_JS.is_file(), f"axe-core {AXE_VERSION} is not installed at {AXE_JS} (run scripts/setup.sh --test)"
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through DevTools, not as a <script>: the console's CSP (script-src 'self') stays as it is.
        await page.evaluate(AXE_JS.read_text() + "\n;undefined")
    result: dict[str, Any] = await page.evaluate("""async () => await axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
        resultTypes: ['violations'],
    })""")
    lines = []
    for v in result["violations"]:
        if v["impact"] not in BLOCKING:
            continue
        for node in v["nodes"][:5]:
            target = " > ".join(str(t) for t in node["target"])
            lines.append(f"{state}: {v['id']} ({v['impact']}) at {target}: {node.get('failureSummary', '')[:300]}")
    return lines
