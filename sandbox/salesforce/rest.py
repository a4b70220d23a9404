"""REST API of the sandbox org: ``/services/data/…`` with or without trailing slashes.

One catch-all route dispatches on path segments, because clients differ on trailing slashes.
Every reply carries ``Sforce-Limit-Info``; every authenticated call counts against
``daily_api_max``.

Choices where Salesforce's documentation is silent:
- Versions 31.0 up to the newest configured one are served; others answer 404 ``NOT_FOUND``.
- More than 200 records in a Collections call answers 400 ``EXCEEDED_ID_LIMIT``.
- A Collections record without ``attributes.type`` fails alone with ``INVALID_TYPE``.
- Query locators live until their last page is read (no 15-minute expiry).
- ``Sforce-Call-Options: client=`` shows in ``changeOrigin`` for sObject Rows, Rows by External
  ID and composite writes; for sObject Collections only with the ``collections_call_options``
  variant (Salesforce documents the header for Rows, Query and Bulk, not for Collections).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from multidict import CIMultiDict, MultiDict

from . import schema, soql
from .auth import Session, bearer
from .cdc import Transaction
from .org import Org, Record, SalesforceFault, not_found, now
from .state import ORG, Cursor, SandboxState

JSON_TYPE = "application/json"


@dataclass
class Call:
    """One REST call as the handlers see it: an HTTP request or a composite subrequest."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    txn: Transaction | None = None  # set for composite subrequests: one transaction for all

    async def read(self) -> bytes:
        return self.body


def reply(state: SandboxState, body: Any, status: int = 200) -> web.Response:
    if status == 204:
        response = web.Response(status=204)
    else:
        response = web.Response(
            status=status, text=json.dumps(body), content_type=JSON_TYPE, charset="UTF-8"
        )
    response.headers["Sforce-Limit-Info"] = state.limit_info()
    return response


def fault_reply(state: SandboxState, fault: SalesforceFault) -> web.Response:
    return reply(state, fault.rest_body(), fault.status)


def call_options_client(request: Call) -> str | None:
    """The ``client=`` value of ``Sforce-Call-Options`` (options are comma separated)."""
    for option in request.headers.get("Sforce-Call-Options", "").split(","):
        key, _, value = option.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


def transaction(
    request: Call, version: str, user_id: str, *, stamp: bool = True
) -> Transaction:
    """The write's transaction; ``stamp``: its ``changeOrigin`` names the caller's client."""
    if request.txn is not None:
        return request.txn
    client = call_options_client(request)
    origin = f"com/salesforce/api/rest/{version}"
    if client and stamp:
        origin += f";client={client}"
    return Transaction(origin=origin, user_id=user_id, caller=client or "")


def _version_ok(version: str, state: SandboxState) -> bool:
    try:
        number = float(version)
    except ValueError:
        return False
    newest = max(float(v) for v in state.settings.api_versions)
    return 31.0 <= number <= newest and version.endswith(".0")


async def versions(request: web.Request) -> web.Response:
    state = request[ORG]
    labels = {58: "Summer '23", 59: "Winter '24", 60: "Spring '24", 61: "Summer '24"}
    labels |= {62: "Winter '25", 63: "Spring '25", 64: "Summer '25", 65: "Winter '26"}
    return reply(
        state,
        [
            {
                "label": labels.get(int(float(v)), f"v{v}"),
                "url": f"/services/data/v{v}",
                "version": v,
            }
            for v in state.settings.api_versions
        ],
    )


async def data_api(request: web.Request) -> web.Response:
    """Authenticate, count, dispatch."""
    state = request[ORG]
    path = request.match_info["tail"].strip("/")
    if not path:
        return await versions(request)
    segments = path.split("/")
    version = segments[0][1:] if segments[0].startswith("v") else ""
    session = admit(request, state, version)
    if isinstance(session, web.Response):
        return session
    call = Call(request.method, request.query, request.headers, await request.read())
    try:
        return await _dispatch(call, state, version, segments[1:], session.user_id)
    except SalesforceFault as fault:
        return fault_reply(state, fault)


