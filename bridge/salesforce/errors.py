"""Salesforce errors mapped onto the bridge's taxonomy (``bridge.errors``).

One function decides the category from the HTTP status and Salesforce's ``errorCode`` /
``statusCode``, so the REST client, Collections results and the stream all agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.errors import ApiError
from bridge.vocabulary import Category

_BY_CODE: dict[str, Category] = {
    "INVALID_SESSION_ID": "auth",
    "INVALID_LOGIN": "auth",
    "INVALID_OPERATION_WITH_EXPIRED_PASSWORD": "auth",
    "invalid_grant": "auth",
    "invalid_client": "auth",
    "invalid_client_id": "auth",
    "unsupported_grant_type": "auth",
    "REQUEST_LIMIT_EXCEEDED": "rate_limit",
    "INSUFFICIENT_ACCESS_OR_READONLY": "permission",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": "permission",
    "INSUFFICIENT_ACCESS": "permission",
    "API_DISABLED_FOR_ORG": "permission",
    "API_CURRENTLY_DISABLED": "permission",
    "NOT_FOUND": "not_found",
    "ENTITY_IS_DELETED": "not_found",
    "INVALID_TYPE": "not_found",
    "DUPLICATE_VALUE": "duplicate",
    "DUPLICATES_DETECTED": "duplicate",
    "DUPLICATE_EXTERNAL_ID": "duplicate",
    "UNABLE_TO_LOCK_ROW": "transient",
    "SERVER_UNAVAILABLE": "transient",
    "UNKNOWN_EXCEPTION": "transient",
    "QUERY_TIMEOUT": "transient",
}


def categorise(status: int | None, code: str | None) -> Category:
    """What the caller must do about a failure with this status and error code."""
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status is None or status >= 500 or status in (408, 429):
        return "transient" if status != 429 else "rate_limit"
    if status == 401:
        return "auth"
    if status == 403:
        return "permission"
    if status in (404, 410):
        return "not_found"
    if status == 300:
        return "duplicate"
    return "validation"


class SalesforceError(ApiError):
    """A failed Salesforce call; ``fields`` names the fields Salesforce blamed, if any."""

    @classmethod
    def from_reply(cls, status: int, body: Any) -> SalesforceError:
        """Build from a REST error reply (an array of ``{message, errorCode, fields}``)."""
        first: dict[str, Any] = {}
        if isinstance(body, list) and body and isinstance(body[0], dict):
            first = body[0]
        elif isinstance(body, dict):
            first = body
        code = first.get("errorCode") or first.get("error")
        message = first.get("message") or first.get("error_description") or f"HTTP {status}"
        if status == 300:
            code = code or "MULTIPLE_CHOICES"
            message = f"several records match: {body}"
        return cls(
            str(message).strip(),
            category=categorise(status, code),
            status=status,
            code=code,
            fields=list(first.get("fields") or []),
        )


@dataclass(frozen=True)
class RecordError:
    """One error of one record in a Collections call."""

    code: str
    message: str
    fields: list[str] = field(default_factory=list)

    @property
    def category(self) -> Category:
        if self.code == "ALL_OR_NONE_OPERATION_ROLLED_BACK":
            return "transient"  # the record itself was fine: retrying it alone will work
        return categorise(400, self.code)


@dataclass(frozen=True)
class RecordResult:
    """The outcome for one record of a Collections call, in input order."""

    id: str | None
    success: bool
    errors: list[RecordError] = field(default_factory=list)
    created: bool | None = None

    @property
    def category(self) -> Category | None:
        """The category of the first error (None on success)."""
        return self.errors[0].category if self.errors else None

    def error(self) -> SalesforceError:
        """This record's failure as an error, categorised by its first error."""
        first = self.errors[0] if self.errors else RecordError("UNKNOWN", "no error reported")
        return SalesforceError(
            "; ".join(f"{e.code}: {e.message}" for e in self.errors) or first.message,
            category=first.category, code=first.code, fields=first.fields,
        )

    @classmethod
    def parse(cls, item: dict[str, Any]) -> RecordResult:
        return cls(
            id=item.get("id"),
            success=bool(item.get("success")),
            errors=[
                RecordError(
                    code=str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
                    message=str(e.get("message", "")),
                    fields=list(e.get("fields") or []),
                )
                for e in item.get("errors") or []
            ],
            created=item.get("created"),
        )
