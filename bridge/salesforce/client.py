"""The bridge's Salesforce REST client: one instance per tenant.

- Logs in lazily through its ``Authenticator`` and logs in again, once per call, when Salesforce
  answers ``INVALID_SESSION_ID``.
- Every request carries ``Sforce-Call-Options: client=<client_id>`` so the CDC events of the
  bridge's own writes can be recognised (and dropped) by their ``changeOrigin``.
- Failures raise ``SalesforceError`` with a category of ``bridge.vocabulary``; transient ones
  (5xx, ``UNABLE_TO_LOCK_ROW``, dropped connections) are retried here with the one
  ``RetryPolicy``. ``rate_limit`` is not retried here: the daily budget does not come back in
  seconds, so the caller (the job queue) decides when to try again.
- ``Sforce-Limit-Info`` of every reply goes to the tenant's ``UsageSink``.
- With a ``HostPolicy`` (``bridge.hosts``), every request — the login's too — is refused before
  it is sent when its host is not allowed, and so is a session whose ``instance_url`` is not.
  Redirects are never followed: Salesforce's REST API answers in place.

A retried create may, in the rare case that Salesforce committed before failing, create a
record twice; the sync engine's links and fingerprints make that visible and mergeable.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

import aiohttp

from bridge.clock import PlatformClock
from bridge.hosts import HostPolicy
from bridge.retry import RetryPolicy
from bridge.usage import ApiUsage, UsageSink, ignore_usage
from bridge.vocabulary import CLIENT_ID, SALESFORCE_API_VERSION

from .auth import Authenticator, SalesforceSession
from .errors import RecordResult, SalesforceError

CHUNK = 200  # records per sObject Collections call
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


def parse_datetime(text: str) -> datetime:
    """A Salesforce REST datetime (``2024-05-14T09:21:37.000+0000``) as an aware datetime."""
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def soql_quote(value: str) -> str:
    """A SOQL string literal (quotes and backslashes escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceClient:
    """Async REST client for one Salesforce org (one tenant)."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        client_id: str = CLIENT_ID,
        api_version: str = SALESFORCE_API_VERSION,
        retry: RetryPolicy | None = None,
        usage: UsageSink = ignore_usage,
        http: aiohttp.ClientSession | None = None,
        timeout: float = 120.0,
        query_batch_size: int | None = None,
        describe_ttl: float = 300.0,
        hosts: HostPolicy | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.hosts = hosts
        self.client_id = client_id
        self.api_version = api_version
        self.retry = retry or RetryPolicy()
        self.usage = usage
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: SalesforceSession | None = None
        self._login_lock = asyncio.Lock()
        self._describes: dict[str, tuple[float, dict[str, Any]]] = {}
        self.describe_ttl = describe_ttl
        self.query_batch_size = query_batch_size
        self.clock = PlatformClock()  # Salesforce's clock, from the replies on the own session

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> SalesforceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=self._timeout,
                middlewares=(
                    (self.hosts.guard, self.clock.watch) if self.hosts is not None
                    else (self.clock.watch,)
                ),
            )
        return self._http

    @property
    def base(self) -> str:
        return f"/services/data/v{self.api_version}"

    # --- sessions -------------------------------------------------------------------

    async def session(self) -> SalesforceSession:
        """The current session, logging in first when there is none."""
        if self._session is None:
            async with self._login_lock:
                if self._session is None:
                    self._session = await self._login()
        return self._session

    async def relogin(self, stale: SalesforceSession | None = None) -> SalesforceSession:
        """A fresh session; concurrent callers that saw the same stale one share one login."""
        async with self._login_lock:
            if self._session is None or stale is None or self._session is stale:
                self._session = await self._login()
            return self._session

    async def _login(self) -> SalesforceSession:
        session = await self.authenticator.login(self.http)
        if self.hosts is not None:
            self.hosts.check(session.instance_url)  # the stream and every call will go there
        return session

    # --- the one request path -------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Call ``path`` (relative to the instance); returns (status, parsed JSON or None)."""
        attempt = 0
        relogged = False
        while True:
            attempt += 1
            session = await self.session()
            try:
                status, reply = await self._send(session, method, path, params, body, headers)
            except SalesforceError as error:
                if error.category == "transient" and not self.retry.gives_up(attempt):
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                raise
            if status < 300:
                return status, reply
            refused = SalesforceError.from_reply(status, reply)
            if refused.code == "INVALID_SESSION_ID" and not relogged:
                relogged = True
                attempt -= 1
                await self.relogin(session)
                continue
            if refused.category == "transient" and not self.retry.gives_up(attempt):
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            raise refused

    async def _send(
        self,
        session: SalesforceSession,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        headers: dict[str, str] | None,
    ) -> tuple[int, Any]:
        all_headers = {
            "Authorization": f"Bearer {session.access_token}",
            "Accept": "application/json",
            "Sforce-Call-Options": f"client={self.client_id}",
        }
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        url = session.instance_url + path
        try:
            async with self.http.request(
                method,
                url,
                params=params,
                data=json.dumps(body) if body is not None else None,
                headers=all_headers,
                allow_redirects=False,
            ) as response:
                status = response.status
                text = await response.text()
                self._record_usage(response.headers.get("Sforce-Limit-Info"))
        except (TimeoutError, aiohttp.ClientError) as error:
            self.usage(ApiUsage(platform="salesforce"))
            raise SalesforceError(f"{method} {path}: {error!r}", category="transient") from error
        if not text:
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, [{"message": text[:500], "errorCode": f"HTTP_{status}"}]

    def _record_usage(self, limit_info: str | None) -> None:
        match = _LIMIT_INFO.search(limit_info or "")
        if match:
            used, most = int(match.group(1)), int(match.group(2))
            self.usage(ApiUsage(platform="salesforce", used=used, max=most))
        else:
            self.usage(ApiUsage(platform="salesforce"))

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return (await self.request(method, path, **kw))[1]

    # --- metadata -------------------------------------------------------------------

    async def describe(self, sobject: str, *, refresh: bool = False) -> dict[str, Any]:
        """The describe of ``sobject``, kept for ``describe_ttl`` seconds (``refresh`` to
        re-fetch now): a client lives as long as its tenant's credentials do."""
        kept = self._describes.get(sobject)
        if refresh or kept is None or time.monotonic() - kept[0] > self.describe_ttl:
            described = await self._json("GET", f"{self.base}/sobjects/{sobject}/describe")
            kept = self._describes[sobject] = (time.monotonic(), described)
        return kept[1]

    async def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """Describe's fields by name."""
        return {f["name"]: f for f in (await self.describe(sobject))["fields"]}

    async def limits(self) -> dict[str, Any]:
        return dict(await self._json("GET", f"{self.base}/limits"))

    # --- query ----------------------------------------------------------------------

    async def query_pages(
        self, soql: str, *, include_deleted: bool = False
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of records (≤ 2 000 each), fetched one at a time as the caller goes."""
        resource = "queryAll" if include_deleted else "query"
        headers = (
            {"Sforce-Query-Options": f"batchSize={self.query_batch_size}"}
            if self.query_batch_size
            else None
        )
        page = await self._json(
            "GET", f"{self.base}/{resource}", params={"q": soql}, headers=headers
        )
        while True:
            yield page.get("records", [])
            next_url = page.get("nextRecordsUrl")
            if page.get("done", True) or not next_url:
                return
            page = await self._json("GET", next_url, headers=headers)

    async def query(
        self, soql: str, *, include_deleted: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of ``soql``; memory holds one page at a time."""
        async for page in self.query_pages(soql, include_deleted=include_deleted):
            for record in page:
                yield record

    async def records_by_id(
        self, sobject: str, fields: Sequence[str], ids: Iterable[str], *,
        include_deleted: bool = False,
    ) -> dict[str, dict[str, Any]]:
        """The records of ``ids`` that exist (``include_deleted``: deleted ones too), by the id
        as asked (15- and 18-character ids name the same record); one query per 200 ids."""
        wanted = sorted(set(ids))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            soql = (
                f"SELECT {', '.join(fields)} FROM {sobject} "
                f"WHERE Id IN ({', '.join(soql_quote(i) for i in chunk)})"
            )
            async for record in self.query(soql, include_deleted=include_deleted):
                found[record["Id"]] = record
                found[record["Id"][:15]] = record
        return {i: found[i] for i in wanted if i in found}

    async def records_by_field(
        self, sobject: str, fields: Sequence[str], field: str, value: str, *, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` live records whose ``field`` equals ``value``."""
        soql = (
            f"SELECT {', '.join(fields)} FROM {sobject} "
            f"WHERE {field} = {soql_quote(value)} LIMIT {int(limit)}"
        )
        return [record async for record in self.query(soql)]

    async def count(self, soql_count: str) -> int:
        """``totalSize`` of a ``SELECT COUNT() FROM …`` query."""
        return int(
            (await self._json("GET", f"{self.base}/query", params={"q": soql_count}))["totalSize"]
        )

    # --- single records -------------------------------------------------------------

    async def get(
        self, sobject: str, record_id: str, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        params = {"fields": ",".join(fields)} if fields else None
        return dict(
            await self._json("GET", f"{self.base}/sobjects/{sobject}/{record_id}", params=params)
        )

    async def create(self, sobject: str, values: dict[str, Any]) -> str:
        reply = await self._json("POST", f"{self.base}/sobjects/{sobject}", body=values)
        return str(reply["id"])

    async def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        await self.request("PATCH", f"{self.base}/sobjects/{sobject}/{record_id}", body=values)

    async def delete(self, sobject: str, record_id: str) -> None:
        await self.request("DELETE", f"{self.base}/sobjects/{sobject}/{record_id}")

    # --- sObject Collections (≤ 200 per call) ---------------------------------------

    async def _chunked(
        self,
        method: str,
        path: str,
        records: Sequence[dict[str, Any]],
        all_or_none: bool,
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        for start in range(0, len(records), CHUNK):
            chunk = list(records[start : start + CHUNK])
            reply = await self._json(
                method, path, body={"allOrNone": all_or_none, "records": chunk}
            )
            results.extend(RecordResult.parse(item) for item in reply)
        return results

    @staticmethod
    def _typed(sobject: str, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"attributes": {"type": sobject}, **record} for record in records]

    async def create_many(
        self, sobject: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        return await self._chunked(
            "POST", f"{self.base}/composite/sobjects", self._typed(sobject, records), all_or_none
        )

    async def update_many(
        self, sobject: str, records: Sequence[dict[str, Any]], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        """Each record carries its ``id`` (or ``Id``)."""
        typed = [
            {
                "attributes": {"type": sobject},
                "id": r.get("id") or r.get("Id"),
                **{k: v for k, v in r.items() if k not in ("id", "Id")},
            }
            for r in records
        ]
        return await self._chunked("PATCH", f"{self.base}/composite/sobjects", typed, all_or_none)

    async def upsert_many(
        self,
        sobject: str,
        field: str,
        records: Sequence[dict[str, Any]],
        *,
        all_or_none: bool = False,
    ) -> list[RecordResult]:
        return await self._chunked(
            "PATCH",
            f"{self.base}/composite/sobjects/{sobject}/{field}",
            self._typed(sobject, records),
            all_or_none,
        )
