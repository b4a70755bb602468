"""Typed application keys: the app's state lives behind these, never in module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.auth import AgentDirectory, AgentSessions, CallerTokenVerifier
from gateway.config import Settings
from gateway.switchboard import Switchboard

if TYPE_CHECKING:
    from .metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
SWITCHBOARD = web.AppKey("switchboard", Switchboard)
CALLER_TOKENS = web.AppKey("caller_tokens", CallerTokenVerifier)
AGENT_DIRECTORY = web.AppKey("agent_directory", AgentDirectory)
AGENT_SESSIONS = web.AppKey("agent_sessions", AgentSessions)
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
READY = web.AppKey("ready", dict)
