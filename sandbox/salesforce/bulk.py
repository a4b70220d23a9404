"""Bulk API 2.0 query jobs of the sandbox org: ``/services/data/vXX.X/jobs/query…``.

The documented life cycle (Bulk API 2.0 and Bulk API Developer Guide, *Create a Query Job*,
*Get Information About a Query Job*, *Get Results for a Query Job*, *Abort a Query Job*,
*Delete a Query Job*):

- ``POST …/jobs/query`` ``{"operation": "query"|"queryAll", "query", "contentType"?: "CSV",
  "columnDelimiter"?: COMMA|TAB|PIPE|SEMICOLON|CARET|BACKQUOTE, "lineEnding"?: LF|CRLF}`` →
  200 with the job in state ``UploadComplete``. SOQL with COUNT() (or another aggregate),
  GROUP BY, OFFSET, TYPEOF, FIELDS() or a compound (address) field is refused.
- ``GET …/jobs/query/{id}``: the job; it moves on by itself, ``UploadComplete`` → ``InProgress``
  → ``JobComplete`` (or ``Failed``, when a failure was asked for through the admin route).
- ``GET …/jobs/query/{id}/results[?locator=L][&maxRecords=N]``: CSV (header row first, every
  value in double quotes, a null as an empty value), with ``Sforce-NumberOfRecords`` and
  ``Sforce-Locator`` (the string ``null`` on the last set). A locator names a set for as long as
  the job lives and may be read again; it is base64 of the offset (Salesforce's look alike,
  e.g. ``MTAwMDA``). Only a ``JobComplete`` job has results; a different API version than the
  job's answers 409.
- ``PATCH …/jobs/query/{id}`` ``{"state": "Aborted"}`` aborts an ``UploadComplete`` or
  ``InProgress`` job; ``DELETE …/jobs/query/{id}`` (204) removes a finished one
  (``JobComplete``, ``Aborted``, ``Failed``), otherwise 400 ``API_ERROR``.
- ``GET …/jobs/query``: every query job of the org.

Every request is one API call against the daily budget, as every REST call is.

Choices where the documentation is silent (or where only older versions say something):
- The error of a refused query is 400 ``API_ERROR`` with a message naming the clause; a bad
  query otherwise answers as the REST query does (``MALFORMED_QUERY``, ``INVALID_FIELD``).
- Results of a job that is not complete: 400 ``JOB_NOT_COMPLETE``; a bad locator: 400
  ``INVALID_LOCATOR``; a bad ``maxRecords``: 400 ``INVALIDQUERYPARAMETER``.
- Without ``maxRecords`` a set holds up to 50,000 records (Salesforce sizes it by bytes).
- The rows are chosen when the job starts; their values are rendered when a set is read.
- A job takes ``processing_seconds`` to complete (default 0.05 s plus 1 s per 100,000 rows).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import itertools
import json
import re
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from . import schema, soql
from .org import Org, Record, SalesforceFault, not_found
from .rest import admit, fault_reply, reply
from .state import ORG, SandboxState

DELIMITERS = {
    "COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`",
}  # fmt: skip
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DEFAULT_SET = 50_000
CSV_CHUNK = 500  # rows of a result set written between two turns of the event loop
FINISHED = ("JobComplete", "Aborted", "Failed")
_UNSUPPORTED = [
    (re.compile(r"\bCOUNT\s*\(", re.I), "Aggregate functions such as COUNT()"),
    (re.compile(r"\b(SUM|AVG|MIN|MAX|COUNT_DISTINCT)\s*\(", re.I), "Aggregate functions"),
    (re.compile(r"\bGROUP\s+BY\b", re.I), "GROUP BY"),
    (re.compile(r"\bOFFSET\b", re.I), "OFFSET"),
    (re.compile(r"\bTYPEOF\b", re.I), "TYPEOF"),
    (re.compile(r"\bFIELDS\s*\(", re.I), "FIELDS()"),
]


@dataclass
class QueryJob:
    id: str
    operation: str
    query: soql.Query
    version: str
    created_by: str
    delimiter: str
    line_ending: str
    created: datetime
    processing_seconds: float
    fail_with: str | None = None
    state: str = "UploadComplete"
    modstamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: float = field(default_factory=time.monotonic)
    rows: list[Record] | None = None

    def advance(self, org: Org) -> None:
        """Move on as time passes: rows are chosen on the first look, complete after a while."""
        if self.state in FINISHED:
            return
        if self.rows is None:
            self.rows = soql.run(org, self.query, include_deleted=self.operation == "queryAll")
            self.state = "InProgress"
            self.modstamp = datetime.now(UTC)
            self.processing_seconds += len(self.rows) / 100_000
            return
        if time.monotonic() - self.started_at >= self.processing_seconds:
            self.state = "Failed" if self.fail_with else "JobComplete"
            self.modstamp = datetime.now(UTC)

    def info(self, *, full: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.query.sobject.name,
            "createdById": self.created_by,
            "createdDate": schema.rest_datetime(self.created),
            "systemModstamp": schema.rest_datetime(self.modstamp),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
        }
        if not full:
            return body
        body |= {
            "jobType": "V2Query",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": len(self.rows or []) if self.state == "JobComplete" else 0,
            "retries": 0,
            "totalProcessingTime": int(self.processing_seconds * 1000)
            if self.state in FINISHED
            else 0,
            "isPkChunkingSupported": True,
        }
        if self.state == "Failed":
            body["errorMessage"] = self.fail_with
        return body


@dataclass
class OrgJobs:
    """One org's query jobs, and the failures asked for by the admin route."""

    jobs: dict[str, QueryJob] = field(default_factory=dict)
    fail_next: list[str] = field(default_factory=list)
    processing_seconds: float = 0.05
    calls: int = 0  # Bulk API requests served (each one is also an API call)
    created: int = 0


