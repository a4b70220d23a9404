"""The bridge's CDC stream (aiosfstream-ng + shim) against the sandbox."""

from __future__ import annotations

import asyncio

from bridge.salesforce import SalesforceClient
from bridge.salesforce.stream import (
    ChangeEvent,
    GapEvent,
    MemoryReplayStore,
    OverflowEvent,
    ReplayIdInvalid,
    ReplayMarker,
    SalesforceStream,
    StreamItem,
)
from bridge.vocabulary import CDC_CHANNEL as CHANNEL
from tests.fixtures.salesforce import RunningSandbox


async def take(stream: SalesforceStream, count: int, seconds: float = 10) -> list[StreamItem]:
    async def collect() -> list[StreamItem]:
        items = []
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
        return items

    return await asyncio.wait_for(collect(), seconds)


async def remember(store: MemoryReplayStore, item: StreamItem) -> None:
    """What the ingest does once an item's jobs are stored: keep its replay marker."""
    assert not isinstance(item, ReplayIdInvalid)
    millis = int(item.commit_timestamp.timestamp() * 1000)
    await store.set(item.channel, ReplayMarker(item.replay_id, str(millis)))


def stream_for(
    client: SalesforceClient, store: MemoryReplayStore, **kw: object
) -> SalesforceStream:
    return SalesforceStream(client, CHANNEL, store, connection_timeout=5, **kw)  # type: ignore[arg-type]


async def test_typed_change_events(sf_client: SalesforceClient, sf_sandbox: RunningSandbox) -> None:
    store = MemoryReplayStore()
    async with stream_for(sf_client, store) as stream:
        record_id = await sf_client.create(
            "Contact",
            {
                "LastName": "Doe",
                "FirstName": "Jane",
                "MailingCity": "Amsterdam",
                "Birthdate": "1988-04-17",
            },
        )
        await sf_sandbox.admin(
            "PATCH", f"/contacts/{record_id}", {"LastName": "Doe-Smith", "MailingCity": "Utrecht"}
        )
        created, updated = await take(stream, 2)
    assert isinstance(created, ChangeEvent) and isinstance(updated, ChangeEvent)
    assert created.change_type == "CREATE" and created.record_ids == [record_id]
    assert created.values["FirstName"] == "Jane" and created.values["MailingCity"] == "Amsterdam"
    assert created.values["Birthdate"] == "1988-04-17"
    assert created.origin_client == "test-bridge"
    assert updated.change_type == "UPDATE"
    assert updated.changed_fields == ["LastName", "MailingCity", "LastModifiedDate"]
    assert updated.values["LastName"] == "Doe-Smith"
    assert updated.origin_client is None and updated.change_origin == ""
    assert updated.replay_id > created.replay_id
    assert store.markers == {}  # the stream stores no marker itself


async def test_events_without_a_stored_marker_come_back_after_restart(sf_client: SalesforceClient) -> None:
    store = MemoryReplayStore()
    async with stream_for(sf_client, store) as stream:
        first = await sf_client.create("Contact", {"LastName": "First"})
        second = await sf_client.create("Contact", {"LastName": "Second"})
        one, two = await take(stream, 2)
        await remember(store, one)
    assert store.markers[CHANNEL].replay_id == one.replay_id
    third = await sf_client.create("Contact", {"LastName": "Third"})
    async with stream_for(sf_client, store) as stream:
        again = await take(stream, 2)
    assert [i.record_ids[0] for i in again] == [second, third]  # type: ignore[union-attr]
    assert [one.record_ids, two.record_ids] == [[first], [second]]  # type: ignore[union-attr]


async def test_survives_http_500_and_dropped_client_without_loss_or_duplicates(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    store = MemoryReplayStore()
    written: list[str] = []
    received: list[str] = []
    async with stream_for(sf_client, store) as stream:
        written.append(await sf_client.create("Contact", {"LastName": "A"}))
        received += [i.record_ids[0] for i in await take(stream, 1)]  # type: ignore[union-attr]
        # every CometD POST fails twice, then the held connect is cut by a dropped client
        await sf_sandbox.admin("POST", "/faults", {"path": "/cometd/*", "status": 500, "times": 2})
        await sf_sandbox.admin("POST", "/streaming/drop", {})
        for name in ("B", "C"):
            written.append(await sf_client.create("Contact", {"LastName": name}))
        received += [i.record_ids[0] for i in await take(stream, 2)]  # type: ignore[union-attr]
        await sf_sandbox.admin("POST", "/streaming/drop", {})
        written.append(await sf_client.create("Contact", {"LastName": "D"}))
        items = await take(stream, 1)
        received += [i.record_ids[0] for i in items]  # type: ignore[union-attr]
        for item in items:
            await remember(store, item)
        assert not stream._signals
    assert received == written
    assert len(set(received)) == 4


async def test_invalid_replay_id_surfaces_and_falls_back(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    store = MemoryReplayStore()
    async with stream_for(sf_client, store) as stream:
        await sf_client.create("Contact", {"LastName": "Old"})
        [old] = await take(stream, 1)
        await remember(store, old)
    await sf_client.create("Contact", {"LastName": "Lost"})
    await sf_sandbox.admin("POST", "/cdc/purge", {})
    kept = await sf_client.create("Contact", {"LastName": "Kept"})
    async with stream_for(sf_client, store) as stream:
        signal, event = await take(stream, 2)
    assert isinstance(signal, ReplayIdInvalid) and signal.replay_id == old.replay_id
    assert isinstance(event, ChangeEvent) and event.record_ids == [kept]


async def test_gap_and_overflow_signals(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    async with stream_for(sf_client, MemoryReplayStore()) as stream:
        record_id = await sf_client.create("Contact", {"LastName": "Gappy"})
        await sf_sandbox.admin(
            "POST", "/cdc/gap", {"record_ids": [record_id], "change_type": "GAP_UPDATE"}
        )
        await sf_sandbox.admin("POST", "/cdc/overflow", {})
        _, gap, overflow = await take(stream, 3)
    assert isinstance(gap, GapEvent) and gap.record_ids == [record_id]
    assert gap.change_type == "GAP_UPDATE"
    assert isinstance(overflow, OverflowEvent) and overflow.entity == "Contact"


async def test_stream_logs_in_again_when_the_session_expires(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    async with stream_for(sf_client, MemoryReplayStore()) as stream:
        await sf_client.create("Contact", {"LastName": "Before"})
        await take(stream, 1)
        await sf_sandbox.admin("POST", "/sessions/expire")
        await sf_sandbox.admin("POST", "/streaming/drop", {})  # cut the held connect now
        after = await sf_client.create("Contact", {"LastName": "After"})
        [item] = await take(stream, 1)
    assert isinstance(item, ChangeEvent) and item.record_ids == [after]
