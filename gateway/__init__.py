"""Callin's call engine: call domain, routing, auth and the media relay. Never imports aiohttp."""

__version__ = "0.1.0"
