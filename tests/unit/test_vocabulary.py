"""The shared words: each closed set is one Literal with its tuple, and every place that lists
them (advice, Salesforce picklists, job failures) covers all of them."""

from __future__ import annotations

from typing import get_args

from bridge import vocabulary
from bridge.clock import PlatformClock
from bridge.config import Settings
from bridge.copernica.errors import CopernicaError
from bridge.errors import ConfigError, MappingError, NotConfigured
from bridge.salesforce.client import SalesforceClient
from bridge.salesforce.errors import RecordError, RecordResult
from bridge.salesforce.objects import SYNC_ERROR_OBJECT
from bridge.security.vault import VaultError
from bridge.sync.jobs import Failure, failure_from


def test_each_tuple_is_its_literal() -> None:
    pairs = [
        (vocabulary.Category, vocabulary.CATEGORIES),
        (vocabulary.Direction, vocabulary.DIRECTIONS),
        (vocabulary.OneWay, vocabulary.ONE_WAY),
        (vocabulary.ConflictRule, vocabulary.CONFLICT_RULES),
        (vocabulary.WebhookTrigger, vocabulary.WEBHOOK_TRIGGERS),
        (vocabulary.JobKind, vocabulary.JOB_KINDS),
        (vocabulary.JobState, vocabulary.JOB_STATES),
        (vocabulary.Operation, vocabulary.OPERATIONS),
        (vocabulary.Platform, vocabulary.PLATFORMS),
        (vocabulary.LoginMethod, vocabulary.LOGIN_METHODS),
    ]
    for literal, words in pairs:
        assert words == get_args(literal) and len(set(words)) == len(words)
    assert vocabulary.DIRECTIONS == ("both", "sf_to_cp", "cp_to_sf")
    assert set(vocabulary.ONE_WAY) < set(vocabulary.DIRECTIONS)
    assert (vocabulary.SYNC, vocabulary.RECONCILE, vocabulary.PUSH_ERRORS, vocabulary.STATISTICS) \
        == vocabulary.JOB_KINDS


def test_every_category_and_direction_has_its_words() -> None:
    assert set(vocabulary.ADVICE) == set(vocabulary.CATEGORIES)
    assert set(vocabulary.DIRECTION_LABELS) == set(vocabulary.DIRECTIONS)
    assert "not_configured" in vocabulary.CATEGORIES
    assert vocabulary.ADVICE["not_configured"] == (
        "credentials not saved yet: save them on the config page"
    )


def test_the_error_report_picklists_are_the_vocabulary() -> None:
    fields = {f.name: f for f in SYNC_ERROR_OBJECT.fields}
    assert fields["Category__c"].picklist == vocabulary.CATEGORIES
    assert fields["Operation__c"].picklist == vocabulary.OPERATIONS
    assert fields["Direction__c"].picklist == vocabulary.ONE_WAY


def test_one_client_id_tags_the_writes_and_recognises_the_echoes() -> None:
    assert Settings().client_id == Settings.from_env({}).client_id == vocabulary.CLIENT_ID
    client = SalesforceClient(authenticator=None)  # type: ignore[arg-type]  # never logs in here
    assert client.client_id == vocabulary.CLIENT_ID == "CopernicaBridge"
    assert client.api_version == vocabulary.SALESFORCE_API_VERSION


def test_the_webhook_url_of_a_tenant() -> None:
    assert vocabulary.webhook_url("https://bridge.example", "tok") == (
        "https://bridge.example/hooks/copernica/tok"
    )
    assert vocabulary.webhook_url("https://bridge.example/", "tok").count("//") == 1


def test_errors_become_job_failures_in_one_place() -> None:
    missing = failure_from(NotConfigured("Copernica credentials have not been saved yet"))
    assert missing == Failure(
        "Copernica credentials have not been saved yet: save them on the config page",
        "not_configured", permanent=True,
    )
    no_database = failure_from(
        NotConfigured("no Copernica database chosen yet", "choose the database on the config page")
    )
    assert no_database.category == "not_configured" and no_database.permanent
    assert "choose the database on the config page" in no_database.message
    throttled = failure_from(CopernicaError("slow down", category="rate_limit", retry_after=30))
    assert (throttled.category, throttled.permanent, throttled.retry_after) == (
        "rate_limit", False, 30,
    )
    refused = failure_from(CopernicaError("Invalid access token", category="auth"))
    assert (refused.category, refused.permanent) == ("auth", True)
    assert failure_from(MappingError("no LastName")) == Failure("no LastName", "mapping", True)
    for unreadable in (VaultError("the keys changed"), ConfigError("BRIDGE_SECRET_KEYS")):
        assert failure_from(unreadable).category == "auth"
    crash = failure_from(RuntimeError("boom"))
    assert (crash.message, crash.category, crash.permanent) == (
        "RuntimeError: boom", "transient", False,
    )


def test_a_refused_record_fails_like_its_first_error() -> None:
    result = RecordResult(
        id=None, success=False,
        errors=[RecordError("REQUIRED_FIELD_MISSING", "LastName missing", ["LastName"])],
    )
    failure = failure_from(result.error())
    assert failure == Failure(  # the code and the field: never the platform's words, nor values
        "REQUIRED_FIELD_MISSING on LastName", "validation", permanent=True, platform="salesforce"
    )
    locked = RecordResult(id=None, success=False, errors=[RecordError("UNABLE_TO_LOCK_ROW", "x")])
    assert not failure_from(locked.error()).permanent


def test_a_platform_clock_keeps_the_median_of_recent_replies() -> None:
    clock = PlatformClock()
    assert clock.offset is None
    clock.observe(None)
    clock.observe("not a date")
    assert clock.offset is None
    clock.observe("Mon, 01 Jan 2001 00:00:00 GMT")
    offset = clock.offset
    assert offset is not None and offset < -10 * 365 * 24 * 3600
