"""The demo: both emulators, a tenant wired to them, some contacts, and optional traffic.

``bridge demo`` starts the emulators in its own process, so each demo begins with an empty
Salesforce org and Copernica account; the demo tenant's sync state (links, jobs, replay marker,
runs) is reset to match, and its credentials, database, fields and webhooks are set again.

The tenant logs in to the Salesforce emulator with OAuth client credentials, as a real one
should; the bridge may reach the emulators because the demo allows their hosts
(``ALLOWED_API_HOSTS``) and names the Copernica emulator's authentication URL
(``COPERNICA_AUTH_URL``), as an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiohttp import web

from bridge.app import create_app, start_site, until_signal
from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.db import QUERIES, database_url, open_pool
from bridge.security.vault import Vault
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    Tenant,
    create_tenant,
    create_user,
    ensure_webhooks,
    save_credentials,
    save_webhooks,
    stored_webhooks,
    update_tenant,
)
from bridge.vocabulary import LINK_FIELD_FALLBACK
from sandbox import copernica, salesforce
from sandbox.copernica import SandboxSettings as CopernicaSettings
from sandbox.mail import mail_sink, show_mail
from sandbox.salesforce import SandboxSettings as SalesforceSettings

log = logging.getLogger(__name__)

DEMO_TENANT = "demo"
DEMO_EMAIL = "admin@demo.example"
DEMO_PASSWORD = "demo-password"

# Copernica fields named like Salesforce Contact fields, so the default mapping picks them up.
DEMO_FIELDS = (
    ("FirstName", "text"), ("LastName", "text"), ("Email", "email"), ("Title", "text"),
    ("Phone", "phone_fax"), ("Department", "text"), ("Birthdate", "empty_date"),
    (LINK_FIELD_FALLBACK, "text"),
)
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Perlman")
TITLES = ("CEO", "CTO", "Engineer", "Buyer", "Marketing manager", "Analyst", "Consultant")


@dataclass(frozen=True)
class Sandboxes:
    salesforce_url: str
    copernica_url: str
    salesforce: SalesforceSettings
    copernica: CopernicaSettings

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """``ALLOWED_API_HOSTS`` entries of the two emulators."""
        return tuple(urlsplit(url).netloc for url in (self.salesforce_url, self.copernica_url))

    @property
    def copernica_auth_url(self) -> str:
        return f"{self.copernica_url}/authenticate"

    def settings(self, settings: Settings) -> Settings:
        """``settings`` of a bridge that may talk to these emulators."""
        return dataclasses.replace(
            settings,
            allowed_api_hosts=(*settings.allowed_api_hosts, *self.allowed_hosts),
            copernica_auth_url=self.copernica_auth_url,
            copernica_sandbox_url=self.copernica_url,
        )

    def environment(self) -> dict[str, str]:
        """The same for a ``bridge serve`` process."""
        return {
            "ALLOWED_API_HOSTS": ",".join(self.allowed_hosts),
            "COPERNICA_AUTH_URL": self.copernica_auth_url,
            "COPERNICA_SANDBOX_URL": self.copernica_url,
        }


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Embedded PostgreSQL, both emulators, a mail sink, the bridge: one process, one Ctrl-C."""
    host, port = args.host, args.port or settings.port
    runners: list[web.AppRunner] = []
    traffic_task: asyncio.Task[None] | None = None
    async with database_url(settings) as url, mail_sink() as sink:
        try:
            sandboxes = Sandboxes(
                salesforce_url=f"http://localhost:{args.salesforce_port}",
                copernica_url=f"http://127.0.0.1:{args.copernica_port}",
                salesforce=SalesforceSettings(),
                copernica=CopernicaSettings(),
            )
            runners.append(await start_site(
                salesforce.create_app(sandboxes.salesforce), "127.0.0.1", args.salesforce_port
            ))
            runners.append(await start_site(
                copernica.create_app(sandboxes.copernica), "127.0.0.1", args.copernica_port
            ))
            public_url = settings.public_url if os.environ.get("PUBLIC_URL") else f"http://{host}:{port}"
            settings = sandboxes.settings(dataclasses.replace(
                settings, database_url=url, smtp_url=sink.url, public_url=public_url,
            ))
            async with open_pool(settings) as pool:
                tenant = await seed_tenant(pool)
                tenant = await wire_tenant(pool, Vault(settings.secret_keys), settings, tenant, sandboxes)
            await seed_contacts(sandboxes.salesforce_url, args.contacts)
            app = create_app(settings)
            show_mail(app, sink)
            runners.append(await start_site(app, host, port))
            if args.traffic:
                traffic_task = asyncio.create_task(
                    traffic(sandboxes, str(tenant.copernica_database), args.traffic)
                )
            print(
                "\n  Copernica bridge demo is running\n"
                f"    bridge:      {public_url}/  (config page; the Salesforce tab is {public_url}/sfcp)\n"
                f"    login:       {DEMO_EMAIL} / {DEMO_PASSWORD}\n"
                f"    mail sent:   {public_url}/demo/mail\n"
                f"    salesforce:  {sandboxes.salesforce_url}/_sandbox/contacts  (emulator)\n"
                f"    copernica:   {sandboxes.copernica_url}/_sandbox/databases/"
                f"{tenant.copernica_database}/profiles  (emulator)\n"
                f"    health:      {public_url}/healthz, /readyz, /metrics\n"
                + (f"    traffic:     {args.traffic} random edits per second on both sides\n"
                   if args.traffic else "")
                + "  Press Ctrl-C to stop everything (embedded PostgreSQL included).\n",
                flush=True,
            )
            await until_signal()
        finally:
            if traffic_task is not None:
                traffic_task.cancel()
                await asyncio.gather(traffic_task, return_exceptions=True)
            for runner in reversed(runners):
                with contextlib.suppress(Exception):
                    await runner.cleanup()


