"""Bulk API 2.0 query jobs: read many records in few calls.

A job costs 1 call to create, a few to poll its state (a bounded back-off: 0.05 s doubling up
to 2 s), one per result set of ``SET_SIZE`` records, and 1 to delete it. For 100,000 contacts
that is about 10 calls, where REST query pages of 2,000 cost 50.

Result sets are CSV; they are read as a stream and parsed ``page_size`` records at a time, so
memory holds one page whatever the set size. The records come back as the REST query gives
them (``attributes`` aside), typed from the sObject's describe:

- ``boolean`` → ``True``/``False``; ``int`` → ``int``; ``double``, ``currency``, ``percent``
  → ``float``;
- an empty value → ``None`` (Salesforce does not tell an empty text from a null one);
- ``datetime`` → ``2024-05-14T09:21:37.000+0000`` (the REST form; the CSV says ``…Z``);
- everything else (ids, texts, dates ``2024-05-14``) → the string as it is.

Failures are ``SalesforceError`` with the project's categories: a refused query is
``validation``, a job that ends ``Failed`` or ``Aborted`` is ``transient`` (the caller's job is
retried later), a job that does not finish within ``max_wait`` is ``transient`` too.
The job is deleted at the end, also when reading failed (its results stay on Salesforce
otherwise, for 7 days).
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp

from bridge.retry import RetryPolicy
from bridge.slices import in_slices
from bridge.usage import ApiUsage

from .client import SalesforceClient
from .errors import SalesforceError

SET_SIZE = 50_000  # records per result set (maxRecords), as simple-salesforce reads them
PAGE_SIZE = 2_000  # records handed to the caller at a time, as a REST query page
POLL = RetryPolicy(max_attempts=1_000_000, base=0.05, cap=2.0, jitter=0.2)
MAX_WAIT = 1_800.0  # seconds a job may take before the read counts as failed
NUMBER_TYPES = {"double": float, "currency": float, "percent": float, "int": int}


async def bulk_query_pages(
    client: SalesforceClient,
    soql: str,
    *,
    sobject: str,
    include_deleted: bool = False,
    page_size: int = PAGE_SIZE,
    set_size: int = SET_SIZE,
    max_wait: float = MAX_WAIT,
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The records of ``soql`` (over ``sobject``) in pages of ``page_size``, read through one
    Bulk API 2.0 query job (``queryAll`` with ``include_deleted``)."""
    types = {
        name: str(f.get("type", "string")) for name, f in (await client.fields(sobject)).items()
    }
    jobs = f"{client.base}/jobs/query"
    _, job = await client.request(
        "POST",
        jobs,
        body={
            "operation": "queryAll" if include_deleted else "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    job_id = str(job["id"])
    try:
        await _until_complete(client, f"{jobs}/{job_id}", max_wait)
        locator: str | None = None
        while True:
            params = {"maxRecords": str(set_size)} | ({"locator": locator} if locator else {})
            reader = _ResultSet(client, f"{jobs}/{job_id}/results", params, types)
            async for page in reader.pages(page_size):
                yield page
            if reader.next_locator in (None, "", "null"):
                return
            locator = reader.next_locator
    finally:
        await _delete(client, f"{jobs}/{job_id}")


async def _until_complete(client: SalesforceClient, path: str, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    attempt = 0
    while True:
        _, job = await client.request("GET", path)
        state = job.get("state")
        if state == "JobComplete":
            return
        if state in ("Failed", "Aborted"):
            raise SalesforceError(
                f"Bulk API query job {job.get('id')} ended {state}: "
                f"{job.get('errorMessage') or 'no reason given'}",
                category="transient",
                code=f"BULK_JOB_{str(state).upper()}",
            )
        attempt += 1
        wait = POLL.delay(attempt)
        if time.monotonic() + wait > deadline:
            raise SalesforceError(
                f"Bulk API query job {job.get('id')} still {state} after {max_wait:.0f} s",
                category="transient",
                code="BULK_JOB_TIMEOUT",
            )
        await asyncio.sleep(wait)


async def _delete(client: SalesforceClient, path: str) -> None:
    try:
        await client.request("DELETE", path)
    except SalesforceError as error:
        if error.category != "not_found":  # already gone is what we wanted
            raise


class _ResultSet:
    """One result set (one GET), streamed: CSV lines are grouped into records (a quoted value
    may hold line breaks) and parsed a page at a time. A dropped connection reads the set again
    from its locator (a locator names the same set for as long as the job lives), skipping the
    records already handed out."""

    def __init__(
        self, client: SalesforceClient, path: str, params: dict[str, str], types: dict[str, str]
    ) -> None:
        self.client, self.path, self.params, self.types = client, path, params, types
        self.next_locator: str | None = None

    async def pages(self, page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        handed_out = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                async for page in self._read(page_size, skip=handed_out):
                    handed_out += len(page)
                    yield page
                return
            except SalesforceError as error:
                if error.category != "transient" or self.client.retry.gives_up(attempt):
                    raise
                await asyncio.sleep(self.client.retry.delay(attempt))

    async def _read(self, page_size: int, skip: int) -> AsyncIterator[list[dict[str, Any]]]:
        client = self.client
        relogged = False
        while True:
            session = await client.session()
            headers = {
                "Authorization": f"Bearer {session.access_token}",
                "Accept": "text/csv",
                "Sforce-Call-Options": f"client={client.client_id}",
            }
            try:
                async with client.http.get(
                    session.instance_url + self.path,
                    params=self.params,
                    headers=headers,
                    allow_redirects=False,
                    # a set is read while the caller works on its pages: no limit on the whole
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
                ) as response:
                    client._record_usage(response.headers.get("Sforce-Limit-Info"))
                    if response.status >= 300:
                        text = await response.text()
                        refused = _refusal(response.status, text)
                        if refused.code == "INVALID_SESSION_ID" and not relogged:
                            relogged = True
                            await client.relogin(session)
                            continue
                        raise refused
                    self.next_locator = response.headers.get("Sforce-Locator")
                    async for page in self._parse(response.content, page_size, skip):
                        yield page
                    return
            except (TimeoutError, aiohttp.ClientError) as error:
                client.usage(ApiUsage(platform="salesforce"))
                raise SalesforceError(
                    f"GET {self.path}: {error!r}", category="transient"
                ) from error

    async def _parse(
        self, content: aiohttp.StreamReader, page_size: int, skip: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        header: list[str] | None = None
        pending: list[str] = []  # lines of the record being read
        quotes = 0
        records: list[str] = []
        async for raw in content:
            line = raw.decode("utf-8")
            pending.append(line)
            quotes += line.count('"')
            if quotes % 2:  # inside a quoted value: the record goes on on the next line
                continue
            text, pending, quotes = "".join(pending), [], 0
            if header is None:
                header = next(csv.reader([text]))
                continue
            if skip:
                skip -= 1
                continue
            records.append(text)
            if len(records) == page_size:
                yield await self._typed(header, records)
                records = []
        if pending:
            raise SalesforceError(
                "the result set ended inside a quoted value", category="transient"
            )
        if records and header is not None:
            yield await self._typed(header, records)

    async def _typed(self, header: list[str], lines: list[str]) -> list[dict[str, Any]]:
        kinds = [self.types.get(name, "string") for name in header]
        return [
            {name: typed(kind, value) for name, kind, value in zip(header, kinds, row, strict=True)}
            async for row in in_slices(csv.reader(lines))
        ]


def typed(kind: str, value: str) -> Any:
    """A CSV value as the REST API gives it (see the module's docstring)."""
    if value == "":
        return None
    if kind == "boolean":
        return value.lower() == "true"
    number = NUMBER_TYPES.get(kind)
    if number is not None:
        try:
            return number(value)
        except ValueError:
            return float(value)
    if kind == "datetime" and value.endswith("Z"):
        return value[:-1] + "+0000"
    return value


def _refusal(status: int, text: str) -> SalesforceError:
    try:
        body: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = [{"message": text[:500], "errorCode": f"HTTP_{status}"}]
    return SalesforceError.from_reply(status, body)
