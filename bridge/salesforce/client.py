"""The bridge's Salesforce REST client: one instance per tenant.

- Logs in lazily through its ``Authenticator`` and logs in again, once per call, when Salesforce
  answers ``INVALID_SESSION_ID``.
- Every request carries ``Sforce-Call-Options: client=<client_id>`` so the CDC events of the
  bridge's own writes can be recognised (and dropped) by their ``changeOrigin``.
- Failures raise ``SalesforceError`` with a category from ``bridge.errors``; transient ones
  (5xx, ``UNABLE_TO_LOCK_ROW``, dropped connections) are retried here with the one
  ``RetryPolicy``. ``rate_limit`` is not retried here: the daily budget does not come back in
  seconds, so the caller (the job queue) decides when to try again.
- ``Sforce-Limit-Info`` of every reply goes to the tenant's ``UsageSink``.

A retried create may, in the rare case that Salesforce committed before failing, create a
record twice; the sync engine's links and fingerprints make that visible and mergeable.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.retry import RetryPolicy
from bridge.usage import ApiUsage, UsageSink, ignore_usage

from .auth import Authenticator, SalesforceSession
from .errors import RecordResult, SalesforceError

CHUNK = 200  # records per sObject Collections call
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass(frozen=True)
class DeletedRecords:
    """getDeleted: ids with their deletion time, and the window Salesforce vouches for."""

    records: list[tuple[str, datetime]]
    earliest_date_available: datetime
    latest_date_covered: datetime


def parse_datetime(text: str) -> datetime:
    """A Salesforce REST datetime (``2024-05-14T09:21:37.000+0000``) as an aware datetime."""
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


class SalesforceClient:
    """Async REST client for one Salesforce org (one tenant)."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        client_id: str = "copernica-bridge",
        api_version: str = "59.0",
        retry: RetryPolicy | None = None,
        usage: UsageSink = ignore_usage,
        http: aiohttp.ClientSession | None = None,
        timeout: float = 120.0,
        query_batch_size: int | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.client_id = client_id
        self.api_version = api_version
        self.retry = retry or RetryPolicy()
        self.usage = usage
        self._http = http
        self._owns_http = http is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: SalesforceSession | None = None
        self._login_lock = asyncio.Lock()
        self._describes: dict[str, dict[str, Any]] = {}
        self.query_batch_size = query_batch_size

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
            self._http = aiohttp.ClientSession(timeout=self._timeout)
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
                    self._session = await self.authenticator.login(self.http)
        return self._session

    async def relogin(self, stale: SalesforceSession | None = None) -> SalesforceSession:
        """A fresh session; concurrent callers that saw the same stale one share one login."""
        async with self._login_lock:
            if self._session is None or stale is None or self._session is stale:
                self._session = await self.authenticator.login(self.http)
            return self._session

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
            error = SalesforceError.from_reply(status, reply)
            if error.code == "INVALID_SESSION_ID" and not relogged:
                relogged = True
                attempt -= 1
                await self.relogin(session)
                continue
            if error.category == "transient" and not self.retry.gives_up(attempt):
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            raise error

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
        """The describe of ``sobject``, fetched once per client (``refresh`` to re-fetch)."""
        if refresh or sobject not in self._describes:
            self._describes[sobject] = await self._json(
                "GET", f"{self.base}/sobjects/{sobject}/describe"
            )
        return self._describes[sobject]

    async def fields(self, sobject: str) -> dict[str, dict[str, Any]]:
        """Describe's fields by name."""
        return {f["name"]: f for f in (await self.describe(sobject))["fields"]}

    async def limits(self) -> dict[str, Any]:
        return await self._json("GET", f"{self.base}/limits")

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
        return await self._json("GET", f"{self.base}/sobjects/{sobject}/{record_id}", params=params)

    async def get_by_external_id(self, sobject: str, field: str, value: str) -> dict[str, Any]:
        path = f"{self.base}/sobjects/{sobject}/{field}/{quote(value, safe='')}"
        return await self._json("GET", path)

    async def create(self, sobject: str, values: dict[str, Any]) -> str:
        reply = await self._json("POST", f"{self.base}/sobjects/{sobject}", body=values)
        return str(reply["id"])

    async def update(self, sobject: str, record_id: str, values: dict[str, Any]) -> None:
        await self.request("PATCH", f"{self.base}/sobjects/{sobject}/{record_id}", body=values)

    async def delete(self, sobject: str, record_id: str) -> None:
        await self.request("DELETE", f"{self.base}/sobjects/{sobject}/{record_id}")

    async def upsert(
        self, sobject: str, field: str, value: str, values: dict[str, Any]
    ) -> tuple[str, bool]:
        """Insert or update by external id; returns (id, created)."""
        path = f"{self.base}/sobjects/{sobject}/{field}/{quote(value, safe='')}"
        status, reply = await self.request("PATCH", path, body=values)
        if reply is None:  # API ≤ 45.0 answers 204 on update
            return "", False
        return str(reply["id"]), bool(reply.get("created", status == 201))

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

    async def delete_many(
        self, ids: Sequence[str], *, all_or_none: bool = False
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            reply = await self._json(
                "DELETE",
                f"{self.base}/composite/sobjects",
                params={"ids": ",".join(chunk), "allOrNone": str(all_or_none).lower()},
            )
            results.extend(RecordResult.parse(item) for item in reply)
        return results

    async def retrieve_many(
        self, sobject: str, ids: Sequence[str], fields: Sequence[str]
    ) -> list[dict[str, Any] | None]:
        """Records by id (None where deleted or unknown), in input order."""
        out: list[dict[str, Any] | None] = []
        for start in range(0, len(ids), CHUNK):
            out.extend(
                await self._json(
                    "POST",
                    f"{self.base}/composite/sobjects/{sobject}",
                    body={"ids": list(ids[start : start + CHUNK]), "fields": list(fields)},
                )
            )
        return out

    async def composite(
        self, subrequests: Sequence[dict[str, Any]], *, all_or_none: bool = False
    ) -> list[dict[str, Any]]:
        """``POST /composite`` (≤ 25 subrequests, one API call); later subrequests may refer to
        earlier results as ``@{referenceId.field}``. Returns ``compositeResponse``."""
        reply = await self._json(
            "POST",
            f"{self.base}/composite",
            body={"allOrNone": all_or_none, "compositeRequest": list(subrequests)},
        )
        return list(reply["compositeResponse"])

    # --- replication ----------------------------------------------------------------

    async def get_updated(
        self, sobject: str, start: datetime, end: datetime
    ) -> tuple[list[str], datetime]:
        """Ids changed in [start, end) and ``latestDateCovered`` (restart the next poll there)."""
        reply = await self._json(
            "GET",
            f"{self.base}/sobjects/{sobject}/updated",
            params={"start": _iso(start), "end": _iso(end)},
        )
        return list(reply["ids"]), parse_datetime(reply["latestDateCovered"])

    async def get_deleted(self, sobject: str, start: datetime, end: datetime) -> DeletedRecords:
        """Deletions in [start, end); compare ``earliest_date_available`` with ``start``."""
        reply = await self._json(
            "GET",
            f"{self.base}/sobjects/{sobject}/deleted",
            params={"start": _iso(start), "end": _iso(end)},
        )
        return DeletedRecords(
            records=[
                (item["id"], parse_datetime(item["deletedDate"]))
                for item in reply["deletedRecords"]
            ],
            earliest_date_available=parse_datetime(reply["earliestDateAvailable"]),
            latest_date_covered=parse_datetime(reply["latestDateCovered"]),
        )
