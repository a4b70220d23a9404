"""The one error taxonomy of the bridge: each category says what the caller must do.

Both platform clients (``bridge.salesforce``, ``bridge.copernica``) raise ``ApiError``
subclasses carrying one of these categories; the sync engine decides on the category alone.
"""

from __future__ import annotations

from typing import Literal

Category = Literal[
    "auth",  # credentials wrong or expired beyond a re-login: fix the settings
    "permission",  # the integration user may not do this: fix permissions
    "validation",  # the platform refused the values: fix the data
    "duplicate",  # the platform sees a duplicate: merge or fix the data
    "not_found",  # the record or object does not exist (any more)
    "rate_limit",  # API budget spent or throttled: wait and retry
    "transient",  # 5xx, timeouts, dropped connections: retry with back-off
    "mapping",  # the bridge cannot map the values (e.g. no LastName): fix mapping or data
]

CATEGORIES: tuple[Category, ...] = (
    "auth",
    "permission",
    "validation",
    "duplicate",
    "not_found",
    "rate_limit",
    "transient",
    "mapping",
)

RETRYABLE: frozenset[Category] = frozenset({"rate_limit", "transient"})


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or malformed; the message names it."""


class ApiError(BridgeError):
    """A call to Salesforce or Copernica failed.

    ``category`` drives the caller's decision, ``retry_after`` (seconds) is a hint from the
    platform (e.g. ``Retry-After``), ``status`` is the HTTP status when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        category: Category,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category: Category = category
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.category in RETRYABLE

    def __str__(self) -> str:
        where = f" [{self.code}]" if self.code else ""
        return f"{self.category}{where}: {self.message}"
