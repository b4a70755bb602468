"""Driving the console and the caller widget in Debian's Chromium (headless), for the browser tests and the
click-to-first-frame measurement. Never downloads a browser: Playwright launches /usr/bin/chromium."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = os.environ.get("CALLIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream=fps=30",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--auto-select-desktop-capture-source=Entire",
]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1440, "height": 900}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

# Berlin, Alexanderplatz: where the demo's card was blocked.
POSITION = {"latitude": 52.52192, "longitude": 13.41321, "accuracy": 18}


async def launch(pw: Playwright) -> Browser:
    return await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


async def new_page(browser: Browser, base_url: str, *, viewport: dict[str, int], geolocation: dict[str, float] | None = None,
                   is_mobile: bool = False) -> tuple[BrowserContext, Page]:
    options: dict[str, Any] = {"viewport": viewport, "base_url": base_url}
    if is_mobile:
        options.update(device_scale_factor=2, has_touch=True)
    if geolocation is not None:
        # Granting a permission through CDP denies every other one: grant camera and microphone too, as a user
        # who allowed everything would have (with camera/mic denied, Chrome gathers no local ICE candidates).
        options.update(geolocation=geolocation, permissions=["geolocation", "camera", "microphone"])
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.set_default_timeout(15000)
    page.on("pageerror", lambda exc: print(f"[{viewport['width']}px page error] {exc}"))
    page.on("console", lambda msg: msg.type in ("error",) and print(f"[{viewport['width']}px console.{msg.type}] {msg.text}"))
    return context, page


async def eventually(check: Callable[[], Any], timeout: float = 15, interval: float = 0.1, what: str = "condition") -> Any:
    """Await `check()` (sync or async) until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)


async def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------------------------- the console
async def open_console(page: Page, username: str = "alice", password: str = "alice-demo", *,
                       available: bool = True, auto_answer: bool = False) -> None:
    await page.goto("/console/")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin-button")
    await page.wait_for_selector("#app:not([hidden])")
    await eventually(lambda: page.evaluate("document.getElementById('status-pill').dataset.status !== 'offline'"),
                     what="the console's socket")
    if auto_answer:
        await page.locator("label.switch").click()  # the checkbox itself is visually hidden behind its track
        assert await page.is_checked("#auto-answer")
    if available:
        await page.click("#go-available")
        await eventually(lambda: page.evaluate("document.getElementById('status-pill').dataset.status === 'available'"),
                         what="status available")


async def console_stats(page: Page) -> dict[str, Any] | None:
    return await page.evaluate("callinConsole.stats()")


async def console_state(page: Page) -> dict[str, Any]:
    return await page.evaluate("callinConsole.state")


# ---------------------------------------------------------------------------------------------- the caller
async def open_demo(page: Page, name: str = "Dana Whitfield") -> None:
    await page.goto(f"/demo/?name={name}")
    await page.wait_for_function("window.Callin && Callin.widgets.length > 0")


async def open_widget(page: Page) -> None:
    await page.locator("callin-widget .launcher").click()
    await page.locator("callin-widget .option[data-call-type]").first.wait_for(state="visible")
    await eventually(lambda: page.evaluate("Callin.widgets[0].client?.state === 'ready'"), what="the widget's socket")


async def caller_stats(page: Page) -> dict[str, Any] | None:
    return await page.evaluate("Callin.widgets[0].client.getStats()")


async def caller_state(page: Page) -> str:
    return await page.evaluate("Callin.widgets[0].client?.state ?? null")


def widget(page: Page, selector: str):
    """A locator inside the caller widget (it renders in its own element)."""
    return page.locator(f"callin-widget {selector}")
