"""simple-salesforce 1.12.10, unchanged, against the sandbox (through an https→http adapter)."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from tests.fixtures.salesforce import ThreadedSandbox, https_to_sandbox


def login(sandbox: ThreadedSandbox, **overrides: str) -> Salesforce:
    credentials = {
        "username": "admin@sandbox.example",
        "password": "sandbox-password",
        "security_token": "SANDBOXTOKEN",
    } | overrides
    return Salesforce(**credentials, session=https_to_sandbox(sandbox.url))


def test_soap_login_with_security_token(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    assert sf.session_id.startswith("00D")
    assert sf.sf_instance == sf_sandbox_thread.url.removeprefix("http://")


def test_bad_password_is_an_authentication_failure(sf_sandbox_thread: ThreadedSandbox) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        login(sf_sandbox_thread, security_token="WRONG")
    assert failure.value.code == "INVALID_LOGIN"


def test_create_get_update_delete(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    created = sf.Contact.create(
        {"LastName": "Doe", "FirstName": "Jane", "Email": "jane@example.org"}
    )
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    fetched = sf.Contact.get(record_id)
    assert fetched["Name"] == "Jane Doe"
    assert fetched["attributes"]["type"] == "Contact"
    assert sf.Contact.update(record_id, {"Title": "Lead"}) == 204
    assert sf.Contact.get(record_id)["Title"] == "Lead"
    assert sf.Contact.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(record_id)
    raw = sf_sandbox_thread.admin("GET", f"/contacts/{record_id}")
    assert raw["IsDeleted"] is True


def test_query_with_paging(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf_sandbox_thread.admin(
        "POST",
        "/records/Contact",
        {"records": [{"LastName": f"Row{i:03d}"} for i in range(450)]},
    )
    sf = login(sf_sandbox_thread)
    first = sf.query("SELECT Id, LastName FROM Contact ORDER BY LastName")
    assert first["totalSize"] == 450 and first["done"] is False
    assert len(first["records"]) == 200
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["records"][0]["LastName"] == "Row200"
    everything = sf.query_all("SELECT Id FROM Contact WHERE LastName LIKE 'Row%'")
    assert len(everything["records"]) == 450 and everything["done"] is True


def test_validation_errors_reach_the_caller(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Contact.create({"FirstName": "No last name"})
    assert failure.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id, Foo__c FROM Contact")
    assert failure.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_describe_limits_and_api_usage(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    fields = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    assert fields["LastName"]["nillable"] is False and fields["LastName"]["length"] == 80
    assert fields["Email"]["type"] == "email"
    assert fields["Level__c"]["type"] == "picklist"
    assert fields["Languages__c"]["length"] == 100
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] == 115000
    usage = sf.api_usage["api-usage"]
    assert usage.total == 115000 and usage.used >= 2


def test_relogin_after_session_expiry(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    before = sf.session_id
    sf_sandbox_thread.admin("POST", "/sessions/expire")
    # 401 INVALID_SESSION_ID makes simple-salesforce log in again and repeat the call.
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    assert sf.session_id != before


def test_expired_session_without_credentials(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    direct = Salesforce(
        session_id=sf.session_id,
        instance=sf.sf_instance,
        session=https_to_sandbox(sf_sandbox_thread.url),
    )
    sf_sandbox_thread.admin("POST", "/sessions/expire")
    with pytest.raises(SalesforceExpiredSession) as failure:
        direct.query("SELECT Id FROM Contact")
    assert failure.value.content[0]["errorCode"] == "INVALID_SESSION_ID"


def test_upsert_by_external_id_on_bridge_object(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf = login(sf_sandbox_thread)
    emailing = sf.Copernica_Emailing__c
    assert emailing.upsert("Emailing_Id__c/E-1", {"Name": "Spring", "Clicks__c": 3}) == 201
    assert emailing.upsert("Emailing_Id__c/E-1", {"Clicks__c": 5}) == 200
    record = emailing.get_by_custom_id("Emailing_Id__c", "E-1")
    assert record["Clicks__c"] == 5.0 and record["Name"] == "Spring"
