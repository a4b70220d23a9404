"""What the pages ask of the two platforms, always with the tenant's clients of the app's
``PlatformClients`` (on its saved credentials, logged in once for every page). Each call is
bounded by ``UI_TIMEOUT`` so a slow platform gives the user a clear message instead of a hanging
page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal, TypeVar

from aiohttp import web

from bridge.copernica.client import CopernicaClient
from bridge.errors import ApiError, BridgeError
from bridge.retry import RetryPolicy
from bridge.salesforce.client import SalesforceClient
from bridge.sync import reports
from bridge.tenants import (
    CopernicaCredentials,
    SalesforceCredentials,
    copernica_client,
    salesforce_client,
)
from bridge.vocabulary import LINK_FIELD_FALLBACK
from bridge.web.keys import PLATFORMS

UI_TIMEOUT = 20.0
CHECK_RETRY = RetryPolicy(max_attempts=2, base=0.2, cap=1.0)  # the user waits for the answer
DEFAULT_DATABASE_FIELDS = ("FirstName", "LastName", "Email", "Id")
T = TypeVar("T")


def user_message(exc: BaseException) -> str:
    """What went wrong, in words for the page (never a credential: clients do not echo them)."""
    if isinstance(exc, ApiError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return f"no answer within {UI_TIMEOUT:.0f} seconds"
    if isinstance(exc, BridgeError):
        return str(exc)
    return f"could not connect ({type(exc).__name__})"


async def bounded(call: Awaitable[T]) -> T:
    async with asyncio.timeout(UI_TIMEOUT):
        return await call


async def copernica(request: web.Request, tenant_id: int) -> CopernicaClient:
    """The tenant's Copernica client (``NotConfigured`` when no access is saved)."""
    return await request.app[PLATFORMS].copernica(tenant_id)


async def salesforce(request: web.Request, tenant_id: int) -> SalesforceClient:
    """The tenant's Salesforce client (``NotConfigured`` when no access is saved)."""
    return await request.app[PLATFORMS].salesforce(tenant_id)


async def check_copernica(request: web.Request, tenant_id: int,
                          credentials: CopernicaCredentials) -> dict[str, Any]:
    """Log in with credentials not saved yet and read the account (``FAILURES`` when that fails):
    new details must work before they replace the saved ones. Its calls count as the tenant's."""
    clients = request.app[PLATFORMS]
    client = copernica_client(credentials, clients.settings, clients.usage.sink(tenant_id),
                              retry=CHECK_RETRY, timeout=UI_TIMEOUT)
    async with client:
        return await bounded(client.identity())


async def check_salesforce(request: web.Request, tenant_id: int,
                           credentials: SalesforceCredentials) -> None:
    """Log in with credentials not saved yet and describe Contact (``FAILURES`` when that fails)."""
    clients = request.app[PLATFORMS]
    client = salesforce_client(credentials, clients.settings, clients.usage.sink(tenant_id),
                               retry=CHECK_RETRY, timeout=UI_TIMEOUT)
    async with client:
        await bounded(client.describe("Contact"))


async def collect(iterator: AsyncIterator[T], limit: int = 1000) -> list[T]:
    found: list[T] = []
    async for item in iterator:
        found.append(item)
        if len(found) >= limit:
            break
    return found


async def profile_count(
    client: CopernicaClient, target_type: Literal["database", "view"], target_id: int
) -> int:
    """How many profiles a database or selection holds: the ``total`` of a one-profile page.
    (The client has no call for it yet; it belongs there.)"""
    page = await client._get(f"{target_type}/{int(target_id)}/profiles", [("limit", "1")])
    return int(page.get("total", 0)) if isinstance(page, dict) else 0


async def delete_or_archive(client: CopernicaClient, database_id: int) -> bool:
    """Delete a Copernica database; True if deleted, False if it was archived instead.

    Copernica's REST API documents no call to delete a database. We try ``DELETE database/$id``
    anyway (an account may allow it one day); when it is refused, the database is archived, which
    hides it from the Copernica UI and from the lists here, and the page says so.
    """
    try:
        await client.delete_database(database_id)
        return True
    except ApiError as exc:
        if exc.category in ("auth", "rate_limit", "transient"):
            raise
    await client.edit_database(database_id, archived=True)
    return False


def copernica_field_type(salesforce_type: str) -> str:
    """The Copernica field type for a Salesforce field type (everything else is text).

    Dates become the "empty" variants so a contact without a birthdate stays empty instead of
    0000-00-00; phones stay text because Copernica allows one phone field of each kind only.
    """
    return {
        "email": "email",
        "date": "empty_date",
        "datetime": "empty_datetime",
        "int": "integer",
        "double": "float",
        "currency": "float",
        "percent": "float",
        "textarea": "big",
    }.get(salesforce_type, "text")


def copernica_field_name(salesforce_name: str) -> str:
    return LINK_FIELD_FALLBACK if salesforce_name.lower() == "id" else salesforce_name


async def create_database(
    client: CopernicaClient, name: str, fields: list[tuple[str, str]]
) -> int:
    """Create a database and its fields (``(Salesforce name, Salesforce type)`` pairs)."""
    database_id = await client.create_database(name, "Created from the Salesforce tab")
    await add_fields(client, database_id, fields)
    return database_id


async def add_fields(
    client: CopernicaClient, database_id: int, fields: list[tuple[str, str]],
    present: list[Any] | None = None,
) -> list[str]:
    """Create the Copernica fields of Salesforce fields (``(name, type)`` pairs) that the
    database's ``present`` fields lack; return the names created."""
    have = {f.name.lower() for f in present or []}
    email_taken = any(f.type == "email" for f in present or [])
    added: list[str] = []
    for sf_name, sf_type in fields:
        cp_name = copernica_field_name(sf_name)
        if cp_name.lower() in have:
            continue  # added meanwhile, or chosen twice
        field_type = copernica_field_type(sf_type)
        if field_type == "email":  # Copernica allows one e-mail field per database
            field_type, email_taken = ("text" if email_taken else "email"), True
        options: dict[str, Any] = {"index": True} if cp_name == LINK_FIELD_FALLBACK else {}
        await client.create_field(database_id, cp_name, field_type, **options)
        have.add(cp_name.lower())
        added.append(cp_name)
    return added


# What a page catches from a platform call and turns into a message for the user.
FAILURES: tuple[type[BaseException], ...] = (ApiError, BridgeError, TimeoutError, OSError)


async def contacts_named(
    request: web.Request, tenant_id: int, errors: list[Any]
) -> dict[str, reports.Contact]:
    """The contacts error reports name; none (the ids alone) when Salesforce cannot say now."""
    try:
        client = await salesforce(request, tenant_id)
        return await bounded(reports.contacts_of(client, errors))
    except FAILURES:
        return {}
