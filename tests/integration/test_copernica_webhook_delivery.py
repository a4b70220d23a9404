"""End to end: the sandbox signs and delivers, the bridge's intake verifies with the published key."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridge.copernica import CopernicaClient, ProfileEvent, SandboxKeys, receive_webhook
from bridge.copernica.webhooks import WebhookRejected
from bridge.vocabulary import WEBHOOK_TRIGGERS
from tests.fixtures.copernica import RunningSandbox

pytestmark = pytest.mark.asyncio


async def test_sandbox_deliveries_verify_with_the_published_key(
    copernica_sandbox: RunningSandbox,
    copernica_client: CopernicaClient,
    copernica_webhook_receiver: Any,
) -> None:
    await copernica_client.create_field(1, "Email", "email")
    for trigger in WEBHOOK_TRIGGERS:
        await copernica_client.create_webhook(copernica_webhook_receiver.url, trigger)
    pid = await copernica_client.create_profile(1, {"Email": "a@x.org"})
    await copernica_client.update_profile_fields(pid, {"Email": "b@x.org"})
    await copernica_sandbox.admin("DELETE", f"profiles/{pid}")  # a user, not REST
    received = await copernica_webhook_receiver.wait_for(3)
    keys = SandboxKeys(copernica_sandbox.url)
    events = []
    for hook in received:
        event = await receive_webhook(
            hook.method, hook.path, hook.headers, hook.body, keys, time.time()
        )
        assert isinstance(event, ProfileEvent) and event.profile_id == pid
        events.append((event.type, event.fields["Email"]))
    assert events == [("create", "a@x.org"), ("update", "b@x.org"), ("delete", "b@x.org")]
    replayed = received[0]
    with pytest.raises(WebhookRejected) as caught:
        await receive_webhook(
            "POST", replayed.path, replayed.headers, replayed.body, keys, time.time() + 300
        )
    assert caught.value.status == 401


async def test_rest_write_answers_before_the_webhook_is_delivered(
    copernica_sandbox: RunningSandbox,
    copernica_client: CopernicaClient,
    copernica_webhook_receiver: Any,
) -> None:
    await copernica_client.create_webhook(copernica_webhook_receiver.url, "create")
    await copernica_sandbox.admin("POST", "webhooks/faults", {"fail": 1})
    await copernica_client.create_profile(1, {})
    assert (
        copernica_webhook_receiver.received == []
    )  # the first attempt failed; the retry comes later
    await copernica_webhook_receiver.wait_for(1)
