"""Settings: one typed object read from the environment, once, at start-up.

A wrong value stops start-up with a ``ConfigError`` whose message names the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from bridge.errors import ConfigError
from bridge.vocabulary import CLIENT_ID

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    """Everything the bridge reads from its environment (see README, "Environment variables")."""

    database_url: str | None = None  # None: start an embedded PostgreSQL in data_dir
    data_dir: Path = Path(".bridge-data")
    secret_keys: tuple[str, ...] = ()  # Fernet keys, first one is current
    public_url: str = "http://localhost:8080"
    port: int = 8080
    smtp_url: str | None = None  # smtp://[user:password@]host[:port], smtps:// for implicit TLS
    mail_from: str = "bridge@localhost"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    client_id: str = CLIENT_ID  # tags the bridge's Salesforce writes (Sforce-Call-Options)
    copernica_sandbox_url: str | None = None  # demo/tests: trust the webhook key this sandbox publishes
    frame_ancestors: tuple[str, ...] = ()  # origins allowed to frame the tab besides Salesforce's
    # Reverse proxies whose X-Forwarded-For names the real client (login throttling needs it).
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    metrics_token: str | None = None  # /metrics wants "Authorization: Bearer <token>" when set
    # host[:port] patterns the platform clients may call besides Salesforce's and Copernica's own
    # domains (bridge.hosts); the demo and the tests allow the emulators this way.
    allowed_api_hosts: tuple[str, ...] = ()
    copernica_auth_url: str | None = None  # None: https://authenticate.copernica.com
    db_pool_size: int = 10  # PostgreSQL connections of one process at most, whatever it does
    tenant_workers: int = 2  # batches of real-time changes one tenant may run at once, in all
    run_workers: int = 1  # batches of a run's work (full sync, reconcile) one tenant may run at once
    batch_window: float = 0.2  # seconds Copernica → Salesforce changes wait to go out together

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; raise ``ConfigError`` naming the first bad one."""
        env = os.environ if env is None else env
        return cls(
            database_url=_database_url(env.get("DATABASE_URL")),
            data_dir=Path(env.get("BRIDGE_DATA_DIR") or ".bridge-data"),
            secret_keys=_secret_keys(env.get("BRIDGE_SECRET_KEYS")),
            public_url=_url("PUBLIC_URL", env.get("PUBLIC_URL") or "http://localhost:8080"),
            port=_port(env.get("PORT") or "8080"),
            smtp_url=_smtp_url(env.get("SMTP_URL")),
            mail_from=_mail_from(env.get("MAIL_FROM") or "bridge@localhost"),
            log_level=_choice("LOG_LEVEL", (env.get("LOG_LEVEL") or "INFO").upper(), LOG_LEVELS),
            log_format=_choice("LOG_FORMAT", (env.get("LOG_FORMAT") or "text").lower(), ("text", "json")),  # type: ignore[arg-type]
            client_id=_client_id(env.get("BRIDGE_CLIENT_ID") or CLIENT_ID),
            frame_ancestors=_origins(env.get("FRAME_ANCESTORS")),
            trusted_proxies=_networks(env.get("TRUSTED_PROXIES")),
            metrics_token=_metrics_token(env.get("METRICS_TOKEN")),
            allowed_api_hosts=_host_patterns(env.get("ALLOWED_API_HOSTS")),
            copernica_auth_url=(
                _url("COPERNICA_AUTH_URL", env["COPERNICA_AUTH_URL"])
                if env.get("COPERNICA_AUTH_URL") else None
            ),
            db_pool_size=_count("BRIDGE_DB_POOL_SIZE", env.get("BRIDGE_DB_POOL_SIZE") or "10", 4),
            tenant_workers=_count(
                "BRIDGE_TENANT_WORKERS", env.get("BRIDGE_TENANT_WORKERS") or "2", 1
            ),
            run_workers=_count("BRIDGE_RUN_WORKERS", env.get("BRIDGE_RUN_WORKERS") or "1", 1),
            batch_window=_count(
                "BRIDGE_BATCH_WINDOW_MS", env.get("BRIDGE_BATCH_WINDOW_MS") or "200", 0
            ) / 1000,
            copernica_sandbox_url=(
                _url("COPERNICA_SANDBOX_URL", env["COPERNICA_SANDBOX_URL"])
                if env.get("COPERNICA_SANDBOX_URL") else None
            ),
        )


def _database_url(value: str | None) -> str | None:
    if not value:
        return None
    if urlsplit(value).scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    return value


def _secret_keys(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                f"BRIDGE_SECRET_KEYS: key {number} is not a Fernet key "
                "(32 url-safe base64 bytes; make one with `bridge generate-key`)"
            ) from None
    return keys


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _origins(value: str | None) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in (value or "").split(",") if o.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9*.-]+(:\d+)?|https://\*\.[A-Za-z0-9.-]+", origin):
            raise ConfigError(
                f"FRAME_ANCESTORS must list origins like https://acme.my.salesforce.com, got {origin!r}"
            )
    return origins


def _networks(value: str | None) -> tuple[IPv4Network | IPv6Network, ...]:
    try:
        return tuple(ip_network(n.strip()) for n in (value or "").split(",") if n.strip())
    except ValueError as error:
        raise ConfigError(
            f"TRUSTED_PROXIES must list addresses or networks like 10.0.0.0/8: {error}"
        ) from None


_HOST_PATTERN = re.compile(
    r"(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
    r"(:(\d{1,5}|\*))?|\[[0-9a-f:.]+\](:(\d{1,5}|\*))?"
)


def _host_patterns(value: str | None) -> tuple[str, ...]:
    patterns = tuple(p.strip().lower() for p in (value or "").split(",") if p.strip())
    for pattern in patterns:
        if not _HOST_PATTERN.fullmatch(pattern):
            raise ConfigError(
                "ALLOWED_API_HOSTS must list host[:port] patterns like localhost:8801, "
                f"*.proxy.example or 127.0.0.1:*, got {pattern!r}"
            )
    return patterns


def _metrics_token(value: str | None) -> str | None:
    if value and len(value) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters long")
    return value or None


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"PORT must be a number between 1 and 65535, got {value!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(f"PORT must be a number between 1 and 65535, got {value!r}")
    return port


def _count(name: str, value: str, least: int) -> int:
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if count < least:
        raise ConfigError(f"{name} must be at least {least}, got {count}")
    return count


def _smtp_url(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("SMTP_URL must look like smtp://[user:password@]host[:port] (or smtps://)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError("SMTP_URL has a bad port") from None
    return value


def _mail_from(value: str) -> str:
    if "@" not in value:
        raise ConfigError(f"MAIL_FROM must be an e-mail address, got {value!r}")
    return value


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _client_id(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise ConfigError("BRIDGE_CLIENT_ID may hold letters, digits and underscores only")
    return value
