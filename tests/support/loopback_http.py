"""Small real HTTP services on a free loopback port, for tests: a webhook receiver, a recognition service..."""

from __future__ import annotations

import json

from aiohttp import web

from .server import free_port


class LoopbackService:
    """An aiohttp app with one POST route (`handle`) on 127.0.0.1, run for the length of an `async with`."""

    path = "/"
    client_max_size = 1024 * 1024

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{self.path}"
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def __aenter__(self):  # -> the service itself (subclasses keep their own type)
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_post(self.path, self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class Receiver(LoopbackService):
    """A webhook receiver that answers 500 to the first `fail_first` requests and 204 after."""

    path = "/hooks/callin"

    def __init__(self, fail_first: int = 1) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if len(self.requests) <= self.fail_first:
            return web.Response(status=500, text="try again")
        return web.Response(status=204)

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.requests]
