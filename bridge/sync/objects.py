"""The Salesforce object the bridge syncs with Copernica profiles, described once: the engine,
the intake and the context name it through this description, never by a word of their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bridge.vocabulary import CDC_CHANNEL


@dataclass(frozen=True)
class SyncedObject:
    sobject: str  # the sObject's API name
    channel: str  # its Change Data Capture channel
    key_prefix: str  # the first three characters of its record ids
    required: tuple[str, ...]  # fields a create must give (Salesforce refuses it otherwise)


CONTACT: Final = SyncedObject(
    sobject="Contact", channel=CDC_CHANNEL, key_prefix="003", required=("LastName",)
)
