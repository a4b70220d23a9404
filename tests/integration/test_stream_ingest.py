"""A delivery of the change stream is stored, with its replay marker, only as the tenant's
current settings say: the stream judges it by the tenant as its process last read it, and the
statement that stores it refuses when the settings changed since."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.db import Pool
from bridge.salesforce.stream import ChangeEvent
from bridge.sync.ingest import ingest_salesforce
from bridge.sync.jobs import JobQueue
from bridge.tenants import Tenant, load_tenant
from bridge.vocabulary import CDC_CHANNEL

CONTACT_ID = "003000000000001AAA"


def _update(replay_id: int) -> ChangeEvent:
    return ChangeEvent(
        channel=CDC_CHANNEL, entity="Contact", change_type="UPDATE", record_ids=[CONTACT_ID],
        changed_fields=["Title"], values={"Title": "Countess"}, change_origin="",
        commit_timestamp=datetime.now(UTC), commit_user="005000000000001AAA",
        transaction_key="t-1", sequence_number=1, replay_id=replay_id,
    )


async def test_a_delivery_judged_by_settings_changed_since_stores_nothing(
    pool: Pool, tenant: Tenant
) -> None:
    """Read while auto-sync was off, then switched on: judged by the old read, the change
    would only move the marker and be lost; it is refused instead, and stored once judged by
    the tenant read anew."""
    queue = JobQueue(pool)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE tenants SET auto_sync = false WHERE id = $1", tenant.id)
        switched_off = await load_tenant(conn, tenant.id)
        await conn.execute("UPDATE tenants SET auto_sync = true WHERE id = $1", tenant.id)

        async def stored() -> tuple[list[str], int | None]:
            keys = await conn.fetch("SELECT key FROM jobs WHERE tenant_id = $1", tenant.id)
            marker = await conn.fetchval(
                "SELECT replay_id FROM stream_state WHERE tenant_id = $1", tenant.id
            )
            return [row["key"] for row in keys], marker

        queued = await ingest_salesforce(
            conn, queue, switched_off, [_update(7)], client_id="bridge", owner="test"
        )
        assert queued is None
        assert await stored() == ([], None)

        current = await load_tenant(conn, tenant.id)
        queued = await ingest_salesforce(
            conn, queue, current, [_update(7)], client_id="bridge", owner="test"
        )
        assert queued == 1
        assert await stored() == ([f"sf:{CONTACT_ID}"], 7)
