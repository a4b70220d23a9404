"""Copernica webhook intake: check the signature, then parse the payload into a typed event.

Framework-light: ``receive_webhook(method, path, headers, body, key_lookup, now)`` returns a
``ProfileEvent``/``SubprofileEvent``/``MailingEvent`` or raises ``WebhookRejected(status, reason)``;
the web layer answers that status and stores no job. Checks, in the order Copernica documents:
a ``Signature`` (draft-cavage, rsa-sha256) covering at least ``(request-target) host date digest
x-copernica-id``; a ``Date`` within ``max_age`` seconds of ``now``; a ``Digest`` (SHA-256) equal
to the body's; ``Host`` equal to the bridge's public host and ``X-Copernica-ID`` to the tenant's
account, when the caller knows them; a key for ``keyId`` (ending in ``.copernica.com``) from the
key lookup; a valid signature. Failures are 401 (logged, without the body). Then the body,
form-encoded (or JSON, chosen by Content-Type), is parsed; anything malformed (a JSON body nested
too deeply included) is a 400, an unknown media type 415.

Copernica's headers are read as leniently as its own library (``http-signatures-php``) reads
them: the ``Signature`` parameters are ``key="value"`` pairs in any order, commas optional (the
documentation's example has none before ``signature=``), header names in any case, folded
values; the ``Digest`` token may be ``SHA-256``, ``sha-256`` or ``sha256``; ``X-Copernica-ID``
may read ``account-1234``, ``account_1234`` or ``environment_1234``.

Replays (the same delivery sent again within the ``Date`` window) are the web layer's to refuse:
``delivery_key`` names a delivery by its ``Digest``, ``Date`` and ``Signature``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bridge.copernica.keys import KeyLookup
from bridge.vocabulary import WEBHOOK_TRIGGERS, WebhookTrigger

REQUIRED_SIGNED = ("(request-target)", "host", "date", "digest", "x-copernica-id")
PROFILE_TYPES = WEBHOOK_TRIGGERS  # what a profile or subprofile webhook reports
MAILING_TYPES = ("click", "open", "delivery", "bounce", "failure", "unsubscribe")
MAX_BODY = 1_000_000
MAX_FIELDS = 5_000
MAX_JSON_DEPTH = 20  # webhook bodies are flat: deeper nesting is an attack, not a payload
_PARAM = re.compile(r'([A-Za-z]+)\s*=\s*"([^"]*)"')
_ACCOUNT = re.compile(r"(?:account|environment)?[-_ ]?(\d+)", re.IGNORECASE)
_BRACKETED = re.compile(r"^([A-Za-z_]+)\[([^\]]*)\]$")


class WebhookRejected(Exception):
    """The delivery is refused with HTTP ``status``; ``reason`` is safe to log and to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ProfileEvent:
    """A profile was created, updated or deleted in Copernica."""

    type: WebhookTrigger
    profile_id: int
    database_id: int
    fields: dict[str, str]  # the profile's values after the change (before it, for a delete)
    parameters: dict[str, str] = field(default_factory=dict)  # what the change was made with
    interests: tuple[str, ...] = ()
    timestamp: str = ""  # "YYYY-MM-DD HH:MM:SS", account timezone
    time: int | None = None  # the same moment as Unix seconds
    created: str = ""
    modified: str = ""
    account: str = ""  # X-Copernica-ID


@dataclass(frozen=True)
class SubprofileEvent:
    type: WebhookTrigger
    subprofile_id: int
    profile_id: int
    database_id: int
    collection_id: int
    fields: dict[str, str]
    parameters: dict[str, str] = field(default_factory=dict)
    timestamp: str = ""
    time: int | None = None
    created: str = ""
    modified: str = ""
    account: str = ""


@dataclass(frozen=True)
class MailingEvent:
    """A click, open, delivery, bounce, failure or unsubscribe of a (drag-and-drop) mailing."""

    type: Literal["click", "open", "delivery", "bounce", "failure", "unsubscribe"]
    message_id: str
    data: dict[str, str]
    timestamp: str = ""
    time: int | None = None
    account: str = ""


WebhookEvent = ProfileEvent | SubprofileEvent | MailingEvent


