"""The bridge's Salesforce client against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge.salesforce import (
    ClientCredentialsLogin,
    JwtBearerLogin,
    PasswordLogin,
    RefreshTokenLogin,
    SalesforceClient,
    SalesforceError,
    SoapLogin,
)
from bridge.salesforce.objects import EMAILING
from bridge.usage import ApiUsage
from sandbox.salesforce import SandboxSettings
from tests.fixtures.salesforce import FAST_RETRY, RunningSandbox, SandboxFactory


class CountingLogin:
    """Wraps an authenticator and counts logins."""

    def __init__(self, inner: SoapLogin) -> None:
        self.inner, self.count = inner, 0

    async def login(self, http):  # type: ignore[no-untyped-def]
        self.count += 1
        return await self.inner.login(http)


def key_and_certificate() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


# --- auth -------------------------------------------------------------------------------


async def test_every_login_flow(sf_sandbox_factory: SandboxFactory) -> None:
    key_pem, cert_pem = key_and_certificate()
    sandbox = await sf_sandbox_factory(SandboxSettings(jwt_certificate_pem=cert_pem))
    url = sandbox.url
    flows = [
        sandbox.soap_login(),
        PasswordLogin(
            "sandbox-client",
            "sandbox-secret",
            "admin@sandbox.example",
            "sandbox-password",
            "SANDBOXTOKEN",
            login_url=url,
        ),
        ClientCredentialsLogin("sandbox-client", "sandbox-secret", login_url=url),
        RefreshTokenLogin("sandbox-client", "sandbox-refresh-token", login_url=url),
        JwtBearerLogin("sandbox-client", "admin@sandbox.example", key_pem, login_url=url),
    ]
    for flow in flows:
        async with SalesforceClient(flow, retry=FAST_RETRY) as client:
            session = await client.session()
            assert session.instance_url == url, flow
            assert session.user_id == sandbox.settings.user_id, flow
            assert (await client.limits())["DailyApiRequests"]["Max"] == 115000


async def test_wrong_credentials_are_auth_errors(sf_sandbox: RunningSandbox) -> None:
    other_key, _ = key_and_certificate()
    bad = [
        sf_sandbox.soap_login(security_token="WRONG"),
        ClientCredentialsLogin("sandbox-client", "nope", login_url=sf_sandbox.url),
        RefreshTokenLogin("sandbox-client", "stale", login_url=sf_sandbox.url),
        JwtBearerLogin(
            "sandbox-client", "admin@sandbox.example", other_key, login_url=sf_sandbox.url
        ),
    ]
    for flow in bad:
        async with SalesforceClient(flow, retry=FAST_RETRY) as client:
            with pytest.raises(SalesforceError) as failure:
                await client.limits()
            assert failure.value.category == "auth", flow


async def test_expired_password_is_an_auth_error(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory(SandboxSettings(password_expired=True))
    async with SalesforceClient(sandbox.soap_login(), retry=FAST_RETRY) as client:
        with pytest.raises(SalesforceError) as failure:
            await client.limits()
    assert failure.value.category == "auth" and failure.value.code == "PASSWORD_EXPIRED"


async def test_relogin_once_on_invalid_session(sf_sandbox: RunningSandbox) -> None:
    login = CountingLogin(sf_sandbox.soap_login())
    async with SalesforceClient(login, retry=FAST_RETRY) as client:  # type: ignore[arg-type]
        await client.create("Contact", {"LastName": "One"})
        await sf_sandbox.admin("POST", "/sessions/expire")
        await client.create("Contact", {"LastName": "Two"})
    assert login.count == 2


async def test_session_expiry_by_inactivity(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory(SandboxSettings(session_seconds=0.05))
    login = CountingLogin(sandbox.soap_login())
    async with SalesforceClient(login, retry=FAST_RETRY) as client:  # type: ignore[arg-type]
        await client.limits()
        await asyncio.sleep(0.1)
        await client.limits()
    assert login.count == 2


# --- error taxonomy ---------------------------------------------------------------------


async def error_of(call: object) -> SalesforceError:
    with pytest.raises(SalesforceError) as failure:
        await call  # type: ignore[misc]
    return failure.value


async def test_error_categories(sf_client: SalesforceClient, sf_sandbox: RunningSandbox) -> None:
    missing = await error_of(sf_client.create("Contact", {"FirstName": "x"}))
    assert (missing.category, missing.code, missing.fields) == (
        "validation",
        "REQUIRED_FIELD_MISSING",
        ["LastName"],
    )
    too_long = await error_of(sf_client.create("Contact", {"LastName": "x" * 81}))
    assert (too_long.category, too_long.code) == ("validation", "STRING_TOO_LONG")
    bad_email = await error_of(sf_client.create("Contact", {"LastName": "x", "Email": "nope"}))
    assert bad_email.code == "INVALID_EMAIL_ADDRESS"
    read_only = await error_of(sf_client.create("Contact", {"LastName": "x", "Name": "y"}))
    assert read_only.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
    await sf_client.create(EMAILING, {"Name": "a", "Emailing_Id__c": "E-1"})
    duplicate = await error_of(sf_client.create(EMAILING, {"Name": "b", "Emailing_Id__c": "e-1"}))
    assert (duplicate.category, duplicate.code) == ("duplicate", "DUPLICATE_VALUE")
    record_id = await sf_client.create("Contact", {"LastName": "Gone"})
    await sf_client.delete("Contact", record_id)
    deleted = await error_of(sf_client.update("Contact", record_id, {"LastName": "x"}))
    assert (deleted.category, deleted.code, deleted.status) == (
        "not_found",
        "ENTITY_IS_DELETED",
        404,
    )
    unknown = await error_of(sf_client.get("Contact", "0035g00000Q1aBcAAJ"))
    assert unknown.category == "not_found"
    malformed = await error_of(sf_client.query("SELECT Id FROMM Contact").__anext__())
    assert (malformed.category, malformed.code) == ("validation", "MALFORMED_QUERY")
    await sf_sandbox.admin(
        "POST",
        "/faults",
        {
            "path": "/services/data/*",
            "status": 403,
            "error_code": "INSUFFICIENT_ACCESS_OR_READONLY",
        },
    )
    refused = await error_of(sf_client.limits())
    assert refused.category == "permission"
    await sf_sandbox.admin("PATCH", "/limits", {"used": 115000})
    spent = await error_of(sf_client.limits())
    assert (spent.category, spent.code, spent.retryable) == (
        "rate_limit",
        "REQUEST_LIMIT_EXCEEDED",
        True,
    )
    await sf_sandbox.admin("PATCH", "/limits", {"used": 0})
    await sf_sandbox.admin(
        "POST", "/faults", {"path": "/services/data/*", "status": 503, "times": None}
    )
    unavailable = await error_of(sf_client.limits())
    assert (unavailable.category, unavailable.status) == ("transient", 503)


async def test_transient_errors_are_retried(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    await sf_sandbox.admin(
        "POST", "/faults", {"path": "/services/data/*", "method": "POST", "status": 500, "times": 2}
    )
    record_id = await sf_client.create("Contact", {"LastName": "Persistent"})
    assert (await sf_client.get("Contact", record_id))["LastName"] == "Persistent"


# --- reads ------------------------------------------------------------------------------


async def test_query_pages_lazily(sf_sandbox: RunningSandbox) -> None:
    await sf_sandbox.admin(
        "POST", "/records/Contact", {"records": [{"LastName": f"R{i:03d}"} for i in range(450)]}
    )
    async with SalesforceClient(
        sf_sandbox.soap_login(), retry=FAST_RETRY, query_batch_size=200
    ) as client:
        sizes = [len(page) async for page in client.query_pages("SELECT Id FROM Contact")]
        assert sizes == [200, 200, 50]
        names = [
            r["LastName"]
            async for r in client.query(
                "SELECT LastName FROM Contact WHERE (LastName LIKE 'R1%' OR LastName = 'R000') "
                "AND NOT LastName IN ('R100', 'R101') ORDER BY LastName DESC LIMIT 5 OFFSET 1"
            )
        ]
        assert names == ["R198", "R197", "R196", "R195", "R194"]
        assert await client.count("SELECT COUNT() FROM Contact") == 450


async def test_describe_is_cached(sf_client: SalesforceClient, sf_usage: list[ApiUsage]) -> None:
    fields = await sf_client.fields("Contact")
    calls = len(sf_usage)
    assert fields["Email"]["length"] == 80 and fields["Name"]["updateable"] is False
    await sf_client.describe("Contact")
    assert len(sf_usage) == calls
    assert sf_usage[-1].used is not None and sf_usage[-1].max == 115000


async def test_bridge_objects_can_be_missing(sf_sandbox_factory: SandboxFactory) -> None:
    sandbox = await sf_sandbox_factory(SandboxSettings(bridge_objects=False))
    async with SalesforceClient(sandbox.soap_login(), retry=FAST_RETRY) as client:
        missing = await error_of(client.describe("Copernica_Sync_Error__c"))
    assert missing.category == "not_found"


# --- writes -----------------------------------------------------------------------------


async def test_collections_in_chunks_of_200(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox, sf_usage: list[ApiUsage]
) -> None:
    rows = [{"LastName": f"C{i}", "Email": f"c{i}@example.org"} for i in range(450)]
    rows[321] = {"FirstName": "no last name"}
    before = len(sf_usage)
    results = await sf_client.create_many("Contact", rows)
    assert len(sf_usage) - before == 3
    assert len(results) == 450
    assert [r.success for r in results].count(False) == 1
    assert results[321].category == "validation"
    assert results[321].errors[0].code == "REQUIRED_FIELD_MISSING"
    ids = [r.id for r in results if r.success]
    updates = [{"id": i, "Title": "Updated"} for i in ids]
    assert all(r.success for r in await sf_client.update_many("Contact", updates))
    assert len(sf_usage) - before == 6
    titles = {r["Title"] async for r in sf_client.query("SELECT Title FROM Contact")}
    assert titles == {"Updated"}
    writes = (await sf_sandbox.admin("GET", "/writes"))["by_client"]
    assert writes["test-bridge"] == 449 * 2


async def test_all_or_none_rolls_back(sf_client: SalesforceClient) -> None:
    results = await sf_client.create_many(
        "Contact", [{"LastName": "Fine"}, {"LastName": "x" * 100}], all_or_none=True
    )
    assert [r.errors[0].code for r in results] == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "STRING_TOO_LONG",
    ]
    assert results[0].category == "transient"
    assert await sf_client.count("SELECT COUNT() FROM Contact") == 0


async def test_upserts_by_external_id(sf_client: SalesforceClient) -> None:
    created = await sf_client.upsert_many(
        EMAILING, "Emailing_Id__c", [{"Emailing_Id__c": "E/1", "Name": "A", "Clicks__c": 4}]
    )
    assert [r.created for r in created] == [True]
    results = await sf_client.upsert_many(
        EMAILING,
        "Emailing_Id__c",
        [{"Emailing_Id__c": "E/1", "Deliveries__c": 10}, {"Emailing_Id__c": "E/2", "Name": "B"}],
    )
    assert [r.created for r in results] == [False, True]
    found = await sf_client.get(EMAILING, str(created[0].id))
    assert (found["Clicks__c"], found["Deliveries__c"], found["Name"]) == (4.0, 10.0, "A")


async def test_merge_leaves_a_trace(
    sf_client: SalesforceClient, sf_sandbox: RunningSandbox
) -> None:
    master = await sf_client.create("Contact", {"LastName": "Master"})
    loser = await sf_client.create("Contact", {"LastName": "Loser"})
    await sf_sandbox.admin(
        "POST", "/merge", {"master": master, "losers": [loser], "fields": {"Title": "Merged"}}
    )
    rows = [
        r
        async for r in sf_client.query(
            "SELECT Id, MasterRecordId, IsDeleted FROM Contact WHERE IsDeleted = true",
            include_deleted=True,
        )
    ]
    assert rows and rows[0]["Id"] == loser and rows[0]["MasterRecordId"] == master
    assert (await sf_client.get("Contact", master))["Title"] == "Merged"


async def test_injected_latency(sf_client: SalesforceClient, sf_sandbox: RunningSandbox) -> None:
    await sf_sandbox.admin(
        "POST", "/faults", {"path": "/services/data/*/limits", "status": None, "latency": 0.2}
    )
    started = asyncio.get_running_loop().time()
    assert (await sf_client.limits())["DailyApiRequests"]["Max"] == 115000
    assert asyncio.get_running_loop().time() - started >= 0.2
