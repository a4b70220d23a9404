"""The bridge's Copernica REST client (v4 with a JWT, or v3 with ``access_token``).

One instance serves one tenant. Every HTTP call goes through ``_call``: it authenticates, counts
the call (``UsageSink``), maps failures onto ``CopernicaError`` and retries what is retryable
(429 after ``Retry-After``, 5xx and connection errors with the shared ``RetryPolicy``). Lists are
async iterators that fetch one page at a time, so memory does not grow with the database.

What the client does not leave to chance:

- A POST that creates or sends is not idempotent: it is retried only when Copernica cannot have
  acted on it (429, the balancer's 503, no connection made). The new id comes from ``X-Created``,
  else from the tail of ``X-location``; a create whose id cannot be read raises
  ``CreatedWithoutId`` and is never repeated here.
- A ``GET`` follows Copernica's redirects (301, 303, …) on the same host only; the host policy
  (``bridge.hosts``) refuses any other host before a request is sent.
- Emailing calls use the documented paths (``POST ms/emailing`` with a template,
  ``POST publisher/emailing`` with a document; reads under v4's ``draganddrop``/``html``) and try
  the other spelling when Copernica answers ``Invalid method``; the one that worked is kept.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from bridge.clock import PlatformClock
from bridge.copernica.auth import DEFAULT_AUTH_URL, JwtSource
from bridge.copernica.errors import (
    CopernicaError,
    CreatedWithoutId,
    NameTaken,
    NotSent,
    error_from_reply,
)
from bridge.copernica.models import (
    Database,
    Emailing,
    EmailingStatistics,
    Field,
    Product,
    Profile,
    Template,
    View,
    Webhook,
)
from bridge.hosts import HostPolicy
from bridge.retry import RetryPolicy
from bridge.usage import ApiUsage, UsageSink, ignore_usage
from bridge.vocabulary import WebhookTrigger

DEFAULT_HOST = "https://api.copernica.com"
MAX_PAGE = 1000
OPERATORS = ("==", "!=", "<>", "<=", ">=", "=~", "!~", "<", ">")
SUCCESS = frozenset({200, 201, 204, 303})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
NOT_ACTED_ON = frozenset({429, 503})  # refused at the door: even a POST may be sent again
NEW_NAMES: dict[Product, str] = {"ms": "draganddrop", "publisher": "html"}  # v4's later spelling
TargetType = Literal["database", "collection", "view", "miniview", "profile", "subprofile"]
Params = Sequence[tuple[str, str]]


def condition(field: str, operator: str, value: object) -> str:
    """One ``fields[]`` search condition, e.g. ``condition("Email", "==", "a@b.c")``."""
    if operator not in OPERATORS:
        raise ValueError(f"unknown Copernica operator {operator!r}")
    if not field or any(c in field for c in "=!<>~"):
        raise ValueError(f"invalid field name {field!r}")
    return f"{field}{operator}{value}"


def timestamp(moment: datetime | date | str) -> str:
    """Copernica's ``YYYY-MM-DD HH:MM:SS`` (give ``moment`` in the account's timezone)."""
    if isinstance(moment, str):
        return moment
    if isinstance(moment, datetime):
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    data: Any

    @property
    def created_id(self) -> int | None:
        """The new id: ``X-Created``, else the last path segment of ``X-location``."""
        value = (self.headers.get("X-Created") or "").strip()
        if value.isascii() and value.isdigit():
            return int(value)
        location = (self.headers.get("X-location") or "").strip()
        tail = urlsplit(location).path.rstrip("/").rpartition("/")[2]
        return int(tail) if tail.isascii() and tail.isdigit() else None


class CopernicaClient:
    """Async Copernica REST client; use ``async with`` or call ``close()``."""

    def __init__(
        self,
        api_token: str,
        *,
        version: Literal[3, 4] = 4,
        host: str = DEFAULT_HOST,
        auth_url: str = DEFAULT_AUTH_URL,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        usage: UsageSink = ignore_usage,
        timeout: float = 60.0,
        renew_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        hosts: HostPolicy | None = None,
    ) -> None:
        if not api_token:
            raise ValueError("a Copernica API token is required")
        self.api_token = api_token
        self.version = version
        host = host.strip().rstrip("/")
        self.base = (host if "://" in host else f"https://{host}") + f"/v{version}"
        self.retry = retry or RetryPolicy()
        self.usage = usage
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.sleep = sleep
        self.jwt = JwtSource(api_token, auth_url, renew_margin=renew_margin, clock=clock)
        self.hosts = hosts
        self._session = session
        self._owns_session = session is None
        self._spelling: dict[tuple[Product, str], str] = {}  # (product, use) -> working prefix
        self.clock = PlatformClock()  # Copernica's clock, from the replies on the own session

    @classmethod
    def for_sandbox(
        cls, base_url: str, api_token: str = "sandbox-token", **options: Any
    ) -> CopernicaClient:
        """A client aimed at the Copernica sandbox (its ``/authenticate`` stands in for v4 auth)."""
        base_url = base_url.rstrip("/")
        return cls(api_token, host=base_url, auth_url=f"{base_url}/authenticate", **options)

    async def __aenter__(self) -> CopernicaClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                middlewares=(
                    (self.hosts.guard, self.clock.watch) if self.hosts is not None
                    else (self.clock.watch,)
                ),
            )
            self._owns_session = True
        return self._session

    # the one way to call Copernica -------------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        params: Params = (),
        body: Any = None,
        *,
        idempotent: bool | None = None,
    ) -> Reply:
        """One call, retried as far as that is safe (``idempotent`` defaults to: not a POST)."""
        what = f"{method} {path}"
        repeatable = method != "POST" if idempotent is None else idempotent
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            try:
                return await self._once(method, path, params, body, what)
            except _Refused as refused:
                if reauthenticated:
                    raise refused.error from None
                reauthenticated = True  # an expired JWT: fetch a new one, once, for free
                attempt -= 1
            except CopernicaError as error:
                if not error.retryable or self.retry.gives_up(attempt):
                    raise
                if not repeatable and not (
                    isinstance(error, NotSent) or error.status in NOT_ACTED_ON
                ):
                    raise  # Copernica may have acted on it: sending it again could do it twice
                wait = error.retry_after
                if wait is None:
                    wait = self.retry.delay(attempt)
                elif wait > self.retry.cap:
                    raise  # longer than we may wait here: let the job queue defer it
                await self.sleep(wait)

    async def _once(self, method: str, path: str, params: Params, body: Any, what: str) -> Reply:
        session = self.session
        query = list(params)
        headers: dict[str, str] = {"Accept": "application/json"}
        token = ""
        if self.hosts is not None:
            self.hosts.check(self.base)  # before the token is fetched for a call to go there
        try:
            if self.version == 4:
                token = await self.jwt.token(session)
                headers["Authorization"] = f"Bearer {token}"
            else:
                query.insert(0, ("access_token", self.api_token))
            url = f"{self.base}/{path}"
            if query:
                url += "?" + "&".join(
                    f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in query
                )
            target = URL(url, encoded=True)
            for _ in range(MAX_REDIRECTS + 1):
                status, reply_headers, raw = await self._send(
                    session, method, target, body, headers
                )
                self.usage(ApiUsage("copernica"))
                location = reply_headers.get("Location")
                if method != "GET" or status not in REDIRECTS or not location:
                    break  # a PUT's v2-style 303 See Other means success, it is not followed
                target = self._redirect(target, location, what)
            else:
                raise CopernicaError(f"{what}: too many redirects", category="transient")
            content_type = reply_headers.get("Content-Type", "")
        except aiohttp.ClientConnectorError as exc:
            self.usage(ApiUsage("copernica"))
            raise NotSent(f"{what}: could not connect ({type(exc).__name__})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.usage(ApiUsage("copernica"))
            raise CopernicaError(
                f"{what}: {type(exc).__name__}: {exc}", category="transient"
            ) from exc
        if status in SUCCESS:
            data = None
            if raw and "json" in content_type:
                try:
                    data = json.loads(raw)
                except ValueError as exc:
                    raise CopernicaError(
                        f"{what}: unreadable JSON reply", category="transient", status=status
                    ) from exc
            return Reply(status, reply_headers, data)
        error = error_from_reply(status, raw, content_type, reply_headers.get("Retry-After"), what)
        if self.version == 4 and error.category == "auth" and token:
            self.jwt.forget(token)
            raise _Refused(error)
        raise error

    @staticmethod
    async def _send(
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: Any,
        headers: dict[str, str],
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        async with session.request(
            method, url, json=body, headers=headers, allow_redirects=False
        ) as reply:
            return reply.status, reply.headers, await reply.read()

    @staticmethod
    def _redirect(current: URL, location: str, what: str) -> URL:
        """Where a redirect leads, when it stays on Copernica's host (it is refused otherwise:
        the token must not travel to a host the tenant never chose)."""
        try:
            target = current.join(URL(location))
        except ValueError:
            raise CopernicaError(f"{what}: unreadable redirect", category="transient") from None
        if (target.scheme, target.host, target.port) != (current.scheme, current.host, current.port):
            raise CopernicaError(
                f"{what}: Copernica redirected the call to another host, which the bridge does "
                "not follow",
                category="validation",
            )
        return target

    async def _get(self, path: str, params: Params = ()) -> Any:
        return (await self._call("GET", path, params)).data

    async def _pages(
        self, path: str, params: Params = (), page_size: int = MAX_PAGE, start: int = 0
    ) -> AsyncIterator[dict[str, Any]]:
        """Offset paging: one page in memory at a time; stops on a short page."""
        limit = max(1, min(page_size, MAX_PAGE))
        while True:
            page = await self._get(
                path, [*params, ("start", str(start)), ("limit", str(limit)), ("total", "false")]
            )
            data = page.get("data", []) if isinstance(page, dict) else []
            for item in data:
                yield item
            if len(data) < limit:
                return
            start += len(data)

    # the old and the new names of the emailing paths ------------------------------------------
    def _spellings(self, product: Product, use: Literal["read", "send"]) -> list[str]:
        """Prefixes to try, best first: sends are documented under the old names (``ms``,
        ``publisher``), v4 reads under the new ones; v3 knows only the old ones."""
        if self.version == 3:
            return [product]
        new = NEW_NAMES[product]
        order = [product, new] if use == "send" else [new, product]
        known = self._spelling.get((product, use))
        return [known, *(p for p in order if p != known)] if known else order

    async def _product_call(
        self,
        method: str,
        product: Product,
        tail: str,
        params: Params = (),
        body: Any = None,
        *,
        use: Literal["read", "send"] = "read",
    ) -> Reply:
        """``method`` on ``<prefix>/<tail>``, trying the other spelling on ``Invalid method``
        (a refusal before anything was done, so even a send may go again)."""
        spellings = self._spellings(product, use)
        for number, prefix in enumerate(spellings, 1):
            try:
                reply = await self._call(method, f"{prefix}/{tail}", params, body)
            except CopernicaError as error:
                if number < len(spellings) and _invalid_method(error):
                    continue
                raise
            self._spelling[(product, use)] = prefix
            return reply
        raise AssertionError("unreachable: the last spelling returns or raises")

    async def _product_pages(
        self, product: Product, tail: str, params: Params = ()
    ) -> AsyncIterator[dict[str, Any]]:
        """``_pages`` of a product list, its first page choosing the spelling."""
        limit = MAX_PAGE
        first = (await self._product_call(
            "GET", product, tail, [*params, ("start", "0"), ("limit", str(limit)), ("total", "false")]
        )).data
        data = first.get("data", []) if isinstance(first, dict) else []
        for item in data:
            yield item
        if len(data) < limit:
            return
        prefix = self._spelling[(product, "read")]
        async for item in self._pages(f"{prefix}/{tail}", params, start=len(data)):
            yield item

    # account -----------------------------------------------------------------------------------
    async def identity(self) -> dict[str, Any]:
        return dict(await self._get("identity"))

    async def consumption(self, begin: date, end: date) -> dict[str, Any]:
        return dict(
            await self._get("consumption", [("begin", timestamp(begin)), ("end", timestamp(end))])
        )

    # databases ---------------------------------------------------------------------------------
    async def databases(self, page_size: int = MAX_PAGE) -> AsyncIterator[Database]:
        async for item in self._pages("databases", page_size=page_size):
            yield Database.from_json(item)

    async def database(self, database: int | str) -> Database:
        return Database.from_json(await self._get(f"database/{_ref(database)}"))

    async def create_database(
        self, name: str, description: str = "", archived: bool = False
    ) -> int:
        """A new database; ``NameTaken`` when another database, archived ones too, has the name."""
        body = {"name": name, "description": description, "archived": archived}
        try:
            reply = await self._call("POST", "databases", body=body)
        except CopernicaError as error:
            raise await self._name_taken(error, name) from None
        return _created(reply, "the database")

    async def edit_database(
        self,
        database: int | str,
        *,
        name: str | None = None,
        description: str | None = None,
        archived: bool | None = None,
    ) -> None:
        body = _given(name=name, description=description, archived=archived)
        try:
            await self._call("PUT", f"database/{_ref(database)}", body=body)
        except CopernicaError as error:
            if name is None:
                raise
            raise await self._name_taken(error, name, database) from None

    async def _name_taken(
        self, error: CopernicaError, name: str, renamed: int | str | None = None
    ) -> CopernicaError:
        """Why Copernica refused a database name: its names are unique across the account, and
        an archived database (hidden in Copernica's lists) keeps its name. Looked up only
        after a refusal, so a create costs no extra call."""
        if error.category != "validation":
            return error
        wanted = name.strip().lower()
        try:
            async for database in self.databases():
                if database.name.lower() == wanted and str(database.id) != str(renamed):
                    return NameTaken(name, database, status=error.status)
        except CopernicaError:
            pass  # the refusal itself is the answer then
        return error

    async def delete_database(self, database: int | str) -> None:
        """``DELETE database/$id``: not a documented call; Copernica answers 400 ``Invalid
        method`` (callers archive the database instead)."""
        await self._call("DELETE", f"database/{_ref(database)}")

    # fields ------------------------------------------------------------------------------------
    async def fields(self, database: int | str) -> AsyncIterator[Field]:
        async for item in self._pages(f"database/{_ref(database)}/fields"):
            yield Field.from_json(item)

    async def create_field(
        self, database: int | str, name: str, type: str = "text", **options: Any
    ) -> int:
        body = {"name": name, "type": type, **options}
        reply = await self._call("POST", f"database/{_ref(database)}/fields", body=body)
        return _created(reply, f"field {name}")

    async def delete_field(self, database: int | str, field_id: int) -> None:
        """Remove a field and its values from every profile of the database."""
        await self._call("DELETE", f"database/{_ref(database)}/field/{int(field_id)}")

    # profiles ----------------------------------------------------------------------------------
    async def profiles(
        self,
        database: int | str,
        conditions: Iterable[str] = (),
        *,
        orderby: str = "id",
        order: Literal["asc", "desc"] = "asc",
        page_size: int = MAX_PAGE,
        dataonly: bool = False,
    ) -> AsyncIterator[Profile]:
        """Every profile matching ``conditions`` (see ``condition``), one page in memory.

        Ordered by id (the default), pages continue from the last id seen (``id>N``) rather than
        by offset: cheaper for Copernica and stable while profiles are added or removed.
        """
        path = f"database/{_ref(database)}/profiles"
        base = [("fields[]", c) for c in conditions]
        extra = [("dataonly", "true")] if dataonly else []
        if orderby != "id" or order != "asc":
            params = [*base, ("orderby", orderby), ("order", order), *extra]
            async for item in self._pages(path, params, page_size):
                yield Profile.from_json(item)
            return
        limit = max(1, min(page_size, MAX_PAGE))
        last = 0
        while True:
            params = [
                *base,
                ("fields[]", f"id>{last}"),
                ("orderby", "id"),
                ("limit", str(limit)),
                ("total", "false"),
                *extra,
            ]
            page = await self._get(path, params)
            data = page.get("data", []) if isinstance(page, dict) else []
            for item in data:
                profile = Profile.from_json(item)
                last = max(last, profile.id)
                yield profile
            if len(data) < limit:
                return

    async def profile_count(self, database: int | str) -> int:
        """How many profiles the database holds: one page of one profile, with its ``total``."""
        page = await self._get(
            f"database/{_ref(database)}/profiles",
            [("limit", "1"), ("total", "true"), ("dataonly", "true")],
        )
        return int(page.get("total", 0)) if isinstance(page, dict) else 0

    async def find_profiles(
        self, database: int | str, match: Mapping[str, object], limit: int = MAX_PAGE
    ) -> list[Profile]:
        """Profiles whose fields equal ``match`` (e.g. ``{"Email": "a@b.c"}``), at most ``limit``."""
        if not match:
            raise ValueError("find_profiles needs at least one field to match")
        params = [("fields[]", condition(k, "==", v)) for k, v in match.items()]
        page = await self._get(
            f"database/{_ref(database)}/profiles",
            [*params, ("limit", str(min(limit, MAX_PAGE))), ("total", "false")],
        )
        return [Profile.from_json(item) for item in page.get("data", [])]

    def profiles_modified_since(
        self, database: int | str, since: datetime | str, page_size: int = MAX_PAGE
    ) -> AsyncIterator[Profile]:
        """Profiles changed at or after ``since`` (account timezone), oldest change first."""
        return self.profiles(
            database,
            [condition("modified", ">=", timestamp(since))],
            orderby="modified",
            page_size=page_size,
        )

    async def profile_ids(self, database: int | str) -> list[int]:
        """Every profile id of the database. ``profileids`` is paged (100 by default) and answers
        a bare array, so pages are read until one comes back shorter than the longest so far,
        or empty: a server that caps ``limit`` below what was asked loses no id."""
        path = f"database/{_ref(database)}/profileids"
        ids: list[int] = []
        longest = 0
        while True:
            page = await self._get(path, [("start", str(len(ids))), ("limit", str(MAX_PAGE))])
            batch = [int(str(i)) for i in page] if isinstance(page, list) else []
            ids.extend(batch)
            if not batch or len(batch) < longest:
                return ids
            longest = len(batch)

    async def profile(self, profile_id: int) -> Profile:
        return Profile.from_json(await self._get(f"profile/{int(profile_id)}"))

    async def create_profile(
        self,
        database: int | str,
        fields: Mapping[str, object],
        interests: Sequence[str] | None = None,
    ) -> int:
        body: dict[str, Any] = {"fields": dict(fields)}
        if interests is not None:
            body["interests"] = list(interests)
        reply = await self._call("POST", f"database/{_ref(database)}/profiles", body=body)
        return _created(reply, "the profile")

    async def update_profile_fields(self, profile_id: int, fields: Mapping[str, object]) -> None:
        await self._call("PUT", f"profile/{int(profile_id)}/fields", body=dict(fields))

    async def delete_profile(self, profile_id: int, *, completely: bool = False) -> None:
        body = {"completely": True} if completely else None
        await self._call("DELETE", f"profile/{int(profile_id)}", body=body)

    # selections --------------------------------------------------------------------------------
    async def views(self, database: int | str) -> AsyncIterator[View]:
        """Every selection of the database: the top-level ones (``database/$id/views``) and,
        depth first, the nested ones under each that has children (``view/$id/views``)."""
        seen: set[int] = set()

        async def walk(path: str, parents: tuple[str, ...]) -> AsyncIterator[View]:
            async for item in self._pages(path):
                view = View.from_json(item)
                if view.id in seen:
                    continue
                seen.add(view.id)
                view = replace(view, path=(*parents, view.name))
                yield view
                if view.has_children:
                    async for child in walk(f"view/{view.id}/views", view.path):
                        yield child

        async for view in walk(f"database/{_ref(database)}/views", ()):
            yield view

    # content and emailings ---------------------------------------------------------------------
    async def templates(self) -> AsyncIterator[Template]:
        """Drag-and-drop (Marketing Suite) templates."""
        async for item in self._product_pages("ms", "templates"):
            yield Template.from_json(item, "ms")

    async def documents(self) -> AsyncIterator[Template]:
        """Publisher (HTML) documents: what a Publisher emailing sends."""
        async for item in self._product_pages("publisher", "documents", [("source", "false")]):
            yield Template.from_json(item, "publisher")

    async def send_emailing(
        self, template_id: int, target_id: int | str, target_type: TargetType = "database"
    ) -> int:
        """Send a drag-and-drop template to a target now (``POST ms/emailing``); returns the
        emailing id (``CreatedWithoutId``: sent, but the reply did not say its id)."""
        body = {"template": template_id, "target": target_id, "targettype": target_type}
        reply = await self._product_call("POST", "ms", "emailing", body=body, use="send")
        return _created(reply, "the emailing")

    async def send_publisher_emailing(
        self,
        document_id: int,
        target_id: int | str,
        target_type: TargetType = "database",
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        body: dict[str, Any] = {
            "document": document_id,
            "target": target_id,
            "targettype": target_type,
        }
        if settings:
            body["settings"] = dict(settings)
        reply = await self._product_call("POST", "publisher", "emailing", body=body, use="send")
        return _created(reply, "the emailing")

    async def emailing(self, emailing_id: int, product: Product = "ms") -> Emailing:
        """One emailing; Copernica answers it inside ``data``."""
        data = (await self._product_call("GET", product, f"emailing/{int(emailing_id)}")).data
        return Emailing.from_json(_unwrapped(data), product)

    async def emailing_statistics(
        self, emailing_id: int, product: Product = "ms"
    ) -> EmailingStatistics:
        reply = await self._product_call("GET", product, f"emailing/{int(emailing_id)}/statistics")
        return EmailingStatistics.from_json(_unwrapped(reply.data))

    # webhooks ----------------------------------------------------------------------------------
    async def create_webhook(
        self,
        handler: str,
        trigger: WebhookTrigger,
        *,
        callers: Sequence[str] | None = None,
        database: int | str | None = None,
    ) -> int:
        """Register ``handler`` for ``trigger``; ``callers`` limits which sources fire it."""
        body: dict[str, Any] = {"handler": handler, "trigger": trigger}
        if callers is not None:
            body["callers"] = list(callers)
        if database is not None:
            body["database"] = database
        return _created(await self._call("POST", "webhooks", body=body), "the webhook")

    async def webhook(self, webhook_id: int) -> Webhook:
        return Webhook.from_json(await self._get(f"webhook/{int(webhook_id)}"))

    async def delete_webhook(self, webhook_id: int) -> None:
        await self._call("DELETE", f"webhook/{int(webhook_id)}")


class _Refused(Exception):
    """A v4 call refused the JWT: ``_call`` fetches a new one and tries once more."""

    def __init__(self, error: CopernicaError) -> None:
        super().__init__(str(error))
        self.error = error


def _ref(value: int | str) -> str:
    """A path segment: ids as digits, names percent-encoded."""
    return quote(str(value), safe="")


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _created(reply: Reply, what: str) -> int:
    if reply.created_id is None:
        raise CreatedWithoutId(
            f"Copernica created {what} (HTTP {reply.status}) but its reply did not say the new id",
            status=reply.status,
        )
    return reply.created_id


def _unwrapped(data: Any) -> dict[str, Any]:
    """The object of a single-item reply, whether inside ``data`` (as documented for emailings)
    or not."""
    if isinstance(data, dict) and isinstance(data.get("data"), dict):
        return dict(data["data"])
    if not isinstance(data, dict):
        raise CopernicaError("Copernica answered something that is not an object", category="transient")
    return data


def _invalid_method(error: CopernicaError) -> bool:
    return error.status == 400 and error.message.endswith("Invalid method")


__all__ = ["CopernicaClient", "CreatedWithoutId", "Reply", "condition", "timestamp"]
