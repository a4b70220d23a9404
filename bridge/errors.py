"""The bridge's exceptions. Their categories (``bridge.vocabulary.Category``) say what the
caller must do.

Both platform clients (``bridge.salesforce``, ``bridge.copernica``) raise ``ApiError``
subclasses carrying a category; the sync engine decides on the category alone.
"""

from __future__ import annotations

from bridge.vocabulary import RETRYABLE, Category


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or malformed; the message names it."""


class NotConfigured(BridgeError):
    """A tenant has not finished its set-up: credentials not saved, no database chosen.

    ``fix`` says, in words for the user, what to do on the config page.
    """

    def __init__(self, message: str, fix: str = "save them on the config page") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class MappingError(BridgeError):
    """The bridge cannot map a record's values (e.g. a contact without a last name)."""


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
