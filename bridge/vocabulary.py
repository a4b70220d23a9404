"""The words the bridge's modules share, each defined once.

A closed set of words is one ``Literal`` type, and the tuple of its words is derived from it, so
the type checker and the code that lists the words (form choices, picklists, checks) cannot
disagree. The same words appear in the SQL schema (``CHECK`` constraints in ``sql/migrations``)
and in the Salesforce package (picklists in ``salesforce/``); tests compare those with these.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# --- the two platforms --------------------------------------------------------------------

Platform = Literal["salesforce", "copernica"]
PLATFORMS: tuple[Platform, ...] = get_args(Platform)

SALESFORCE_API_VERSION: Final = "59.0"  # REST, SOAP login and CometD
CDC_CHANNEL: Final = "/data/ContactChangeEvent"  # the Change Data Capture channel of Contact
LoginMethod = Literal["soap", "client_credentials", "jwt"]  # how the bridge logs in to an org
LOGIN_METHODS: tuple[LoginMethod, ...] = get_args(LoginMethod)
CLIENT_ID: Final = "CopernicaBridge"
"""Tags the bridge's Salesforce writes (``Sforce-Call-Options: client=...``); the CDC events of
those writes carry it in ``changeOrigin`` and are dropped as echoes. ``BRIDGE_CLIENT_ID``
overrides it; the writing client and the reading stream must use the same value."""

COPERNICA_TIMEZONE: Final = "Europe/Amsterdam"  # Copernica's own; a tenant setting may differ
LINK_FIELD: Final = "Id"  # the Copernica field holding the Salesforce Contact Id (product manual)
LINK_FIELD_FALLBACK: Final = "SalesforceId"
"""Copernica's UI refuses a field named ``Id`` (``id`` is the profile ID in searches): where the
database has none, the bridge keeps the Salesforce Id in a field of this name, created by it."""

# --- tenant settings ----------------------------------------------------------------------

OneWay = Literal["sf_to_cp", "cp_to_sf"]
Direction = Literal["both", OneWay]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
ONE_WAY: tuple[OneWay, ...] = get_args(OneWay)
DIRECTION_LABELS: dict[Direction, str] = {
    "both": "Both ways (recommended)",
    "sf_to_cp": "Salesforce to Copernica",
    "cp_to_sf": "Copernica to Salesforce",
}

DIRECTION_WORDS: dict[str, str] = {  # which way one change went, on the pages
    "sf_to_cp": "Salesforce → Copernica",
    "cp_to_sf": "Copernica → Salesforce",
    "both": "both sides",
}

ConflictRule = Literal["newest", "salesforce_wins", "copernica_wins"]
CONFLICT_RULES: tuple[ConflictRule, ...] = get_args(ConflictRule)

# --- Copernica webhooks -------------------------------------------------------------------

WebhookTrigger = Literal["create", "update", "delete"]
WEBHOOK_TRIGGERS: tuple[WebhookTrigger, ...] = get_args(WebhookTrigger)
WEBHOOK_PATH: Final = "/hooks/copernica/"  # followed by the tenant's hook token


def webhook_url(public_url: str, hook_token: str) -> str:
    """Where Copernica posts a tenant's webhooks."""
    return f"{public_url.rstrip('/')}{WEBHOOK_PATH}{hook_token}"


# --- jobs ---------------------------------------------------------------------------------

JobKind = Literal["sync", "reconcile", "push_errors", "statistics"]
SYNC: Final = "sync"  # bring records to agreement on both sides
RECONCILE: Final = "reconcile"  # carry out a run: a full sync or a reconcile
PUSH_ERRORS: Final = "push_errors"  # copy new error reports to Salesforce
STATISTICS: Final = "statistics"  # emailing statistics to Salesforce, daily
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)

JobState = Literal["waiting", "running", "held"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)

# How urgent a job is (jobs.priority): claims take the lower number first.
REAL_TIME: Final = 0  # a change a platform announced (a CDC event, a webhook)
BULK: Final = 1  # the work of a run (full sync, reconcile)

# --- error reports ------------------------------------------------------------------------

Category = Literal[
    "auth",  # credentials wrong or expired beyond a re-login: fix the settings
    "permission",  # the integration user may not do this: fix permissions
    "validation",  # the platform refused the values: fix the data
    "duplicate",  # the platform sees a duplicate: merge or fix the data
    "not_found",  # the record or object does not exist (any more)
    "rate_limit",  # API budget spent or throttled: wait and retry
    "transient",  # 5xx, timeouts, dropped connections: retry with back-off
    "mapping",  # the bridge cannot map the values (e.g. no LastName): fix mapping or data
    "not_configured",  # credentials not saved (or no database chosen) yet: use the config page
]
CATEGORIES: tuple[Category, ...] = get_args(Category)
RETRYABLE: frozenset[Category] = frozenset({"rate_limit", "transient"})
ADVICE: dict[Category, str] = {
    "auth": "check the credentials on the config page",
    "permission": "give the integration user the permissions it needs",
    "validation": "correct the record's values",
    "duplicate": "merge the duplicates or correct the values",
    "not_found": "the record or object no longer exists: re-create it, or ignore this report",
    "rate_limit": "the API budget was spent: requeue it once the budget has refilled",
    "transient": "the platform did not answer properly: requeue it once the platform is back",
    "mapping": "fill in what the mapping needs (e.g. a last name) or change the mapping",
    "not_configured": "credentials not saved yet: save them on the config page",
}
"""What the person who reads an error report should do, by category (shown with the report)."""

Operation = Literal["create", "update", "delete", "undelete", "merge", "reconcile", "emailing"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
