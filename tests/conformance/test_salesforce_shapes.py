"""What the sandbox emits has the keys and types of the samples in
``/work/shared/samples/salesforce`` (the reconstructed real payloads)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.salesforce import RunningSandbox

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "salesforce"
if not SAMPLES.is_dir():  # the checkout may live elsewhere; the samples sit beside it
    SAMPLES = Path("/work/shared/samples/salesforce")

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="samples folder not available")

V = "/services/data/v59.0"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def assert_shape(expected: Any, actual: Any, path: str = "$", skip: set[str] = frozenset()) -> None:
    """Every key of ``expected`` is in ``actual`` with a value of the same JSON type."""
    if expected is None:
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            if key in skip:
                continue
            assert key in actual, f"{path}.{key} missing (have {sorted(actual)})"
            assert_shape(value, actual[key], f"{path}.{key}", skip)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not an array"
        if expected and actual:
            assert_shape(expected[0], actual[0], f"{path}[0]", skip)
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), f"{path}: {actual!r} is not a boolean"
    elif isinstance(expected, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{path}: {actual!r}"
    elif isinstance(expected, float):
        assert isinstance(actual, int | float), f"{path}: {actual!r} is not a number"
    else:
        assert isinstance(actual, str), f"{path}: {actual!r} is not a string"


class Api:
    """Raw HTTP against the sandbox, logged in over OAuth password flow."""

    def __init__(self, sandbox: RunningSandbox, http: aiohttp.ClientSession, token: str) -> None:
        self.sandbox, self.http, self.token = sandbox, http, token

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(
            method, self.sandbox.url + path, json=body, headers=headers, **kw
        ) as response:
            text = await response.text()
            assert "Sforce-Limit-Info" in response.headers or not path.startswith("/services/data")
            return response.status, (json.loads(text) if text else None)


async def password_token(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> dict[str, Any]:
    form = {
        "grant_type": "password",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "username": "admin@sandbox.example",
        "password": "sandbox-passwordSANDBOXTOKEN",
    }
    async with http.post(f"{sandbox.url}/services/oauth2/token", data=form) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        return await response.json()


@pytest.fixture
async def api(sf_sandbox: RunningSandbox) -> Any:
    async with aiohttp.ClientSession() as http:
        token = await password_token(sf_sandbox, http)
        yield Api(sf_sandbox, http, token["access_token"])


async def test_login_replies(sf_sandbox: RunningSandbox) -> None:
    async with aiohttp.ClientSession() as http:
        assert_shape(
            sample("oauth-token-response-password.json"), await password_token(sf_sandbox, http)
        )
        form = {
            "grant_type": "refresh_token",
            "client_id": "sandbox-client",
            "refresh_token": "sandbox-refresh-token",
        }
        async with http.post(f"{sf_sandbox.url}/services/oauth2/token", data=form) as response:
            assert_shape(sample("oauth-token-response-refresh.json"), await response.json())
        form["refresh_token"] = "wrong"
        async with http.post(f"{sf_sandbox.url}/services/oauth2/token", data=form) as response:
            assert response.status == 400
            assert_shape(sample("oauth-token-error.json"), await response.json())
        envelope = (SAMPLES / "soap-login-request.xml").read_text()
        envelope = re.sub(
            r"<n1:username>.*?</n1:username>",
            "<n1:username>admin@sandbox.example</n1:username>",
            envelope,
        )
        envelope = re.sub(
            r"<n1:password>.*?</n1:password>",
            "<n1:password>sandbox-passwordSANDBOXTOKEN</n1:password>",
            envelope,
        )
        headers = {"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"}
        url = f"{sf_sandbox.url}/services/Soap/u/59.0"
        async with http.post(url, data=envelope, headers=headers) as response:
            assert response.status == 500  # off by default in new orgs
            assert "<faultcode>sf:INVALID_OPERATION</faultcode>" in await response.text()
        assert (await sf_sandbox.admin("POST", "/variants", {"soap_login": True}))["soap_login"]
        async with http.post(url.replace("59.0", "65.0"), data=envelope, headers=headers) as old:
            assert old.status == 500  # not available from API 65.0
            assert "UNSUPPORTED_API_VERSION" in await old.text()
        async with http.post(url, data=envelope, headers=headers) as response:
            assert response.status == 200
            xml = await response.text()
        expected = set(
            re.findall(r"<(\w+)[ />]", (SAMPLES / "soap-login-response.xml").read_text())
        )
        assert expected <= set(re.findall(r"<(\w+)[ />]", xml))
        jsforce = (SAMPLES / "soap-login-request-jsforce.xml").read_text()
        jsforce = re.sub(
            r"<username>.*?</username>", "<username>admin@sandbox.example</username>", jsforce
        )
        jsforce = re.sub(
            r"<password>.*?</password>",
            "<password>sandbox-passwordSANDBOXTOKEN</password>",
            jsforce,
        )
        async with http.post(
            url, data=jsforce, headers={"Content-Type": "text/xml", "SOAPAction": '""'}
        ) as response:
            assert response.status == 200
            assert "<userId>" in await response.text()
        bad = envelope.replace("SANDBOXTOKEN", "WRONG")
        async with http.post(url, data=bad, headers=headers) as response:
            assert response.status == 500
            fault = await response.text()
        fault_sample = (SAMPLES / "soap-login-fault-invalid-login.xml").read_text()
        tags = set(re.findall(r"<([\w:]+)[ />]", fault_sample)) - {"?xml"}
        assert tags <= set(re.findall(r"<([\w:]+)[ />]", fault))
        assert "<faultcode>sf:INVALID_LOGIN</faultcode>" in fault


async def test_rest_record_replies(api: Api) -> None:
    status, versions = await api.call("GET", "/services/data/")
    assert status == 200
    assert_shape(sample("versions-response.json"), versions)
    body = {
        "LastName": "Doe",
        "FirstName": "Jane",
        "Salutation": "Ms.",
        "Email": "j@example.org",
        "MailingStreet": "Keizersgracht 123",
        "MailingCity": "Amsterdam",
        "Phone": "+31 20",
        "MailingPostalCode": "1015 CJ",
        "MailingCountry": "NL",
        "Title": "Lead",
        "Birthdate": "1988-04-17",
    }
    status, created = await api.call("POST", f"{V}/sobjects/Contact/", body)
    assert status == 201
    assert_shape(sample("create-contact-response.json"), created)
    status, record = await api.call("GET", f"{V}/sobjects/Contact/{created['id']}")
    assert_shape(sample("retrieve-contact-response.json"), record, skip={"Marketing_Id__c"})
    status, upserted = await api.call(
        "PATCH", f"{V}/sobjects/Copernica_Emailing__c/Emailing_Id__c/E-9", {"Name": "x"}
    )
    assert status == 201 and upserted["created"] is True
    status, upserted = await api.call(
        "PATCH", f"{V}/sobjects/Copernica_Emailing__c/Emailing_Id__c/E-9", {"Name": "y"}
    )
    assert status == 200
    assert_shape(sample("upsert-external-id-response-updated.json"), upserted)
    status, limits = await api.call("GET", f"{V}/limits/")
    assert_shape(sample("limits-response-excerpt.json"), limits)


async def test_query_pages_and_query_all(api: Api, sf_sandbox: RunningSandbox) -> None:
    await sf_sandbox.admin(
        "POST",
        "/records/Contact",
        {
            "records": [
                {
                    "LastName": f"P{i:04d}",
                    "FirstName": "F",
                    "Email": f"p{i}@example.org",
                    "Birthdate": "1990-01-01",
                }
                for i in range(2150)
            ]
        },
    )
    q = "SELECT Id, FirstName, LastName, Email, Birthdate, SystemModstamp FROM Contact"
    status, page1 = await api.call("GET", f"{V}/query", params={"q": q})
    assert status == 200 and len(page1["records"]) == 2000
    assert_shape(sample("query-response-page1.json"), page1)
    assert re.fullmatch(rf"{V}/query/01g\w+-2000", page1["nextRecordsUrl"])
    status, page2 = await api.call("GET", page1["nextRecordsUrl"])
    assert_shape(sample("query-response-page2-last.json"), page2)
    assert page2["done"] is True and "nextRecordsUrl" not in page2
    status, created = await api.call("POST", f"{V}/sobjects/Contact", {"LastName": "Removed"})
    await api.call("DELETE", f"{V}/sobjects/Contact/{created['id']}")
    status, rows = await api.call(
        "GET",
        f"{V}/queryAll/",
        params={
            "q": "SELECT Id, IsDeleted, LastName, SystemModstamp FROM Contact WHERE IsDeleted = TRUE"
        },
    )
    assert rows["totalSize"] == 1
    assert_shape(sample("queryall-response-with-deleted.json"), rows)


async def test_collections_results(api: Api) -> None:
    request = sample("collections-create-request.json")
    status, partial = await api.call("POST", f"{V}/composite/sobjects", request)
    assert status == 200
    assert_shape(sample("collections-create-response-partial.json"), partial)
    assert partial[0]["success"] is True and partial[1]["success"] is False
    status, rolled_back = await api.call(
        "POST", f"{V}/composite/sobjects", {**request, "allOrNone": True}
    )
    assert_shape(sample("collections-create-response-allornone-rollback.json"), rolled_back)
    assert [r["errors"][0]["statusCode"] for r in rolled_back] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]


async def test_error_bodies(api: Api, sf_sandbox: RunningSandbox) -> None:
    catalogue = sample("error-responses.json")
    status, created = await api.call("POST", f"{V}/sobjects/Contact", {"LastName": "Doe"})
    record = f"{V}/sobjects/Contact/{created['id']}"
    emailing = f"{V}/sobjects/Copernica_Emailing__c"
    await api.call("POST", emailing, {"Name": "a", "Emailing_Id__c": "DUP"})
    cases = {
        "NOT_FOUND": ("GET", f"{V}/sobjects/Contact/0035g00000Q1aBcAAJ", None),
        "MALFORMED_ID": ("GET", f"{V}/sobjects/Contact/003XYZ", None),
        "INVALID_FIELD_on_write": ("POST", f"{V}/sobjects/Contact", {"LastName": "x", "Foo__c": 1}),
        "INVALID_FIELD_in_query": ("GET", f"{V}/query?q=SELECT+Id,+Foo__c+FROM+Contact", None),
        "MALFORMED_QUERY": ("GET", f"{V}/query?q=SELECT+Id+FROMM+Contact", None),
        "REQUIRED_FIELD_MISSING": ("POST", f"{V}/sobjects/Contact", {"FirstName": "x"}),
        "DUPLICATE_VALUE": ("POST", emailing, {"Name": "b", "Emailing_Id__c": "DUP"}),
    }
    for name, (method, path, body) in cases.items():
        status, reply = await api.call(method, path, body)
        expected = catalogue[name]
        assert status == expected["status"], name
        assert_shape(expected["body"], reply, name, skip={"fields"})
        assert reply[0]["errorCode"] == expected["body"][0]["errorCode"], name
    await api.call("DELETE", record)
    status, reply = await api.call("PATCH", record, {"LastName": "again"})
    assert (status, reply) == (
        catalogue["ENTITY_IS_DELETED"]["status"],
        catalogue["ENTITY_IS_DELETED"]["body"],
    )
    await sf_sandbox.admin("PATCH", "/limits", {"used": 115000})
    status, reply = await api.call("GET", f"{V}/limits")
    assert (status, reply) == (403, catalogue["REQUEST_LIMIT_EXCEEDED_daily"]["body"])
    await sf_sandbox.admin("PATCH", "/limits", {"used": 0})
    await sf_sandbox.admin("POST", "/sessions/expire")
    status, reply = await api.call("GET", f"{V}/limits")
    assert (status, reply) == (401, catalogue["INVALID_SESSION_ID"]["body"])


async def test_replication_replies(api: Api, sf_sandbox: RunningSandbox) -> None:
    await sf_sandbox.admin(
        "POST",
        "/records/Contact",
        {
            "records": [
                {"LastName": "Old", "SystemModstamp": "2020-01-01T00:00:00Z"},
                {"LastName": "Changed", "SystemModstamp": _minutes_ago(10)},
                {"LastName": "Gone", "SystemModstamp": _minutes_ago(10), "IsDeleted": True},
            ]
        },
    )
    window = {"start": _minutes_ago(60), "end": _minutes_ago(-5)}
    status, updated = await api.call("GET", f"{V}/sobjects/Contact/updated/", params=window)
    assert status == 200 and len(updated["ids"]) == 1
    assert_shape(sample("getupdated-response.json"), updated)
    status, deleted = await api.call("GET", f"{V}/sobjects/Contact/deleted/", params=window)
    assert status == 200 and len(deleted["deletedRecords"]) == 1
    assert_shape(sample("getdeleted-response.json"), deleted)
    status, reply = await api.call(
        "GET",
        f"{V}/sobjects/Contact/updated/",
        params={"start": "2020-01-01T00:00:00Z", "end": _minutes_ago(0)},
    )
    assert status == 400 and reply[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def _minutes_ago(minutes: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_cdc_events_and_bayeux_replies(api: Api, sf_sandbox: RunningSandbox) -> None:
    status, created = await api.call(
        "POST",
        f"{V}/sobjects/Contact",
        {
            "LastName": "Doe",
            "FirstName": "Jane",
            "Salutation": "Ms.",
            "Email": "j@example.org",
            "Phone": "+31 20 555 0100",
            "Birthdate": "1988-04-17",
            "MailingStreet": "K 1",
            "MailingCity": "Amsterdam",
            "MailingPostalCode": "1015 CJ",
            "MailingCountry": "NL",
        },
    )
    record_id = created["id"]
    await api.call(
        "PATCH",
        f"{V}/sobjects/Contact/{record_id}",
        {"LastName": "Doe-Smith", "Email": "js@example.org", "Phone": None},
    )
    await api.call("DELETE", f"{V}/sobjects/Contact/{record_id}")
    await sf_sandbox.admin("POST", f"/contacts/{record_id}/undelete")
    await sf_sandbox.admin("POST", "/cdc/gap", {"record_ids": [record_id]})
    await sf_sandbox.admin("POST", "/cdc/overflow", {})

    transcript = sample("cometd-session-transcript.json")["steps"]
    url = f"{sf_sandbox.url}/cometd/45.0"
    headers = {"Authorization": f"Bearer {api.token}"}

    async def post(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with api.http.post(url, json=messages, headers=headers) as response:
            assert response.status == 200 and response.content_type == "application/json"
            return await response.json()

    [handshake] = await post(transcript[0]["request"])
    assert_shape(transcript[0]["response"][0], handshake)
    assert handshake["supportedConnectionTypes"] == ["long-polling"]
    client = handshake["clientId"]
    connect = {**transcript[1]["request"][0], "clientId": client}
    [first] = await post([connect])
    assert_shape(transcript[1]["response"][0], first)
    assert first["advice"]["interval"] == 0
    subscribe = {
        **transcript[2]["request"][0],
        "clientId": client,
        "ext": {"replay": {"/data/ContactChangeEvent": -2}},
    }
    [subscribed] = await post([subscribe])
    assert_shape(transcript[2]["response"][0], subscribed)
    replies = await post([{**connect, "id": "4"}])
    events = [m for m in replies if m["channel"] == "/data/ContactChangeEvent"]
    by_type = {m["data"]["payload"]["ChangeEventHeader"]["changeType"]: m for m in events}
    for change_type, name in [
        ("CREATE", "cdc-contact-create.json"),
        ("UPDATE", "cdc-contact-update.json"),
        ("DELETE", "cdc-contact-delete.json"),
        ("UNDELETE", "cdc-contact-undelete.json"),
        ("GAP_UPDATE", "cdc-gap-update.json"),
        ("GAP_OVERFLOW", "cdc-overflow.json"),
    ]:
        expected = sample(name)
        expected["channel"] = "/data/ContactChangeEvent"
        assert_shape(expected, by_type[change_type], change_type)
        assert set(by_type[change_type]["data"]["payload"]["ChangeEventHeader"]) == set(
            expected["data"]["payload"]["ChangeEventHeader"]
        ), change_type
    update = by_type["UPDATE"]["data"]["payload"]
    assert update["ChangeEventHeader"]["changedFields"] == [
        "Name.LastName",
        "Email",
        "Phone",
        "LastModifiedDate",
    ]
    assert update["Phone"] is None and update["Name"] == {"LastName": "Doe-Smith"}
    assert by_type["CREATE"]["data"]["payload"]["MailingAddress"]["Street"] == "K 1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", update["LastModifiedDate"])

    errors = sample("cometd-error-replies.json")
    [invalid] = await post([{**subscribe, "ext": {"replay": {"/data/ContactChangeEvent": 7}}}])
    assert_shape(errors["subscribe_invalid_replay_id"], invalid)
    [unknown] = await post([{**subscribe, "subscription": "/data/FooChangeEvent"}])
    assert_shape(errors["subscribe_unknown_channel"], unknown)
    await sf_sandbox.admin("POST", "/streaming/drop", {})
    [dropped] = await post([{**connect, "id": "9"}])
    assert_shape(errors["connect_unknown_client"], dropped)
    assert dropped["advice"]["reconnect"] == "handshake"
    async with api.http.post(
        url, json=transcript[0]["request"], headers={"Authorization": "Bearer nope"}
    ) as response:
        [denied] = await response.json()
    assert_shape(errors["handshake_auth_invalid"], denied)
    async with api.http.post(
        f"{sf_sandbox.url}/cometd/", json=transcript[0]["request"]
    ) as response:
        [no_version] = await response.json()
    assert_shape(errors["handshake_missing_version_in_uri"], no_version)


async def test_composite(api: Api, sf_sandbox: RunningSandbox) -> None:
    request = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": f"{V}/sobjects/Contact",
                "referenceId": "refContact",
                "body": {"LastName": "Doe", "Email": "jane.doe@example.org"},
            },
            {
                "method": "POST",
                "url": f"{V}/sobjects/Copernica_Sync_Error__c",
                "referenceId": "refErr",
                "body": {"Contact__c": "@{refContact.id}", "Message__c": "demo"},
            },
        ],
    }
    status, reply = await api.call("POST", f"{V}/composite", request)
    assert status == 200
    assert_shape(sample("composite-response.json"), reply, skip={"created"})
    first, second = reply["compositeResponse"]
    assert second["httpStatusCode"] == 201 and "Location" in second["httpHeaders"]
    status, error = await api.call(
        "GET", f"{V}/sobjects/Copernica_Sync_Error__c/{second['body']['id']}"
    )
    assert error["Contact__c"] == first["body"]["id"] and error["Status__c"] == "open"
    before = (await sf_sandbox.admin("GET", "/cdc/events"))["latest"]
    request["compositeRequest"][1]["body"]["Contact__c"] = "003000000000000AAA"
    status, reply = await api.call("POST", f"{V}/composite", request)
    first, second = reply["compositeResponse"]
    assert first["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert second["httpStatusCode"] == 400
    assert (await sf_sandbox.admin("GET", "/cdc/events"))["latest"] == before
    status, count = await api.call("GET", f"{V}/query", params={"q": "SELECT COUNT() FROM Contact"})
    assert count["totalSize"] == 1
