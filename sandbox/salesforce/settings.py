"""Every knob of the Salesforce sandbox, with its documented default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SandboxSettings:
    """The emulated org: its one user, its OAuth client, and its limits and timeouts."""

    username: str = "admin@sandbox.example"
    password: str = "sandbox-password"
    security_token: str = "SANDBOXTOKEN"  # appended to the password for SOAP / password grant
    client_id: str = "sandbox-client"  # OAuth connected app consumer key
    client_secret: str = "sandbox-secret"
    refresh_token: str = "sandbox-refresh-token"  # accepted by the refresh_token grant
    jwt_certificate_pem: str | None = None  # PEM X.509 cert (or public key) for JWT bearer
    password_expired: bool = False  # SOAP login answers passwordExpired=true; REST refuses
    organization_id: str = "00D5g000004SBOXEAQ"
    organization_name: str = "Sandbox Org"
    user_id: str = "0055g00000SBOXusAAC"
    first_record_number: int = 1  # record ids count from here; each hosted org has its own range
    session_seconds: float = 7200.0  # inactivity timeout; each call resets the timer
    daily_api_max: int = 115_000  # DailyApiRequests Max; REQUEST_LIMIT_EXCEEDED when spent
    query_page_size: int = 2000  # rows per query page (Sforce-Query-Options may lower it to 200)
    api_versions: tuple[str, ...] = ("58.0", "59.0", "60.0", "61.0", "62.0", "63.0", "64.0")
    connect_timeout: float = 110.0  # seconds a /meta/connect is held (advice.timeout)
    client_expiry: float = 40.0  # seconds without a connect before a CometD client is forgotten
    event_retention: float = 72 * 3600.0  # seconds CDC events stay replayable
    cdc_entities: tuple[str, ...] = ("Contact",)  # objects selected for Change Data Capture
    bridge_objects: bool = True  # the bridge's custom objects exist (False: package missing)
    updated_window_days: int = 30  # getUpdated look-back
    deleted_window_days: int = 15  # getDeleted look-back
    # Variants (switched at run time through ``POST /_sandbox/variants``):
    soap_login: bool = False  # SOAP login() answers; off by default in new orgs, as on Salesforce
    collections_call_options: bool = False  # sObject Collections writes carry the
    # Sforce-Call-Options client in changeOrigin; documented only for sObject Rows, Query, Bulk