async def seed_tenant(pool: asyncpg.Pool) -> Tenant:
    """The demo tenant and its administrator, made on the first run."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(QUERIES["tenant_by_slug"], DEMO_TENANT)
    if row is not None:
        return Tenant.from_row(row)
    tenant = await create_tenant(pool, DEMO_TENANT, "Demo company")
    await create_user(pool, DEMO_TENANT, DEMO_EMAIL, DEMO_PASSWORD)
    return tenant


async def wire_tenant(
    pool: asyncpg.Pool, vault: Vault, settings: Settings, tenant: Tenant, sandboxes: Sandboxes
) -> Tenant:
    """Point ``tenant`` at the sandboxes, as an administrator would on the config page."""
    sf, cp = sandboxes.salesforce, sandboxes.copernica
    async with CopernicaClient.for_sandbox(sandboxes.copernica_url, cp.api_token) as client:
        database = [db async for db in client.databases()][0]
        existing = {f.name async for f in client.fields(database.id)}
        for name, kind in DEMO_FIELDS:
            if name not in existing:
                await client.create_field(database.id, name, kind)
        async with pool.acquire() as conn:
            await conn.execute(QUERIES["reset_sync_state"], tenant.id)
            await save_credentials(conn, vault, tenant.id, SalesforceCredentials(
                method="client_credentials", login_url=sandboxes.salesforce_url,
                consumer_key=sf.client_id, consumer_secret=sf.client_secret,
            ))
            await save_credentials(conn, vault, tenant.id, CopernicaCredentials(
                api_token=cp.api_token, hostname=sandboxes.copernica_url,
            ))
            identity = await client.identity()  # the account its webhooks must name
            await conn.execute(QUERIES["set_copernica_account"], tenant.id, str(identity["id"]))
            tenant = await update_tenant(
                conn, tenant.id, copernica_database=str(database.id), link_field=LINK_FIELD_FALLBACK
            )
            hooks, _ = await ensure_webhooks(
                client, settings, tenant, await stored_webhooks(conn, tenant.id)
            )
            await save_webhooks(conn, tenant.id, hooks)
    return tenant


def random_contact(rng: random.Random) -> dict[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "FirstName": first,
        "LastName": last,
        "Email": f"{first}.{last}.{rng.randrange(10**6)}@demo.example".lower(),
        "Title": rng.choice(TITLES),
    }


async def seed_contacts(salesforce_url: str, count: int, seed: int = 7) -> None:
    """Contacts that exist before the bridge looks: the first full sync copies them."""
    rng = random.Random(seed)
    records = [random_contact(rng) for _ in range(count)]
    async with aiohttp.ClientSession() as http, http.post(
        f"{salesforce_url}/_sandbox/records/Contact", json={"records": records}
    ) as reply:
        reply.raise_for_status()


async def traffic(sandboxes: Sandboxes, database: str, per_second: float, seed: int = 11) -> None:
    """Random edits "as users would" on both sides, ``per_second`` in all, until cancelled."""
    rng = random.Random(seed)
    sf, cp = sandboxes.salesforce_url, sandboxes.copernica_url
    async with aiohttp.ClientSession() as http:
        while True:
            await asyncio.sleep(1 / per_second)
            try:
                if rng.random() < 0.5:
                    await _edit_salesforce(http, sf, rng)
                else:
                    await _edit_copernica(http, cp, database, rng)
            except (aiohttp.ClientError, KeyError, IndexError) as error:
                log.warning("demo traffic: %s", error)


async def _edit_salesforce(http: aiohttp.ClientSession, base: str, rng: random.Random) -> None:
    async with http.get(f"{base}/_sandbox/contacts") as reply:
        records = (await reply.json())["records"]
    if not records or rng.random() < 0.2:
        await _send(http, "POST", f"{base}/_sandbox/contacts", random_contact(rng))
        return
    record = rng.choice(records)
    await _send(
        http, "PATCH", f"{base}/_sandbox/contacts/{record['Id']}", {"Title": rng.choice(TITLES)}
    )


async def _edit_copernica(
    http: aiohttp.ClientSession, base: str, database: str, rng: random.Random
) -> None:
    async with http.get(f"{base}/_sandbox/databases/{database}/profiles") as reply:
        live = [p for p in (await reply.json())["data"] if not p.get("removed")]
    if not live or rng.random() < 0.2:
        url = f"{base}/_sandbox/databases/{database}/profiles"
        await _send(http, "POST", url, {"fields": random_contact(rng)})
        return
    profile = rng.choice(live)
    await _send(
        http, "PUT", f"{base}/_sandbox/profiles/{profile['ID']}",
        {"fields": {"Title": rng.choice(TITLES)}},
    )


async def _send(http: aiohttp.ClientSession, method: str, url: str, body: object) -> None:
    async with http.request(method, url, json=body) as reply:
        reply.raise_for_status()