# Keyed by the Org: a reset of the org (a new Org) forgets its jobs too.
_by_org: weakref.WeakKeyDictionary[Org, OrgJobs] = weakref.WeakKeyDictionary()
_numbers = itertools.count(1)


def jobs_of(state: SandboxState) -> OrgJobs:
    found = _by_org.get(state.org)
    if found is None:
        found = _by_org[state.org] = OrgJobs()
    return found


# --- the API --------------------------------------------------------------------------------


async def jobs_api(request: web.Request) -> web.StreamResponse:
    """Authenticate and count as every REST call does, then dispatch on the job path."""
    state = request[ORG]
    version = request.match_info["version"]
    session = admit(request, state, version)
    if isinstance(session, web.Response):
        return session
    org_jobs = jobs_of(state)
    org_jobs.calls += 1
    parts = [p for p in request.match_info.get("tail", "").split("/") if p]
    try:
        return await _dispatch(request, state, org_jobs, version, parts, session.user_id)
    except SalesforceFault as fault:
        return fault_reply(state, fault)


async def _dispatch(
    request: web.Request,
    state: SandboxState,
    org_jobs: OrgJobs,
    version: str,
    parts: list[str],
    user_id: str,
) -> web.StreamResponse:
    method = request.method
    if not parts:
        if method == "POST":
            return reply(state, _create(state, org_jobs, version, user_id, await _json(request)))
        if method == "GET":
            listed = [job.info(full=False) for job in _advanced(state, org_jobs)]
            return reply(state, {"done": True, "records": listed, "nextRecordsUrl": None})
        raise _not_allowed(method, "GET,POST")
    job = org_jobs.jobs.get(parts[0])
    if job is None:
        raise SalesforceFault("NOT_FOUND", "The requested resource does not exist", status=404)
    job.advance(state.org)
    if len(parts) == 2 and parts[1] == "results":
        if method != "GET":
            raise _not_allowed(method, "GET")
        return await _results(request, state, job, version)
    if len(parts) != 1:
        raise not_found()
    if method == "GET":
        return reply(state, job.info())
    if method == "PATCH":
        return reply(state, _abort(job, await _json(request)))
    if method == "DELETE":
        if job.state not in FINISHED:
            raise SalesforceFault(
                "API_ERROR",
                "Error encountered when deleting the job because the job is not terminated",
            )
        del org_jobs.jobs[job.id]
        return reply(state, None, 204)
    raise _not_allowed(method, "GET,PATCH,DELETE")