def admit(request: web.Request, state: SandboxState, version: str) -> Session | web.Response:
    """What every data call goes through first: a known API version, a live session, a password
    that has not expired, and the daily budget, which the call then spends. The session, or the
    fault to answer."""
    if not _version_ok(version, state):
        return fault_reply(state, not_found())
    session = state.sessions.use(bearer(request))
    if session is None:
        return fault_reply(
            state,
            SalesforceFault("INVALID_SESSION_ID", "Session expired or invalid", status=401),
        )
    if session.password_expired:
        return fault_reply(
            state,
            SalesforceFault(
                "INVALID_OPERATION_WITH_EXPIRED_PASSWORD",
                "The users password has expired, you must call SetPassword before attempting "
                "any other API operations",
                status=403,
            ),
        )
    if state.api_used >= state.settings.daily_api_max:
        return fault_reply(
            state,
            SalesforceFault("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", status=403),
        )
    state.api_used += 1
    return session


def _method_not_allowed(method: str, allowed: str) -> SalesforceFault:
    return SalesforceFault(
        "METHOD_NOT_ALLOWED",
        f"HTTP Method '{method}' not allowed. Allowed are {allowed}",
        status=405,
    )


async def _body(request: Call) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SalesforceFault("JSON_PARSER_ERROR", f"Unexpected character: {error}") from None


async def _record_body(request: Call) -> dict[str, Any]:
    body = await _body(request)
    if not isinstance(body, dict):
        raise SalesforceFault(
            "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY value"
        )
    return body


async def _dispatch(
    request: Call, state: SandboxState, version: str, parts: list[str], user_id: str
) -> web.Response:
    org = state.org
    method = request.method
    if not parts:
        names = ["sobjects", "query", "queryAll", "limits", "composite", "search"]
        return reply(state, {name: f"/services/data/v{version}/{name}" for name in names})
    head = parts[0]
    if head == "limits" and len(parts) == 1:
        return reply(state, _limits(state))
    if head in ("query", "queryAll"):
        if len(parts) == 2:
            return reply(state, _query_more(state, parts[1]))
        return reply(state, _query(request, state, version, include_deleted=head == "queryAll"))
    if head == "composite" and len(parts) == 1:
        if method != "POST":
            raise _method_not_allowed(method, "POST")
        return reply(state, await _composite(request, state, version, user_id))
    if head == "composite" and len(parts) >= 2 and parts[1] == "sobjects":
        return await _collections(request, state, version, parts[2:], user_id)
    if head != "sobjects":
        raise not_found()
    if len(parts) == 1:
        return reply(
            state,
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [_object_summary(spec, version) for spec in org.objects.values()],
            },
        )
    spec = org.spec(parts[1])
    rest = parts[2:]
    if not rest:
        if method == "POST":
            return await _create(request, state, version, spec.name, user_id)
        if method == "GET":
            return reply(
                state, {"objectDescribe": _object_summary(spec, version), "recentItems": []}
            )
        raise _method_not_allowed(method, "GET,HEAD,POST")
    if rest == ["describe"]:
        return reply(state, describe(spec, version))
    if rest == ["updated"]:
        return reply(state, _updated(request, state, spec.name))
    if rest == ["deleted"]:
        return reply(state, _deleted(request, state, spec.name))
    if len(rest) == 1:
        if rest[0].lower() == "id" and method == "POST":
            return await _create(request, state, version, spec.name, user_id)
        return await _by_id(request, state, version, spec.name, rest[0], user_id)
    return await _by_external_id(
        request, state, version, spec.name, rest[0], "/".join(rest[1:]), user_id
    )


# --- describe ---------------------------------------------------------------------------

_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "date": "xsd:date",
    "datetime": "xsd:dateTime", "double": "xsd:double", "int": "xsd:int",
    "address": "urn:address",
}  # fmt: skip


def _object_summary(spec: Any, version: str) -> dict[str, Any]:
    base = f"/services/data/v{version}/sobjects/{spec.name}"
    return {
        "activateable": False,
        "createable": True,
        "custom": spec.custom,
        "customSetting": False,
        "deletable": True,
        "deprecatedAndHidden": False,
        "feedEnabled": False,
        "keyPrefix": spec.key_prefix,
        "label": spec.label,
        "labelPlural": spec.label_plural,
        "layoutable": True,
        "mergeable": spec.name == "Contact",
        "mruEnabled": True,
        "name": spec.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": True,
        "triggerable": True,
        "undeletable": True,
        "updateable": True,
        "urls": {
            "sobject": base,
            "describe": f"{base}/describe",
            "rowTemplate": f"{base}/{{ID}}",
        },
    }


