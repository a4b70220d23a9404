"""Salesforce failures → the bridge's taxonomy, and CDC messages → typed stream items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.salesforce.errors import RecordResult, SalesforceError, categorise
from bridge.salesforce.stream import ChangeEvent, GapEvent, OverflowEvent, parse_message
from sandbox.salesforce.schema import id18, normalise_id

SAMPLES = Path("/work/shared/samples/salesforce")


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (401, "INVALID_SESSION_ID", "auth"),
        (403, "REQUEST_LIMIT_EXCEEDED", "rate_limit"),
        (403, "INSUFFICIENT_ACCESS_OR_READONLY", "permission"),
        (403, None, "permission"),
        (404, "ENTITY_IS_DELETED", "not_found"),
        (404, None, "not_found"),
        (400, "DUPLICATE_VALUE", "duplicate"),
        (300, None, "duplicate"),
        (400, "UNABLE_TO_LOCK_ROW", "transient"),
        (400, "REQUIRED_FIELD_MISSING", "validation"),
        (503, None, "transient"),
        (429, None, "rate_limit"),
        (None, None, "transient"),
    ],
)
def test_categories(status: int | None, code: str | None, category: str) -> None:
    assert categorise(status, code) == category


def test_error_from_rest_reply() -> None:
    error = SalesforceError.from_reply(
        400,
        [
            {
                "message": "Required fields are missing: [LastName]",
                "errorCode": "REQUIRED_FIELD_MISSING",
                "fields": ["LastName"],
            }
        ],
    )
    assert (error.category, error.code, error.fields, error.retryable) == (
        "validation",
        "REQUIRED_FIELD_MISSING",
        ["LastName"],
        False,
    )


def test_collection_results_from_samples() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("samples not available")
    items = json.loads((SAMPLES / "collections-create-response-partial.json").read_text())
    ok, failed = (RecordResult.parse(item) for item in items)
    assert ok.success and ok.category is None
    assert failed.errors[0].fields == ["LastName"] and failed.category == "validation"


def test_parse_cdc_samples() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("samples not available")

    def load(name: str) -> dict:
        return json.loads((SAMPLES / name).read_text())

    update = parse_message(load("cdc-contact-update.json"))
    assert isinstance(update, ChangeEvent)
    assert update.changed_fields == ["LastName", "Email", "Phone", "LastModifiedDate"]
    assert update.values["LastName"] == "Doe-Smith" and update.values["Phone"] is None
    assert update.origin_client == "MarketingBridge"
    create = parse_message(load("cdc-contact-create.json"))
    assert isinstance(create, ChangeEvent)
    assert create.values["MailingStreet"] == "Keizersgracht 123"
    assert create.values["Salutation"] == "Ms."
    assert create.origin_client == "SfdcInternalAPI/"
    assert parse_message(load("cdc-contact-undelete.json")).origin_client is None  # type: ignore[union-attr]
    assert isinstance(parse_message(load("cdc-gap-update.json")), GapEvent)
    assert isinstance(parse_message(load("cdc-overflow.json")), OverflowEvent)


def test_record_ids() -> None:
    assert id18("0035g00000Q1aBc") == "0035g00000Q1aBcAAJ"
    assert normalise_id("0035g00000Q1aBc") == "0035g00000Q1aBcAAJ"
    assert normalise_id("0035g00000Q1aBcAAA") is None
    assert normalise_id("003XYZ") is None