def _advanced(state: SandboxState, org_jobs: OrgJobs) -> list[QueryJob]:
    for job in org_jobs.jobs.values():
        job.advance(state.org)
    return list(org_jobs.jobs.values())


def _not_allowed(method: str, allowed: str) -> SalesforceFault:
    return SalesforceFault(
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
        status=405,
    )


async def _json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SalesforceFault("JSON_PARSER_ERROR", f"Unexpected character: {error}") from None
    if not isinstance(body, dict):
        raise SalesforceFault("JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body


def _create(
    state: SandboxState, org_jobs: OrgJobs, version: str, user_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    operation = body.get("operation")
    if operation not in ("query", "queryAll"):
        raise SalesforceFault(
            "INVALIDJOB", f"Invalid operation: {operation!r}; use query or queryAll", ["operation"]
        )
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise SalesforceFault("INVALIDJOB", "A query is required for a query job", ["query"])
    if body.get("contentType", "CSV") != "CSV":
        raise SalesforceFault("INVALIDJOB", "contentType: only CSV is supported", ["contentType"])
    delimiter = body.get("columnDelimiter", "COMMA")
    if delimiter not in DELIMITERS:
        raise SalesforceFault(
            "INVALIDJOB", f"Invalid columnDelimiter: {delimiter!r}", ["columnDelimiter"]
        )
    line_ending = body.get("lineEnding", "LF")
    if line_ending not in LINE_ENDINGS:
        raise SalesforceFault("INVALIDJOB", f"Invalid lineEnding: {line_ending!r}", ["lineEnding"])
    for pattern, what in _UNSUPPORTED:
        if pattern.search(text):
            raise SalesforceFault("API_ERROR", f"{what} is not supported in Bulk API 2.0 queries")
    query = soql.parse(state.org, text)
    compound = [f.name for f in query.fields if f.type == "address"]
    if compound:
        raise SalesforceFault(
            "API_ERROR",
            f"Compound fields are not supported in Bulk API 2.0 queries: {', '.join(compound)}; "
            "query their components instead",
        )
    number = next(_numbers) + state.settings.first_record_number
    job = QueryJob(
        id=schema.make_id("750", "5g", number),
        operation=operation,
        query=query,
        version=version,
        created_by=user_id,
        delimiter=delimiter,
        line_ending=line_ending,
        created=datetime.now(UTC),
        processing_seconds=org_jobs.processing_seconds,
        fail_with=org_jobs.fail_next.pop(0) if org_jobs.fail_next else None,
    )
    org_jobs.jobs[job.id] = job
    org_jobs.created += 1
    return job.info(full=False) | {"lineEnding": line_ending, "columnDelimiter": delimiter}


def _abort(job: QueryJob, body: dict[str, Any]) -> dict[str, Any]:
    if body.get("state") != "Aborted":
        raise SalesforceFault("INVALIDJOBSTATE", "A query job can only be set to Aborted")
    if job.state not in ("UploadComplete", "InProgress"):
        raise SalesforceFault("INVALIDJOBSTATE", f"Cannot abort a job in state {job.state}")
    job.state = "Aborted"
    job.modstamp = datetime.now(UTC)
    return job.info(full=False)


def locator_for(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str) -> int:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    if not text.isdigit():
        raise SalesforceFault("INVALID_LOCATOR", f"Invalid locator: {locator}")
    return int(text)


async def _results(
    request: web.Request, state: SandboxState, job: QueryJob, version: str
) -> web.StreamResponse:
    if version != job.version:
        raise SalesforceFault(
            "API_ERROR",
            f"The job was created in API version {job.version}: get its results with that version",
            status=409,
        )
    if job.state != "JobComplete" or job.rows is None:
        raise SalesforceFault(
            "JOB_NOT_COMPLETE",
            "can only download query results of successfully completed bulk job with status: "
            f"JOB_COMPLETE. Current status: {job.state}",
        )
    raw_max = request.query.get("maxRecords")
    if raw_max is not None and (not raw_max.isdigit() or int(raw_max) < 1):
        raise SalesforceFault("INVALIDQUERYPARAMETER", f"Invalid maxRecords: {raw_max}")
    size = int(raw_max) if raw_max is not None else DEFAULT_SET
    locator = request.query.get("locator")
    start = _offset(locator) if locator else 0
    if start > len(job.rows):
        raise SalesforceFault("INVALID_LOCATOR", f"Invalid locator: {locator}")
    rows = job.rows[start : start + size]
    end = start + len(rows)
    response = web.StreamResponse(headers={
        "Sforce-NumberOfRecords": str(len(rows)),
        "Sforce-Locator": locator_for(end) if end < len(job.rows) else "null",
        "Sforce-Limit-Info": state.limit_info(),
    })
    response.content_type, response.charset = "text/csv", "UTF-8"
    await response.prepare(request)
    # A set of 50,000 rows written in one go would hold every other org's calls and change
    # events for a tenth of a second: it goes out in chunks.
    writer = _CsvChunks(job)
    writer.row([f.name for f in job.query.fields])
    for n, record in enumerate(rows, 1):
        writer.row([csv_value(record.values.get(f.name)) for f in job.query.fields])
        if n % CSV_CHUNK == 0:
            await response.write(writer.take())
            await asyncio.sleep(0)  # (write() itself turns the loop only when the socket is full)
    await response.write(writer.take())
    await response.write_eof()
    return response


class _CsvChunks:
    """CSV lines in a job's delimiter and line ending, handed out as the bytes written so far."""

    def __init__(self, job: QueryJob) -> None:
        self._out = io.StringIO()
        self._writer = csv.writer(
            self._out,
            delimiter=DELIMITERS[job.delimiter],
            lineterminator=LINE_ENDINGS[job.line_ending],
            quoting=csv.QUOTE_ALL,
        )

    def row(self, values: list[str]) -> None:
        self._writer.writerow(values)

    def take(self) -> bytes:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text.encode()


def csv_value(value: object) -> str:
    """A value as Bulk API CSV writes it: ``true``/``false``, ISO dates, UTC datetimes with
    milliseconds and ``Z``, numbers as written, a null as nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return schema.cdc_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --- admin: what the tests and the bench look at ----------------------------------------------


async def admin_overview(request: web.Request) -> web.Response:
    """``GET /_sandbox/bulk``: the org's Bulk API requests and jobs so far."""
    org_jobs = jobs_of(request[ORG])
    return web.json_response(
        {
            "calls": org_jobs.calls,
            "jobs_created": org_jobs.created,
            "jobs": [job.info() for job in _advanced(request[ORG], org_jobs)],
            "processing_seconds": org_jobs.processing_seconds,
        }
    )


async def admin_configure(request: web.Request) -> web.Response:
    """``POST /_sandbox/bulk`` ``{"fail_next"?: "message", "processing_seconds"?: s}``: the next
    job created fails with that message; jobs take that long."""
    org_jobs = jobs_of(request[ORG])
    body = await request.json()
    if body.get("fail_next"):
        org_jobs.fail_next.append(str(body["fail_next"]))
    if "processing_seconds" in body:
        org_jobs.processing_seconds = float(body["processing_seconds"])
    return web.json_response(
        {"fail_next": org_jobs.fail_next, "processing_seconds": org_jobs.processing_seconds}
    )


def routes(app: web.Application) -> None:
    """Before the REST catch-all: ``/services/data/vXX.X/jobs/query…`` and the admin route."""
    for path in ("/services/data/v{version}/jobs/query", "/services/data/v{version}/jobs/query/"):
        app.router.add_route("*", path, jobs_api)
    app.router.add_route("*", "/services/data/v{version}/jobs/query/{tail:.+}", jobs_api)
    app.router.add_get("/_sandbox/bulk", admin_overview)
    app.router.add_post("/_sandbox/bulk", admin_configure)