def describe(spec: Any, version: str) -> dict[str, Any]:
    """Describe of one sObject with the field keys clients read."""
    fields = []
    for f in spec.fields:
        text = f.type in ("string", "textarea", "email", "phone", "url", "picklist")
        fields.append(
            {
                "aggregatable": f.type != "textarea",
                "autoNumber": f.auto_number,
                "byteLength": f.length * 3
                if text
                else (18 if f.type in ("id", "reference") else 0),
                "calculated": False,
                "caseSensitive": False,
                "compoundFieldName": f.compound,
                "createable": f.createable,
                "custom": f.custom,
                "defaultValue": f.default if f.type != "boolean" else bool(f.default),
                "defaultedOnCreate": f.default is not None
                or f.name
                in (
                    "Id",
                    "OwnerId",
                    "CreatedDate",
                    "CreatedById",
                    "LastModifiedDate",
                    "LastModifiedById",
                    "SystemModstamp",
                    "IsDeleted",
                    "Name",
                ),
                "deprecatedAndHidden": False,
                "digits": 0,
                "externalId": f.external_id,
                "extraTypeInfo": "plaintextarea" if f.type == "textarea" else None,
                "filterable": f.type not in ("textarea", "address") or f.length <= 255,
                "groupable": f.type not in ("double", "datetime", "textarea", "address"),
                "idLookup": f.name == "Id" or f.external_id or f.type == "email",
                "inlineHelpText": None,
                "label": f.display_label,
                "length": f.length if text else (18 if f.type in ("id", "reference") else 0),
                "name": f.name,
                "nameField": f.name_field,
                "nillable": not f.required and f.type not in ("boolean", "id"),
                "picklistValues": [
                    {
                        "active": True,
                        "defaultValue": value == f.default,
                        "label": value,
                        "validFor": None,
                        "value": value,
                    }
                    for value in f.picklist
                ],
                "precision": f.precision,
                "referenceTo": list(f.reference_to),
                "relationshipName": f.relationship_name,
                "restrictedPicklist": False,
                "scale": f.scale,
                "soapType": _SOAP_TYPES.get(f.type, "xsd:string"),
                "sortable": f.type not in ("textarea", "address"),
                "type": f.type,
                "unique": f.unique,
                "updateable": f.updateable,
            }
        )
    described = _object_summary(spec, version)
    described.update(
        {
            "childRelationships": [],
            "recordTypeInfos": [],
            "fields": fields,
        }
    )
    return described


# --- single records ---------------------------------------------------------------------


async def _create(
    request: Call, state: SandboxState, version: str, sobject: str, user_id: str
) -> web.Response:
    body = await _record_body(request)
    record = state.org.create(sobject, body, transaction(request, version, user_id))
    return reply(state, {"id": record.id, "success": True, "errors": []}, 201)


def _fields_param(request: Call, org: Org, sobject: str) -> list[str] | None:
    raw = request.query.get("fields")
    if not raw:
        return None
    spec = org.spec(sobject)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if spec.field(name) is None:
            raise SalesforceFault(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}"
            )
    return names


async def _by_id(
    request: Call,
    state: SandboxState,
    version: str,
    sobject: str,
    record_id: str,
    user_id: str,
) -> web.Response:
    org = state.org
    if request.method == "GET":
        record = org.get(sobject, record_id)
        return reply(state, org.rest_record(record, version, _fields_param(request, org, sobject)))
    if request.method == "PATCH":
        body = await _record_body(request)
        org.update(sobject, record_id, body, transaction(request, version, user_id))
        return reply(state, None, 204)
    if request.method == "DELETE":
        org.delete(sobject, record_id, transaction(request, version, user_id))
        return reply(state, None, 204)
    raise _method_not_allowed(request.method, "GET,HEAD,PATCH,DELETE")