async def receive_webhook(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    key_lookup: KeyLookup,
    now: datetime | float,
    *,
    max_age: float = 60.0,
    expected_host: str | None = None,
    expected_account: str | None = None,
    key_suffix: str = ".copernica.com",
) -> WebhookEvent:
    """Verify one delivery and return its event; ``path`` includes the query string, if any.

    ``expected_host``: the bridge's public host (``host[:port]``); ``expected_account``: the
    tenant's Copernica account id (from ``identity``). None skips that check."""
    if method.upper() != "POST":
        raise WebhookRejected(405, "webhooks are POSTed")
    if len(body) > MAX_BODY:
        raise WebhookRejected(413, "body too large")
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    signature = parse_signature(lowered.get("signature", ""))
    check_date(lowered.get("date", ""), now, max_age)
    check_digest(lowered.get("digest", ""), body)
    if expected_host is not None and _host(lowered.get("host", "")) != _host(expected_host):
        raise WebhookRejected(401, "Host is not ours")
    if expected_account and account_number(lowered.get("x-copernica-id", "")) != account_number(
        expected_account
    ):
        raise WebhookRejected(401, "X-Copernica-ID is not the tenant's Copernica account")
    key_id = signature["keyid"]
    if not key_id.endswith(key_suffix):
        raise WebhookRejected(401, "keyId is not a Copernica key")
    key = await key_lookup(key_id)
    if key is None:
        raise WebhookRejected(401, "no public key for keyId")
    signing_string = build_signing_string(method, path, lowered, signature["headers"])
    try:
        key.verify(
            signature["signature_bytes"],
            signing_string.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise WebhookRejected(401, "signature does not verify") from None
    return parse_payload(
        lowered.get("content-type", ""), body, account=lowered.get("x-copernica-id", "")
    )


def _host(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    return host.removesuffix(":443").removesuffix(":80")


def account_number(value: str) -> str:
    """The account id in an ``X-Copernica-ID`` (``account-12``, ``account_12``, ``12``, …)."""
    match = _ACCOUNT.fullmatch(value.strip())
    return match.group(1).lstrip("0") or "0" if match else value.strip().lower()


def delivery_key(headers: Mapping[str, str]) -> bytes:
    """What makes a delivery unique: its ``Digest``, ``Date`` and ``Signature`` together."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    parts = (lowered.get(name, "").strip() for name in ("digest", "date", "signature"))
    return hashlib.sha256("\n".join(parts).encode()).digest()


def header_shape(headers: Mapping[str, str]) -> str:
    """How a delivery's security headers are built, without their values: for the log line
    that tells an operator why deliveries are refused."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    names = sorted(n for n in lowered if n in _SHAPED or n.startswith("x-"))
    signature = lowered.get("signature", "")
    params = [m.group(1) for m in _PARAM.finditer(signature)]
    covered = dict((m.group(1).lower(), m.group(2)) for m in _PARAM.finditer(signature)).get(
        "headers"
    )
    digest = ",".join(
        part.strip().partition("=")[0] for part in lowered.get("digest", "").split(",") if part
    )
    account = re.sub(r"\d+", "<digits>", lowered.get("x-copernica-id", ""))[:40]
    date = "RFC 1123" if _rfc1123(lowered.get("date", "")) else (
        "absent" if "date" not in lowered else "unreadable"
    )
    return (
        f"headers [{', '.join(names)}]; Signature parameters [{', '.join(params)}] with "
        f"{signature.count(',')} comma(s); signed [{' '.join((covered or '').split())}]; "
        f"Digest tokens [{digest}]; X-Copernica-ID {account or '(absent)'}; Date {date}; "
        f"Content-Type {lowered.get('content-type', '(absent)').split(';')[0]}"
    )


_SHAPED = frozenset({"host", "date", "digest", "signature", "content-type", "content-length"})


def _rfc1123(value: str) -> bool:
    try:
        parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    return True


def parse_signature(header: str) -> dict[str, Any]:
    """The parameters of a draft-cavage ``Signature`` header (401 when absent or unusable).

    As lenient as Copernica's library: every ``key="value"`` pair counts, in any order, with or
    without commas between them; parameter names are case-insensitive, unknown ones ignored."""
    if not header.strip():
        raise WebhookRejected(401, "unsigned delivery")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(header):
        params.setdefault(match.group(1).lower(), match.group(2))
    if not params.get("keyid") or not params.get("signature"):
        raise WebhookRejected(401, "Signature lacks keyId or signature")
    if params.get("algorithm", "rsa-sha256").lower() not in ("rsa-sha256", "hs2019"):
        raise WebhookRejected(401, "unsupported signature algorithm")
    covered = params.get("headers", "date").lower().split()
    missing = [h for h in REQUIRED_SIGNED if h not in covered]
    if missing:
        raise WebhookRejected(401, f"signature does not cover {', '.join(missing)}")
    try:
        raw = base64.b64decode("".join(params["signature"].split()), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "signature is not base64") from None
    return {"keyid": params["keyid"], "headers": covered, "signature_bytes": raw}


def check_date(value: str, now: datetime | float, max_age: float) -> None:
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise WebhookRejected(401, "missing or malformed Date") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    moment = now if isinstance(now, datetime) else datetime.fromtimestamp(now, UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if abs((moment - sent).total_seconds()) > max_age:
        raise WebhookRejected(401, "stale Date")


def check_digest(value: str, body: bytes) -> None:
    """RFC 3230 ``Digest``: the SHA-256 entry (``SHA-256``, ``sha-256`` or ``sha256``) must equal
    the body's hash."""
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    for part in value.split(","):
        algorithm, _, digest = part.strip().partition("=")
        if algorithm.strip().lower() in ("sha-256", "sha256"):
            if hmac.compare_digest(digest.strip().encode(), expected.encode()):
                return
            raise WebhookRejected(401, "Digest does not match the body")
    raise WebhookRejected(401, "missing SHA-256 Digest")


def build_signing_string(
    method: str, path: str, headers: Mapping[str, str], covered: list[str]
) -> str:
    lines = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {path}")
            continue
        if name not in headers:
            raise WebhookRejected(401, f"signed header {name} is missing")
        lines.append(f"{name}: {headers[name].strip()}")
    return "\n".join(lines)


# payload -------------------------------------------------------------------------------------
def parse_payload(content_type: str, body: bytes, *, account: str = "") -> WebhookEvent:
    """The typed event of a form-encoded or JSON body; 400/415 ``WebhookRejected`` otherwise."""
    media = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRejected(400, "body is not UTF-8") from None
    if media == "application/json":
        data = _from_json(text)
    elif media in ("application/x-www-form-urlencoded", ""):
        data = _from_form(text)
    else:
        raise WebhookRejected(415, f"unsupported Content-Type {media}")
    return _event(data, account)


def _from_form(text: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise WebhookRejected(400, "too many form fields") from None
    data: dict[str, Any] = {"fields": {}, "parameters": {}, "interests": []}
    for key, value in pairs:
        nested = _BRACKETED.match(key)
        if nested is None:
            data[key] = value
            continue
        group, name = nested.groups()
        if group == "interests":
            if name == "" or value not in ("0", ""):
                data["interests"].append(name or value)
        elif group in ("fields", "parameters"):
            data[group][name] = value
    return data


def _json_depth(text: str) -> int:
    """How deeply ``text`` nests arrays and objects (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _from_json(text: str) -> dict[str, Any]:
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise WebhookRejected(400, "JSON body nested too deeply")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise WebhookRejected(400, "body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise WebhookRejected(400, "JSON body must be an object")
    data: dict[str, Any] = {k: v for k, v in parsed.items() if k not in ("fields", "parameters")}
    for group in ("fields", "parameters"):
        values = parsed.get(group) or {}
        if not isinstance(values, dict):
            raise WebhookRejected(400, f"{group} must be an object")
        data[group] = {str(k): _scalar(v, group) for k, v in values.items()}
    interests = parsed.get("interests") or []
    if isinstance(interests, dict):
        interests = [
            name for name, on in interests.items() if _scalar(on, "interests") not in ("0", "")
        ]
    if not isinstance(interests, list):
        raise WebhookRejected(400, "interests must be a list or an object")
    data["interests"] = [_scalar(i, "interests") for i in interests]
    return data


def _scalar(value: Any, where: str) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int | float | str):
        return str(value)
    raise WebhookRejected(400, f"{where} values must be scalars")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if isinstance(value, dict | list):
        raise WebhookRejected(400, f"{key} must be a scalar")
    return _scalar(value, key)


def _id(data: Mapping[str, Any], key: str) -> int:
    text = _text(data, key).strip()
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or len(text) > 18:
        raise WebhookRejected(400, f"{key} must be a positive integer")
    return int(text)


def _unix(data: Mapping[str, Any]) -> int | None:
    text = _text(data, "time").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def _event(data: dict[str, Any], account: str) -> WebhookEvent:
    kind = _text(data, "type") or _text(data, "action")  # old Publisher callbacks say "action"
    timestamp, time = _text(data, "timestamp"), _unix(data)
    if kind in PROFILE_TYPES:
        fields, parameters = dict(data.get("fields") or {}), dict(data.get("parameters") or {})
        created, modified = _text(data, "created"), _text(data, "modified")
        if _text(data, "subprofile"):
            return SubprofileEvent(
                type=kind,
                subprofile_id=_id(data, "subprofile"),
                profile_id=_id(data, "profile"),
                database_id=_id(data, "database"),
                collection_id=_id(data, "collection"),
                fields=fields,
                parameters=parameters,
                created=created, modified=modified,
                timestamp=timestamp, time=time, account=account,
            )
        return ProfileEvent(
            type=kind,
            profile_id=_id(data, "profile"),
            database_id=_id(data, "database"),
            fields=fields,
            parameters=parameters,
            interests=tuple(data.get("interests") or ()),
            created=created, modified=modified,
            timestamp=timestamp, time=time, account=account,
        )
    if kind in MAILING_TYPES:
        message_id = _text(data, "id")
        if not message_id:
            raise WebhookRejected(400, "mailing event without id")
        details = {
            k: json.dumps(v) if isinstance(v, dict | list) else _scalar(v, k)
            for k, v in data.items()
            if k not in ("fields", "parameters", "interests")
        }
        return MailingEvent(
            type=kind,  # type: ignore[arg-type]  # checked against MAILING_TYPES above
            message_id=message_id, data=details, timestamp=timestamp, time=time, account=account,
        )
    raise WebhookRejected(400, "unknown or missing webhook type")
