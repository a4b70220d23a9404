"""Changing the synced Copernica database: a planned operation, never a side effect of a form.

What a switch does (the config page says so and asks to confirm first):

- the links to profiles of the old database are dropped (the bridge's own table only);
- nothing in the old database is deleted or changed: from the moment the switch commits the
  engine writes only to the new database (``engine`` checks the synced database before it writes
  and when it records; a delete holds a share lock on the tenant's row, which the switch waits
  for), and a profile of another database counts as not there;
- the reconcile watermark is forgotten and a first merge with the new database is queued (a
  ``full`` run, its progress on the status bar): every contact gets its profile there, matched
  by the Salesforce Id field or a unique e-mail address, created otherwise;
- the webhooks move to the new database (``tenants.ensure_webhooks`` removes the old ones): the
  caller does that with the tenant's Copernica client, after the switch committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.db import QUERIES, Conn, Pool
from bridge.sync.jobs import JobQueue
from bridge.sync.reconcile import WATERMARK
from bridge.sync.runs import request_sync
from bridge.tenants import Tenant, load_tenant, update_tenant


@dataclass(frozen=True)
class Plan:
    """What switching to ``new`` would do, for the confirmation."""

    old: str | None
    new: str
    links: int  # links to the old database that would be dropped

    @property
    def first_choice(self) -> bool:
        """No database was synced yet: nothing to drop, no need to confirm."""
        return self.old is None

    @property
    def unchanged(self) -> bool:
        return self.old == self.new


@dataclass(frozen=True)
class Switched:
    tenant: Tenant
    run_id: int | None  # the first merge with the new database (None: unchanged)
    dropped: int  # links dropped


async def plan(conn: Conn, tenant_id: int, new: str) -> Plan:
    tenant = await load_tenant(conn, tenant_id)
    links = int(await conn.fetchval(QUERIES["count_links"], tenant_id))
    return Plan(tenant.copernica_database, new, links)


async def switch_database(
    pool: Pool, queue: JobQueue, tenant_id: int, new: str, requested_by: str
) -> Switched:
    """Make ``new`` the synced database (see the module docstring); the webhooks are the
    caller's. Choosing the same database again changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        # Waits for deletes in flight (they hold a share lock on this row), then blocks new ones.
        old = await conn.fetchval(QUERIES["lock_tenant_for_switch"], tenant_id)
        if old == new:
            return Switched(await load_tenant(conn, tenant_id), None, 0)
        dropped = int(await conn.fetchval(QUERIES["drop_all_links"], tenant_id))
        tenant = await update_tenant(conn, tenant_id, copernica_database=new)
        await conn.execute(QUERIES["forget_watermark"], tenant_id, WATERMARK)
        await conn.execute(QUERIES["write_audit"], tenant_id, [{
            "direction": "both", "salesforce_id": None, "copernica_id": None,
            "action": "switch_database", "fields": [],
            "outcome": f"database {old or '–'} → {new}: {dropped} link(s) dropped, "
                       "nothing changed in the old database",
            "detail": None,
        }])
        run_id = None
        if old is not None:  # a first merge with the new one, confirmed by who switched
            run_id = await request_sync(queue, tenant_id, "full", requested_by, conn=conn)
        # (a first choice: the scheduler starts the first full sync, as for a new tenant)
    return Switched(tenant, run_id, dropped)
