"""Copernica's failures mapped onto the bridge's one error taxonomy (``bridge.errors``).

Copernica answers every refusal with 400 and ``{"error": {"message": ...}}``; the message is the
only thing that tells "no such profile" from "bad data". 429, 5xx (its overload pages are HTML)
and connection errors are retryable.
"""

from __future__ import annotations

import json
import re

from bridge.copernica.models import Database
from bridge.errors import ApiError
from bridge.vocabulary import Category

_NOT_FOUND = re.compile(r"^No .* with (supplied|given) ID|already been removed", re.IGNORECASE)
_TITLE = re.compile(r"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class CopernicaError(ApiError):
    """A Copernica call failed; ``message`` is Copernica's own text when it sent one."""


class NotSent(CopernicaError):
    """No connection could be made: Copernica never saw the call (safe to send again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, category="transient")


class CreatedWithoutId(CopernicaError):
    """Copernica accepted a create (or an emailing) but its reply names no id (neither
    ``X-Created`` nor ``X-location``). The thing exists: the caller must not create it again
    blindly. Transient for the job queue, whose retry finds a profile again by its link field."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, category="transient", status=status)


class NameTaken(CopernicaError):
    """Copernica refused a database name that another database of the account has; an
    archived database keeps its name while it no longer shows in Copernica's lists."""

    def __init__(self, name: str, holder: Database, *, status: int | None = None) -> None:
        if holder.archived:
            message = (f"the name {name} belongs to an archived Copernica database (archived "
                       "databases keep their names): choose another name, or rename the archived "
                       "database in Copernica first")
        else:
            message = (f"a Copernica database named {holder.name} exists already: choose "
                       "another name")
        super().__init__(message, category="validation", status=status)
        self.holder = holder


def message_of(body: bytes, content_type: str) -> str | None:
    """Copernica's error message from a JSON body, or the title of an HTML error page."""
    text = body.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        return None
    title = _TITLE.search(text)
    return title.group(1).strip() if title else None


def category_of(status: int, message: str | None) -> Category:
    if status == 400:
        if message == "Invalid access token":
            return "auth"
        if message and _NOT_FOUND.search(message):
            return "not_found"
        return "validation"
    if status == 401:
        return "auth"
    if status == 403:
        return "permission"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limit"
    if status >= 500 or status == 408:
        return "transient"
    return "validation"


def retry_after_of(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by Copernica's balancers)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def error_from_reply(
    status: int, body: bytes, content_type: str, retry_after: str | None, what: str
) -> CopernicaError:
    message = message_of(body, content_type)
    category = category_of(status, message)
    text = message or f"HTTP {status}"
    return CopernicaError(
        f"{what}: {text}",
        category=category,
        status=status,
        retry_after=retry_after_of(retry_after),
    )
