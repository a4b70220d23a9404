"""The orgs one sandbox hosts: the default org (the settings' credentials) and any number more
made by ``POST /_sandbox/orgs``, each with its own records, CDC stream, CometD clients, sessions,
faults, variants and API usage.

A request reaches its org without any shared "current org": access tokens start with their
org's 15-character id (as Salesforce's do), logins name the org by client id or username, admin
calls by ``?org=<org id>``. The ``resolve_org`` middleware puts the org in ``request[ORG]``
before faults are injected, so each org's faults hit its own calls and logins alone.
An org costs a few dicts until it is used; it runs no task of its own.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from aiohttp import web

from . import login, schema
from .auth import bearer
from .cometd import Bayeux
from .org import SalesforceFault
from .settings import SandboxSettings
from .state import ORG, SandboxState

RECORDS_PER_ORG = 62**7  # each org numbers its records in its own range, so ids never collide


def open_org(settings: SandboxSettings) -> SandboxState:
    state = SandboxState.create(settings)
    state.streaming = Bayeux(state)
    return state


class Orgs:
    """Every org of the sandbox, found by id, OAuth client id or username."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.template = dataclasses.replace(settings)  # new orgs start from the settings as given
        self.default = open_org(settings)
        self.by_id: dict[str, SandboxState] = {}  # by the 15-character org id
        self.by_client: dict[str, SandboxState] = {}
        self.by_username: dict[str, SandboxState] = {}
        self._add(self.default)

    def _add(self, state: SandboxState) -> None:
        settings = state.settings
        self.by_id[settings.organization_id[:15]] = state
        self.by_client[settings.client_id] = state
        self.by_username[settings.username.lower()] = state

    def create(self, name: str | None = None) -> SandboxState:
        number = len(self.by_id)
        base = number * RECORDS_PER_ORG
        settings = dataclasses.replace(
            self.template,
            username=f"admin@org{number}.sandbox.example",
            password=secrets.token_urlsafe(12),
            security_token=secrets.token_hex(12).upper(),
            client_id=f"sandbox-client-{number}-{secrets.token_hex(4)}",
            client_secret=secrets.token_urlsafe(24),
            refresh_token=secrets.token_urlsafe(32),
            organization_id=schema.make_id("00D", "5g", base),
            organization_name=name or f"Sandbox Org {number}",
            user_id=schema.make_id("005", "5g", base),
            first_record_number=base + 1,
        )
        state = open_org(settings)
        self._add(state)
        return state

    def all(self) -> list[SandboxState]:
        return list(self.by_id.values())

    def for_token(self, token: str | None) -> SandboxState:
        """The org whose id prefixes ``token`` (an unknown token is the default org's to refuse)."""
        return self.by_id.get((token or "").partition("!")[0], self.default)

    def for_client(self, client_id: str) -> SandboxState:
        return self.by_client.get(client_id, self.default)

    def for_username(self, username: str) -> SandboxState:
        return self.by_username.get(username.lower(), self.default)

    def named(self, org_id: str) -> SandboxState:
        state = self.by_id.get(org_id[:15])
        if state is None:
            raise SalesforceFault("NOT_FOUND", f"no org {org_id} in this sandbox", status=404)
        return state


ORGS: web.AppKey[Orgs] = web.AppKey("salesforce_orgs", Orgs)


@web.middleware
async def resolve_org(request: web.Request, handler: Any) -> web.StreamResponse:
    """``request[ORG]``: the admin call's ``?org=``, the org a login names, else the bearer token's
    org (the default one when there is none)."""
    orgs = request.app[ORGS]
    if request.path.startswith("/_sandbox"):
        org_id = request.query.get("org")
        request[ORG] = orgs.named(org_id) if org_id else orgs.default
    elif request.path.startswith(login.ROUTES):
        request[ORG] = await login.login_org(request, orgs)
    else:
        request[ORG] = orgs.for_token(bearer(request))
    return await handler(request)


async def create(request: web.Request) -> web.Response:
    """``POST /_sandbox/orgs`` ``{"name"?: …}``: a new, empty org and its credentials."""
    raw = await request.read()
    body = await request.json() if raw.strip() else {}
    name = body.get("name") if isinstance(body, dict) else None
    if name is not None and not isinstance(name, str):
        raise SalesforceFault("INVALID_FIELD", "name must be a string", ["name"])
    settings = request.app[ORGS].create(name).settings
    return web.json_response(
        {
            "org_id": settings.organization_id,
            "name": settings.organization_name,
            "username": settings.username,
            "password": settings.password,
            "security_token": settings.security_token,
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "refresh_token": settings.refresh_token,
        },
        status=201,
    )
