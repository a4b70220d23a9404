"""Typed application state keys shared by the app factory and the handlers."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from aiohttp import web

from bridge.config import Settings
from bridge.copernica.keys import KeyLookup
from bridge.metrics import Metrics
from bridge.platforms import PlatformClients
from bridge.security.vault import Vault
from bridge.supervise import Supervisor
from bridge.sync.ingest import WebhookIntake
from bridge.sync.jobs import JobQueue
from bridge.sync.runtime import SyncRuntime

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
QUEUE = web.AppKey("queue", JobQueue)
INTAKE = web.AppKey("intake", WebhookIntake)  # the webhook endpoint's round trips
VAULT = web.AppKey("vault", Vault)
METRICS = web.AppKey("metrics", Metrics)
ROLE = web.AppKey("role", str)
WEBHOOK_KEYS: web.AppKey[KeyLookup] = web.AppKey("webhook_keys")
SYNC = web.AppKey("sync", SyncRuntime)
PLATFORMS = web.AppKey("platforms", PlatformClients)  # every tenant's platform clients
SUPERVISOR = web.AppKey("supervisor", Supervisor)  # the long-lived tasks of this process
# (tenant, database) -> (monotonic, when, contacts, profiles): the counts behind the sync cost
RECORD_COUNTS: web.AppKey[dict[tuple[int, str], tuple[float, datetime, int, int]]] = web.AppKey(
    "record_counts"
)
