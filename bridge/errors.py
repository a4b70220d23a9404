"""The bridge's exceptions. Their categories (``bridge.vocabulary.Category``) say what the
caller must do.

Both platform clients (``bridge.salesforce``, ``bridge.copernica``) raise ``ApiError``
subclasses carrying a category; the sync engine decides on the category alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bridge.vocabulary import RETRYABLE, Category, Platform


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or malformed; the message names it."""


class NotConfigured(BridgeError):
    """A tenant has not finished its set-up: credentials not saved, no database chosen.

    ``fix`` says, in words for the user, what to do on the config page; ``platform`` is the
    side whose set-up is missing (saving it brings the jobs held for it back).
    """

    def __init__(
        self, message: str, fix: str = "save them on the config page",
        platform: Platform | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.platform = platform


class MappingError(BridgeError):
    """The bridge cannot map a record's values (e.g. a contact without a last name)."""


class ApiError(BridgeError):
    """A call to Salesforce or Copernica failed.

    ``category`` drives the caller's decision, ``retry_after`` (seconds) is a hint from the
    platform (e.g. ``Retry-After``), ``status`` is the HTTP status when there was one, ``code``
    and ``fields`` the platform's error code and the fields it blamed.
    """

    def __init__(
        self,
        message: str,
        *,
        category: Category,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        fields: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category: Category = category
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.fields = list(fields)  # the fields the platform blamed, when it said

    @property
    def retryable(self) -> bool:
        return self.category in RETRYABLE

    def __str__(self) -> str:
        where = f" [{self.code}]" if self.code else ""
        return f"{self.category}{where}: {self.message}"

    def summary(self) -> str:
        """What went wrong, without the customer's values: the platform's error code and the
        fields it blamed (``INVALID_EMAIL_ADDRESS on Email``), else its message with anything
        that may be a value masked. A platform's own words often quote the refused value."""
        if self.code:
            return f"{self.code} on {', '.join(self.fields)}" if self.fields else self.code
        return without_values(self.message)


# Quoted text, e-mail addresses, URL-encoded text and long numbers (phones, postcodes).
_VALUES = re.compile(
    r"""'[^']*'|"[^"]*"|\S+@\S+|\S*%[0-9A-Fa-f]{2}\S*|\+?\d[\d ()./-]{4,}\d"""
)


def without_values(text: str) -> str:
    """``text`` with what may be a customer's value replaced by ``…``."""
    return _VALUES.sub("…", text)
