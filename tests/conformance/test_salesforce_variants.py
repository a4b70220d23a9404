"""The Salesforce sandbox behaves like a new org of 2026 by default, and its variants switch each
point: SOAP login refused, and no ``Sforce-Call-Options`` client in the ``changeOrigin`` of
sObject Collections writes (documented for sObject Rows, Query and Bulk only)."""

from __future__ import annotations

from typing import Any

import aiohttp

from bridge.salesforce import ClientCredentialsLogin, SalesforceClient, SoapLogin
from bridge.salesforce.errors import SalesforceError
from tests.fixtures.salesforce import FAST_RETRY, RunningSandbox


def origins(sandbox: RunningSandbox) -> list[str]:
    return [e.data["payload"]["ChangeEventHeader"]["changeOrigin"] for e in sandbox.state.org.events.events]


async def test_variants_read_and_switch(sf_sandbox: RunningSandbox) -> None:
    assert await sf_sandbox.admin("GET", "/variants") == {
        "soap_login": False, "collections_call_options": False, "jwt_certificate_pem": None,
    }
    switched = await sf_sandbox.admin("POST", "/variants", {"collections_call_options": True})
    assert switched["collections_call_options"] and not switched["soap_login"]
    async with aiohttp.ClientSession() as http, http.post(
        f"{sf_sandbox.url}/_sandbox/variants", json={"stamp_everything": True}
    ) as refused:
        assert refused.status == 400


async def test_soap_login_is_refused_until_the_org_allows_it(sf_sandbox: RunningSandbox) -> None:
    settings = sf_sandbox.settings
    login = SoapLogin(settings.username, settings.password, settings.security_token, sf_sandbox.url)
    async with aiohttp.ClientSession() as http:
        try:
            await login.login(http)
        except SalesforceError as refused:
            assert refused.category == "auth" and refused.code == "INVALID_OPERATION"
        else:
            raise AssertionError("SOAP login worked in an org that does not allow it")
        await sf_sandbox.admin("POST", "/variants", {"soap_login": True})
        assert (await login.login(http)).access_token


async def test_collections_writes_carry_no_client_in_change_origin(sf_sandbox: RunningSandbox) -> None:
    async def writes() -> dict[str, Any]:
        return (await sf_sandbox.admin("GET", "/writes"))["by_client"]

    login = ClientCredentialsLogin(
        sf_sandbox.settings.client_id, sf_sandbox.settings.client_secret, sf_sandbox.url
    )
    async with SalesforceClient(login, retry=FAST_RETRY, client_id="Bridge7") as client:
        record = await client.create("Contact", {"LastName": "Rows"})  # sObject Rows
        assert origins(sf_sandbox)[-1].endswith(";client=Bridge7")
        [result] = await client.update_many("Contact", [{"id": record, "Title": "Collections"}])
        assert result.success
        assert origins(sf_sandbox)[-1] == "com/salesforce/api/rest/59.0"  # no client
        await sf_sandbox.admin("POST", "/variants", {"collections_call_options": True})
        await client.update_many("Contact", [{"id": record, "Title": "Stamped"}])
        assert origins(sf_sandbox)[-1].endswith(";client=Bridge7")
    assert (await writes())["Bridge7"] == 3  # counted by the header, stamped or not
