"""Typed application keys: the app's state lives behind these, never in module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.auth import CallerTokenVerifier
from gateway.config import Settings
from gateway.destinations import DestinationPolicy
from gateway.signin_throttle import SignInThrottle
from gateway.store.attachments import AttachmentStore
from gateway.store.accounts import AccountStore
from gateway.store.apikeys import ApiKeyStore
from gateway.store.db import Database
from gateway.store.queues import QueueStore
from gateway.store.signins import SignInStore
from gateway.store.transcripts import TranscriptStore
from gateway.store.records import CallQueries, CallRecorder
from gateway.store.recordings import RecordingCatalog
from gateway.store.webhooks import WebhookDispatcher, WebhookStore
from gateway.switchboard import Switchboard

if TYPE_CHECKING:
    from .wallboard import WallboardHub
    from .metrics import Metrics
    from .signins import LiveSignIns
    from .shutdown import LiveSockets
    from .turnstile import Turnstile

SETTINGS = web.AppKey("settings", Settings)
SWITCHBOARD = web.AppKey("switchboard", Switchboard)
CALLER_TOKENS = web.AppKey("caller_tokens", CallerTokenVerifier)
SIGNINS = web.AppKey("signins", SignInStore)  # server-side agent sessions
LIVE_SIGNINS: web.AppKey["LiveSignIns"] = web.AppKey("live_signins")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
READY = web.AppKey("ready", dict)
ATTACHMENTS = web.AppKey("attachments", AttachmentStore)
WALLBOARD: web.AppKey["WallboardHub"] = web.AppKey("wallboard")
DATABASE = web.AppKey("database", Database)
ACCOUNTS = web.AppKey("accounts", AccountStore)
API_KEYS = web.AppKey("api_keys", ApiKeyStore)
RECORDER = web.AppKey("recorder", CallRecorder)
CALLS = web.AppKey("calls", CallQueries)
TRANSCRIPTS = web.AppKey("transcripts", TranscriptStore)
WEBHOOKS = web.AppKey("webhooks", WebhookStore)
QUEUES = web.AppKey("queues", QueueStore)
RECORDINGS = web.AppKey("recordings", RecordingCatalog)  # recorded files and their audit log
WEBHOOK_DISPATCHER = web.AppKey("webhook_dispatcher", WebhookDispatcher)
DESTINATIONS = web.AppKey("destinations", DestinationPolicy)
SIGNIN_THROTTLE = web.AppKey("signin_throttle", SignInThrottle)
LIVE_SOCKETS: web.AppKey["LiveSockets"] = web.AppKey("live_sockets")
TURNSTILE: web.AppKey["Turnstile"] = web.AppKey("turnstile")