async def _by_external_id(
    request: Call,
    state: SandboxState,
    version: str,
    sobject: str,
    field_name: str,
    value: str,
    user_id: str,
) -> web.Response:
    org = state.org
    matches = org.by_external_id(sobject, field_name, value)
    if request.method == "GET":
        if not matches:
            raise not_found()
        if len(matches) > 1:
            return reply(state, [_url(version, r) for r in matches], 300)
        return reply(
            state, org.rest_record(matches[0], version, _fields_param(request, org, sobject))
        )
    if request.method == "DELETE":
        if not matches:
            raise not_found()
        org.delete(sobject, matches[0].id, transaction(request, version, user_id))
        return reply(state, None, 204)
    if request.method != "PATCH":
        raise _method_not_allowed(request.method, "GET,HEAD,PATCH,DELETE")
    body = await _record_body(request)
    txn = transaction(request, version, user_id)
    if len(matches) > 1:
        return reply(state, [_url(version, r) for r in matches], 300)
    if matches:
        record = org.update(sobject, matches[0].id, body, txn)
        if float(version) < 46.0:
            return reply(state, None, 204)
        return reply(state, {"id": record.id, "success": True, "errors": [], "created": False})
    if request.query.get("updateOnly", "").lower() == "true":
        raise not_found()
    fspec = org.spec(sobject).field(field_name)
    if fspec is not None and fspec.name != "Id":
        body = {**body, fspec.name: value}
    record = org.create(sobject, body, txn)
    return reply(state, {"id": record.id, "success": True, "errors": [], "created": True}, 201)


def _url(version: str, record: Record) -> str:
    return f"/services/data/v{version}/sobjects/{record.sobject}/{record.id}"


# --- query ------------------------------------------------------------------------------


def _page_size(request: Call, state: SandboxState) -> int:
    size = state.settings.query_page_size
    for option in request.headers.get("Sforce-Query-Options", "").split(","):
        key, _, value = option.strip().partition("=")
        if key.strip().lower() == "batchsize" and value.strip().isdigit():
            size = min(max(int(value), 200), 2000)
    return size


def _query(
    request: Call, state: SandboxState, version: str, *, include_deleted: bool
) -> dict[str, Any]:
    text = request.query.get("q")
    if text is None:
        raise SalesforceFault("MALFORMED_QUERY", "A query string has to be specified")
    query = soql.parse(state.org, text)
    rows = soql.run(state.org, query, include_deleted=include_deleted)
    if query.count_only:
        return {"totalSize": len(rows), "done": True, "records": []}
    cursor = Cursor(
        rows=rows, fields=query.fields, version=version, page_size=_page_size(request, state)
    )
    return _page(state, cursor, 0, None)


def _page(state: SandboxState, cursor: Cursor, offset: int, locator: str | None) -> dict[str, Any]:
    end = offset + cursor.page_size
    records = [
        state.org.rest_record(row, cursor.version, [f.name for f in cursor.fields])
        for row in cursor.rows[offset:end]
    ]
    page: dict[str, Any] = {"totalSize": len(cursor.rows), "done": end >= len(cursor.rows)}
    if not page["done"]:
        cursor_id = locator or "01g" + "".join(
            secrets.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
            for _ in range(15)
        )
        state.cursors[cursor_id] = cursor
        page["nextRecordsUrl"] = f"/services/data/v{cursor.version}/query/{cursor_id}-{end}"
    elif locator:
        state.cursors.pop(locator, None)
    page["records"] = records
    return page


