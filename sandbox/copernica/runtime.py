"""Settings and the running state of one Copernica sandbox (shared by the REST and control routes)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from sandbox.copernica.hooks import Dispatcher, Signer
from sandbox.copernica.state import (
    Account,
    MsTemplate,
    PublisherDocument,
    PublisherTemplate,
)
from sandbox.copernica.tokens import TokenIssuer
from sandbox.copernica.variants import Variants


@dataclass(frozen=True)
class SandboxSettings:
    """Every knob of the Copernica sandbox, with its default."""

    api_token: str = "sandbox-token"  # the one API token (v3 access_token, v4 JWT exchange)
    jwt_lifetime: float = 24 * 3600.0  # seconds a v4 JWT stays valid
    timezone: str = "Europe/Amsterdam"  # zone of every "YYYY-MM-DD HH:MM:SS" the sandbox shows
    database_name: str = "Sandbox"  # the one database that exists at start (no fields, no profiles)
    account_id: int = 1
    id_offset: int = 0  # added to every entity id (each hosted account has its own range)
    account_name: str = "Sandbox"
    company: str = "Copernica Sandbox"
    statistics_seed: int = 42  # emailing statistics are generated from this and the emailing id
    seed_content: bool = True  # one drag-and-drop template, one Publisher template + document
    signing_key_pem: bytes | None = None  # RSA private key (PEM) for webhooks; None: new per start
    key_selector: str = "sandbox"  # keyId of signatures: "<selector>._domainkey.copernica.com"
    webhook_max_attempts: int = 5  # attempts per delivery before it lands in feedback-loop-errors
    webhook_retry_base: float = 1.0  # seconds before the 2nd attempt; doubles, capped at 60 s
    webhook_timeout: float = 10.0  # seconds a handler may take to answer
    # deliveries in flight per webhook: 1 keeps their order; more go out at once, in any order
    # (how many real Copernica sends at once, and in which order, is not documented)
    webhook_concurrency: int = 1
    webhook_reorder_hold: float = (
        2.0  # a held-back (reordered) delivery goes out after this at most
    )
    webhook_on_noop_update: bool = False  # fire "update" hooks for writes that change nothing
    legacy_statuses: bool = (
        False  # answer like the v2 API was seen to: PUT 303 + Location, DELETE 200
    )
    variants: Variants = Variants()  # the start state of the switchable variants

    @property
    def key_id(self) -> str:
        return f"{self.key_selector}._domainkey.copernica.com"

    @property
    def account_marker(self) -> str:
        return f"account-{self.account_id}"


@dataclass
class RestFaults:
    """Faults the next REST calls suffer (set through ``POST /_sandbox/faults``)."""

    status: int = 0  # 429, 500, 502, 503 or 504; 0 = none
    count: int = 0  # how many calls get ``status``
    retry_after: float = 1.0  # seconds, sent with 429 (and 503)
    latency: float = 0.0  # seconds added to every REST call
    method: str = ""  # only calls of this method get ``status`` ("": every call)


@dataclass
class Sandbox:
    settings: SandboxSettings
    tz: ZoneInfo
    signer: Signer
    issuer: TokenIssuer
    account: Account = field(init=False)
    dispatcher: Dispatcher = field(init=False)
    variants: Variants = field(init=False)
    faults: RestFaults = field(default_factory=RestFaults)
    api_calls: Counter[str] = field(default_factory=Counter)  # per local date
    rest_writes: int = 0
    write_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))

    def __post_init__(self) -> None:
        self.variants = self.settings.variants
        self.account, self.dispatcher = self._fresh()

    def account_marker(self) -> str:
        """``X-Copernica-ID`` as the current variant writes it."""
        return self.variants.copernica_id.format(id=self.settings.account_id)

    def _fresh(self) -> tuple[Account, Dispatcher]:
        settings = self.settings
        account = Account(self.tz, id_offset=settings.id_offset)
        account.emit_noop_updates = settings.webhook_on_noop_update
        account.create_database(settings.database_name)
        if settings.seed_content:
            account.ms_templates[1] = MsTemplate(
                1, "Newsletter", "News from the sandbox", "Sandbox", "news@sandbox.example"
            )
            account.publisher_templates[1] = PublisherTemplate(1, "Classic")
            account.documents[1] = PublisherDocument(
                1, 1, "Monthly update", "Monthly update", '"Sandbox" <news@sandbox.example>'
            )
        dispatcher = Dispatcher(
            account,
            self.signer,
            variants=lambda: self.variants,
            account_marker=self.account_marker,
            max_attempts=settings.webhook_max_attempts,
            retry_base=settings.webhook_retry_base,
            timeout=settings.webhook_timeout,
            reorder_hold=settings.webhook_reorder_hold,
            concurrency=settings.webhook_concurrency,
        )
        return account, dispatcher

    async def reset(self) -> None:
        """Back to the state at start; the API token and the signing key stay the same."""
        await self.dispatcher.stop()
        self.account, self.dispatcher = self._fresh()
        await self.dispatcher.start()
        self.faults = RestFaults()
        self.variants = self.settings.variants
        self.api_calls.clear()
        self.rest_writes = 0
        self.write_log.clear()

    def today(self) -> str:
        return datetime.now(UTC).astimezone(self.tz).strftime("%Y-%m-%d")

    def count_call(self) -> None:
        self.api_calls[self.today()] += 1

    def count_write(self, method: str, path: str, status: int) -> None:
        self.rest_writes += 1
        self.write_log.append(
            {"method": method, "path": path, "status": status, "at": datetime.now(UTC).isoformat()}
        )


SANDBOX = web.AppKey("copernica_sandbox", Sandbox)
