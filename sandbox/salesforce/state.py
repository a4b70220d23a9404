"""Everything one sandbox app holds, in one object reachable through ``STATE``."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .auth import Sessions
from .org import Org
from .settings import SandboxSettings


@dataclass
class Fault:
    """Make matching requests fail (``status``) and/or slow (``latency`` seconds).

    ``path`` is a glob over the request path (``/services/data/*``, ``/cometd/*``);
    ``times`` counts the failures left (None: until cleared). Latency applies to every match.
    """

    path: str
    method: str | None = None
    status: int | None = 500
    latency: float = 0.0
    times: int | None = 1
    error_code: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and (
            fnmatch.fnmatchcase(path, self.path)
        )


@dataclass
class Cursor:
    """A query's result kept for query-more: the matching records and what to render."""

    rows: list[Any]
    fields: list[Any]
    version: str
    page_size: int


@dataclass
class SandboxState:
    settings: SandboxSettings
    org: Org
    sessions: Sessions
    faults: list[Fault] = field(default_factory=list)
    api_used: int = 0
    cursors: dict[str, Cursor] = field(default_factory=dict)
    streaming: Any = None  # the Bayeux server (cometd.Bayeux), set by create_app

    @classmethod
    def create(cls, settings: SandboxSettings) -> SandboxState:
        return cls(settings=settings, org=Org(settings), sessions=Sessions(settings))

    def limit_info(self) -> str:
        """``Sforce-Limit-Info``: api-usage first, as simple-salesforce's anchored regex needs."""
        return f"api-usage={self.api_used}/{self.settings.daily_api_max}"


STATE: web.AppKey[SandboxState] = web.AppKey("salesforce_sandbox", SandboxState)  # default org
ORG: web.RequestKey[SandboxState] = web.RequestKey("salesforce_org", SandboxState)  # the caller's