def _query_more(state: SandboxState, locator: str) -> dict[str, Any]:
    cursor_id, _, offset = locator.rpartition("-")
    cursor = state.cursors.get(cursor_id)
    if cursor is None or not offset.isdigit():
        raise SalesforceFault("INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(state, cursor, int(offset), cursor_id)


# --- replication ------------------------------------------------------------------------


def _window(request: Call, days: int) -> tuple[datetime, datetime]:
    def moment(name: str) -> datetime:
        raw = request.query.get(name, "").replace(" ", "+")
        parsed = schema.parse_datetime(raw) if raw else None
        if parsed is None:
            raise SalesforceFault(
                "INVALID_REPLICATION_DATE", f"{name}: invalid date/time value: {raw!r}"
            )
        return parsed.replace(second=0, microsecond=0)

    start, end = moment("start"), moment("end")
    current = now().replace(second=0, microsecond=0)
    if start >= end:
        raise SalesforceFault("INVALID_REPLICATION_DATE", "startDate must precede endDate")
    if start < current - timedelta(days=days):
        raise SalesforceFault(
            "INVALID_REPLICATION_DATE", f"startDate cannot be more than {days} days ago"
        )
    return start, min(end, current)


def _updated(request: Call, state: SandboxState, sobject: str) -> dict[str, Any]:
    start, latest = _window(request, state.settings.updated_window_days)
    ids = [
        record.id
        for record in state.org.records[sobject].values()
        if not record.deleted and start <= record.values["SystemModstamp"] < latest  # type: ignore[operator]
    ]
    return {"ids": ids, "latestDateCovered": schema.rest_datetime(latest)}


def _deleted(request: Call, state: SandboxState, sobject: str) -> dict[str, Any]:
    start, latest = _window(request, state.settings.deleted_window_days)
    records = [
        {"id": record.id, "deletedDate": schema.rest_datetime(record.deleted_at)}
        for record in state.org.records[sobject].values()
        if record.deleted_at is not None and start <= record.deleted_at < latest
    ]
    earliest = max(
        state.org.delete_log_since,
        now() - timedelta(days=state.settings.deleted_window_days),
    ).replace(second=0, microsecond=0)
    return {
        "deletedRecords": records,
        "earliestDateAvailable": schema.rest_datetime(earliest),
        "latestDateCovered": schema.rest_datetime(latest),
    }


def _limits(state: SandboxState) -> dict[str, Any]:
    from .bulk import jobs_of  # bulk builds on this module

    daily = state.settings.daily_api_max
    query_jobs = jobs_of(state).created
    return {
        "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
        "DailyApiRequests": {"Max": daily, "Remaining": max(0, daily - state.api_used)},
        "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        # Bulk API 2.0 query jobs: 10,000 in 24 hours (the sandbox counts those of its org so far)
        "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": max(0, 10000 - query_jobs)},
        "DailyDurableGenericStreamingApiEvents": {"Max": 200000, "Remaining": 200000},
        "DailyDurableStreamingApiEvents": {"Max": 200000, "Remaining": 200000},
        "DurableStreamingApiConcurrentClients": {
            "Max": 1000,
            "Remaining": 1000 - len(state.streaming.clients) if state.streaming else 1000,
        },
        "DataStorageMB": {"Max": 1024, "Remaining": 1003},
        "FileStorageMB": {"Max": 2048, "Remaining": 2041},
        "SingleEmail": {"Max": 5000, "Remaining": 5000},
    }


# --- sObject Collections ----------------------------------------------------------------

_ROLLED_BACK = SalesforceFault(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone "
    "header",
    [],
)


