"""What the pages ask of the two platforms, always with the tenant's clients of the app's
``PlatformClients`` (on its saved credentials, logged in once for every page). Each call is
bounded by ``UI_TIMEOUT`` so a slow platform gives the user a clear message instead of a hanging
page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from aiohttp import web

from bridge.copernica.client import CopernicaClient
from bridge.errors import ApiError, BridgeError
from bridge.salesforce.client import SalesforceClient
from bridge.vocabulary import LINK_FIELD_FALLBACK
from bridge.web.keys import PLATFORMS

UI_TIMEOUT = 20.0
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


async def collect(iterator: AsyncIterator[T], limit: int = 1000) -> list[T]:
    found: list[T] = []
    async for item in iterator:
        found.append(item)
        if len(found) >= limit:
            break
    return found


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
    email_taken = False
    for sf_name, sf_type in fields:
        field_type = copernica_field_type(sf_type)
        if field_type == "email":  # Copernica allows one e-mail field per database
            field_type, email_taken = ("text" if email_taken else "email"), True
        options: dict[str, Any] = {"index": True} if sf_name.lower() == "id" else {}
        await client.create_field(database_id, copernica_field_name(sf_name), field_type, **options)
    return database_id


# What a page catches from a platform call and turns into a message for the user.
FAILURES: tuple[type[BaseException], ...] = (ApiError, BridgeError, TimeoutError, OSError)
