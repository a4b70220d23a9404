"""Everything the bridge says to or hears from Copernica: REST client, errors, webhook intake."""

from __future__ import annotations

from bridge.copernica.client import CopernicaClient, condition, timestamp
from bridge.copernica.errors import CopernicaError, CreatedWithoutId, NameTaken, NotSent
from bridge.copernica.keys import DnsTxtKeys, KeyLookup, SandboxKeys, static_keys
from bridge.copernica.models import (
    Database,
    Emailing,
    EmailingStatistics,
    Field,
    Profile,
    Template,
    View,
    Webhook,
)
from bridge.copernica.webhooks import (
    MailingEvent,
    ProfileEvent,
    SubprofileEvent,
    WebhookEvent,
    WebhookRejected,
    receive_webhook,
)

__all__ = [
    "CopernicaClient",
    "CopernicaError",
    "CreatedWithoutId",
    "Database",
    "DnsTxtKeys",
    "Emailing",
    "EmailingStatistics",
    "Field",
    "KeyLookup",
    "MailingEvent",
    "NameTaken",
    "NotSent",
    "Profile",
    "ProfileEvent",
    "SandboxKeys",
    "SubprofileEvent",
    "Template",
    "View",
    "Webhook",
    "WebhookEvent",
    "WebhookRejected",
    "condition",
    "receive_webhook",
    "static_keys",
    "timestamp",
]