def _ok(record_id: str, created: bool | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
    if created is not None:
        item["created"] = created
    return item


def _failed(fault: SalesforceFault, record_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"success": False, "errors": [fault.collection_error()]}
    if record_id:
        item = {"id": record_id, **item}
    return item


async def _collections(
    request: Call, state: SandboxState, version: str, parts: list[str], user_id: str
) -> web.Response:
    org = state.org
    method = request.method
    txn = transaction(
        request, version, user_id, stamp=state.settings.collections_call_options
    )
    if not parts and method == "DELETE":
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        all_or_none = request.query.get("allOrNone", "").lower() == "true"
        _check_size(ids)
        plans = [_plan(lambda i=i: ("delete", org.live(_type_of(org, i), i), None)) for i in ids]
        return reply(state, _apply(org, plans, all_or_none, txn, ids))
    if len(parts) == 1 and method in ("POST", "GET"):
        return reply(state, await _retrieve(request, state, version, parts[0]))
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SalesforceFault("JSON_PARSER_ERROR", "The request body must hold a records list")
    records: list[Any] = body["records"]
    all_or_none = bool(body.get("allOrNone", False))
    _check_size(records)
    if not parts and method == "POST":
        plans = [_plan(lambda r=r: _plan_create(org, r)) for r in records]
    elif not parts and method == "PATCH":
        plans = [_plan(lambda r=r: _plan_update(org, r)) for r in records]
    elif len(parts) == 2 and method == "PATCH":
        plans = [_plan(lambda r=r: _plan_upsert(org, parts[0], parts[1], r)) for r in records]
    else:
        raise _method_not_allowed(method, "POST,PATCH,DELETE")
    ids = [r.get("id") if isinstance(r, dict) else None for r in records]
    return reply(state, _apply(org, plans, all_or_none, txn, ids, upsert=len(parts) == 2))


def _check_size(items: list[Any]) -> None:
    if len(items) > 200:
        raise SalesforceFault(
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        )


def _type_of(org: Org, record_id: str) -> str:
    normal = schema.normalise_id(record_id) or ""
    for spec in org.objects.values():
        if normal.startswith(spec.key_prefix):
            return spec.name
    raise SalesforceFault("MALFORMED_ID", f"malformed id {record_id}", ["Id"])


def _plan(build: Any) -> Any:
    """Run a plan builder now (validation only); a fault becomes the plan's outcome."""
    try:
        return build()
    except SalesforceFault as fault:
        return fault


def _record_type(org: Org, record: Any) -> str:
    if not isinstance(record, dict):
        raise SalesforceFault("JSON_PARSER_ERROR", "each record must be an object")
    kind = (record.get("attributes") or {}).get("type")
    if not kind:
        raise SalesforceFault("INVALID_TYPE", "Must send a concrete entity type.")
    return org.spec(kind).name


def _plan_create(org: Org, record: Any) -> tuple[str, Any, Any]:
    sobject = _record_type(org, record)
    typed = org.check(org.spec(sobject), record, existing=None)
    return ("create", (sobject, record), typed)


def _plan_update(org: Org, record: Any) -> tuple[str, Any, Any]:
    sobject = _record_type(org, record)
    if not record.get("id") and not record.get("Id"):
        raise SalesforceFault("MISSING_ARGUMENT", "Id not specified in an update call", [])
    existing = org.live(sobject, record.get("id") or record.get("Id"))
    body = {k: v for k, v in record.items() if k not in ("id",)}
    typed = org.check(org.spec(sobject), body, existing=existing)
    return ("update", existing, typed)


def _plan_upsert(org: Org, sobject: str, field_name: str, record: Any) -> tuple[str, Any, Any]:
    kind = _record_type(org, record)
    if kind != org.spec(sobject).name:
        raise SalesforceFault("INVALID_TYPE", f"Record type {kind} does not match {sobject}")
    fspec = org.spec(sobject).field(field_name)
    if fspec is None or not fspec.external_id:
        raise SalesforceFault("INVALID_FIELD", f"{field_name} is not an external id field", [])
    value = record.get(fspec.name)
    if value in (None, ""):
        raise SalesforceFault("MISSING_ARGUMENT", f"{fspec.name} not specified", [fspec.name])
    matches = org.by_external_id(sobject, fspec.name, value)
    if len(matches) > 1:
        raise SalesforceFault(
            "DUPLICATE_EXTERNAL_ID",
            f"{fspec.name}: more than one record found for external id field: "
            f"{[m.id for m in matches]}",
            [fspec.name],
        )
    if matches:
        return ("update", matches[0], org.check(org.spec(sobject), record, existing=matches[0]))
    return ("create", (sobject, record), org.check(org.spec(sobject), record, existing=None))


def _apply(
    org: Org,
    plans: list[Any],
    all_or_none: bool,
    txn: Transaction,
    ids: list[Any],
    *,
    upsert: bool = False,
) -> list[dict[str, Any]]:
    """Apply validated plans in order; with allOrNone one failure rolls back all of them."""
    failed = any(isinstance(plan, SalesforceFault) for plan in plans)
    results: list[dict[str, Any]] = []
    for plan, given_id in zip(plans, ids, strict=True):
        if isinstance(plan, SalesforceFault):
            results.append(_failed(plan, given_id if isinstance(given_id, str) else None))
            continue
        if all_or_none and failed:
            results.append(_failed(_ROLLED_BACK, given_id if isinstance(given_id, str) else None))
            continue
        action, target, typed = plan
        try:
            if action == "create":
                sobject, body = target
                record = org.create(sobject, body, txn, typed=typed)
                results.append(_ok(record.id, True if upsert else None))
            elif action == "update":
                org.update(target.sobject, target.id, {}, txn, typed=typed)
                results.append(_ok(target.id, False if upsert else None))
            else:
                org.delete(target.sobject, target.id, txn)
                results.append(_ok(target.id))
        except SalesforceFault as fault:
            results.append(_failed(fault, given_id if isinstance(given_id, str) else None))
    return results


async def _retrieve(request: Call, state: SandboxState, version: str, sobject: str) -> list[Any]:
    org = state.org
    spec = org.spec(sobject)
    if request.method == "POST":
        body = await _body(request)
        ids = body.get("ids", []) if isinstance(body, dict) else []
        fields = body.get("fields", []) if isinstance(body, dict) else []
    else:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        fields = [f for f in request.query.get("fields", "").split(",") if f]
    _check_size(ids)
    for name in fields:
        if spec.field(name) is None:
            raise SalesforceFault(
                "INVALID_FIELD", f"No such column '{name}' on sobject of type {spec.name}"
            )
    out: list[Any] = []
    for record_id in ids:
        record = org.find(spec.name, record_id)
        if record is None or record.deleted:
            out.append(None)
        else:
            out.append(org.rest_record(record, version, fields or None))
    return out


# --- Composite --------------------------------------------------------------------------

_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")
_HALTED = [
    {
        "errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same "
        "transaction failed.",
    }
]


def _resolve(text: str, results: dict[str, Any]) -> str:
    """Replace ``@{ref.field}`` with the field of an earlier subrequest's reply body."""

    def value(match: re.Match[str]) -> str:
        reference, name = match.groups()
        body = results.get(reference)
        if not isinstance(body, dict) or name not in body:
            raise SalesforceFault(
                "PROCESSING_HALTED",
                f"Invalid reference specified. No value for {reference}.{name} found in "
                f"{reference}.",
            )
        return str(body[name])

    return _REFERENCE.sub(value, text)


async def _composite(
    request: Call, state: SandboxState, version: str, user_id: str
) -> dict[str, Any]:
    """``POST /composite``: up to 25 subrequests in one transaction and one API call.

    With ``allOrNone`` a failure restores the org as it was before the request (records and the
    change events it emitted); the other subrequests then answer ``PROCESSING_HALTED``.
    """
    body = await _body(request)
    subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
    if not isinstance(subrequests, list) or not subrequests:
        raise SalesforceFault("JSON_PARSER_ERROR", "compositeRequest must be a non-empty list")
    if len(subrequests) > 25:
        raise SalesforceFault("LIMIT_EXCEEDED", "A composite request has at most 25 subrequests")
    all_or_none = bool(body.get("allOrNone"))
    txn = transaction(request, version, user_id)
    snapshot = _snapshot(state) if all_or_none else None
    results: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    failed = False
    for sub in subrequests:
        reference = str(sub.get("referenceId", ""))
        if failed and all_or_none:
            out.append(_sub_reply(reference, 400, _HALTED))
            continue
        try:
            url = urlsplit(_resolve(str(sub.get("url", "")), results))
            payload = sub.get("body")
            raw = _resolve(json.dumps(payload), results).encode() if payload is not None else b""
            segments = url.path.removeprefix("/services/data/").strip("/").split("/")
            sub_version = segments[0][1:]
            if not url.path.startswith("/services/data/v") or not _version_ok(sub_version, state):
                raise not_found()
            call = Call(
                str(sub.get("method", "GET")).upper(),
                MultiDict(parse_qsl(url.query)),
                CIMultiDict(sub.get("httpHeaders") or {}),
                raw,
                txn=txn,
            )
            response = await _dispatch(call, state, sub_version, segments[1:], user_id)
        except SalesforceFault as fault:
            response = fault_reply(state, fault)
        parsed = json.loads(response.text) if response.text else None
        headers: dict[str, str] = {}
        if response.status == 201 and isinstance(parsed, dict) and "id" in parsed:
            sobject = segments[2] if len(segments) > 2 else ""
            headers["Location"] = f"/services/data/v{sub_version}/sobjects/{sobject}/{parsed['id']}"
        out.append(_sub_reply(reference, response.status, parsed, headers))
        if response.status < 300:
            results[reference] = parsed
        else:
            failed = True
    if all_or_none and failed and snapshot is not None:
        _restore(state, snapshot)
        out = [
            item if item["httpStatusCode"] >= 300 else _sub_reply(item["referenceId"], 400, _HALTED)
            for item in out
        ]
    return {"compositeResponse": out}


def _sub_reply(
    reference: str, status: int, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "body": body,
        "httpHeaders": headers or {},
        "httpStatusCode": status,
        "referenceId": reference,
    }


def _snapshot(state: SandboxState) -> tuple[Any, int, Counter[str]]:
    org = state.org
    return copy.deepcopy(org.records), org.events.latest, Counter(org.writes_by_client)


def _restore(state: SandboxState, snapshot: tuple[Any, int, Counter[str]]) -> None:
    """Undo a failed all-or-none composite: records, write counts and undelivered events."""
    org = state.org
    org.records, latest, org.writes_by_client = snapshot
    while org.events.events and org.events.events[-1].replay_id > latest:
        org.events.events.pop()
    org.events.latest = latest
    for client in state.streaming.clients.values():
        client.pending = [m for m in client.pending if m["data"]["event"]["replayId"] <= latest]
