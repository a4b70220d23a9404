"""The accounts one Copernica sandbox hosts: the default account (the settings' API token) and any
number more made by ``POST /_sandbox/accounts``, each with its own databases, profiles, content,
webhooks and their deliveries, faults, variants, JWTs and call counters. The webhook signing key
is shared, as Copernica signs every account's webhooks with one key.

A request reaches its account without any shared "current account": v3 calls by their
``access_token``, v4 calls by the account their JWT names (then verified with that account's
secret), ``/authenticate`` by the API token it exchanges, control calls by ``?account=<id>``.
The ``resolve_account`` middleware puts the account in ``request[ACCOUNT]``. An account costs
its in-memory state; its webhook queues run only while deliveries are waiting.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from sandbox.copernica.hooks import Signer
from sandbox.copernica.runtime import Sandbox, SandboxSettings
from sandbox.copernica.state import SandboxError
from sandbox.copernica.tokens import TokenIssuer, jwt_subject
from sandbox.copernica.wire import api_token, json_reply

IDS_PER_ACCOUNT = 10_000_000  # ids of account n start at n * this, so accounts never share one


class Accounts:
    """Every account of the sandbox, found by id, API token or JWT."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.template = settings
        self.tz = ZoneInfo(settings.timezone)
        self.signer = Signer(settings.key_id, settings.signing_key_pem)
        self.by_id: dict[str, Sandbox] = {}
        self.by_token: dict[str, Sandbox] = {}
        self.default = self._open(settings)

    def _open(self, settings: SandboxSettings) -> Sandbox:
        sandbox = Sandbox(
            settings=settings,
            tz=self.tz,
            signer=self.signer,
            issuer=TokenIssuer(
                settings.api_token, settings.jwt_lifetime, f"account-{settings.account_id}"
            ),
        )
        self.by_id[str(settings.account_id)] = sandbox
        self.by_token[settings.api_token] = sandbox
        return sandbox

    async def create(self, name: str | None = None) -> Sandbox:
        number = max(int(key) for key in self.by_id) + 1
        sandbox = self._open(
            dataclasses.replace(
                self.template,
                api_token=secrets.token_hex(24),
                account_id=number,
                account_name=name or f"Sandbox {number}",
                id_offset=number * IDS_PER_ACCOUNT,
            )
        )
        await sandbox.dispatcher.start()
        return sandbox

    def all(self) -> list[Sandbox]:
        return list(self.by_id.values())

    def for_api_token(self, token: str) -> Sandbox:
        """The account of ``token`` (an unknown token is the default account's to refuse)."""
        return self.by_token.get(token, self.default)

    def for_jwt(self, token: str) -> Sandbox:
        return self.by_id.get(jwt_subject(token).removeprefix("account-"), self.default)

    def named(self, account_id: str) -> Sandbox:
        sandbox = self.by_id.get(account_id)
        if sandbox is None:
            raise SandboxError(f"No account with supplied ID: {account_id}")
        return sandbox


ACCOUNTS: web.AppKey[Accounts] = web.AppKey("copernica_accounts", Accounts)
ACCOUNT: web.RequestKey[Sandbox] = web.RequestKey("copernica_account", Sandbox)


@web.middleware
async def resolve_account(request: web.Request, handler: Any) -> web.StreamResponse:
    """``request[ACCOUNT]``: ``?account=`` on control calls, else the credentials' account (the
    default one when they name none)."""
    accounts = request.app[ACCOUNTS]
    if request.path.startswith("/_sandbox"):
        account_id = request.query.get("account")
        request[ACCOUNT] = accounts.named(account_id) if account_id else accounts.default
    elif request.path in ("/", "/authenticate"):
        request[ACCOUNT] = accounts.for_api_token(await api_token(request))
    elif request.path.startswith("/v3/"):
        request[ACCOUNT] = accounts.for_api_token(request.query.get("access_token", ""))
    else:
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        bearer = credential.strip() if scheme.lower() == "bearer" else ""
        request[ACCOUNT] = accounts.for_jwt(bearer) if bearer else accounts.default
    return await handler(request)


async def create(request: web.Request) -> web.Response:
    """``POST /_sandbox/accounts`` ``{"name"?: …}``: a new account with its one empty database."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise SandboxError("body must be a JSON object") from exc
    name = body.get("name") if isinstance(body, dict) else None
    if name is not None and not isinstance(name, str):
        raise SandboxError("name must be a string")
    sandbox = await request.app[ACCOUNTS].create(name)
    settings = sandbox.settings
    database = next(iter(sandbox.account.databases.values()))
    return json_reply(
        {
            "account_id": str(settings.account_id),
            "name": settings.account_name,
            "access_token": settings.api_token,
            "database_id": str(database.id),
            "database_name": database.name,
        },
        status=201,
    )
