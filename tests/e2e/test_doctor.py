"""``bridge doctor`` against the running bridge and both sandboxes: all ok for a tenant set up
as the config page leaves it, and the failing item with its fix for each broken part."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from bridge.clock import PlatformClock
from bridge.config import Settings
from bridge.copernica.client import CopernicaClient
from bridge.doctor import FIXES, clock_finding, login_method_finding, run
from bridge.security.vault import Vault
from bridge.tenants import (
    SalesforceCredentials,
    Tenant,
    load_copernica_credentials,
    load_salesforce_credentials,
    save_credentials,
)
from bridge.vocabulary import CATEGORIES, WEBHOOK_TRIGGERS, webhook_url
from tests.fixtures.bridge import RunningBridge, configure_tenant, free_port
from tests.fixtures.copernica import RunningSandbox as CopernicaSandbox
from tests.fixtures.salesforce import SandboxFactory

ROOT = Path(__file__).resolve().parents[2]
CHECKS = (
    "Salesforce login method",
    "Salesforce credentials",
    "Copernica credentials",
    "Salesforce Change Data Capture",
    "Salesforce custom objects",
    "Copernica database",
    "Copernica webhooks registered",
    "Webhook reachable at PUBLIC_URL",
    "Clock",
    "Salesforce API headroom",
    "Copernica API usage",
)


async def register_webhooks(
    pool: asyncpg.Pool, copernica: CopernicaSandbox, tenant: Tenant, url: str
) -> dict[str, object]:
    """What saving the Copernica settings does: one webhook per trigger, ids on the tenant."""
    stored: dict[str, object] = {"database": tenant.copernica_database, "handler": url}
    async with CopernicaClient.for_sandbox(copernica.url) as client:
        for trigger in WEBHOOK_TRIGGERS:
            stored[trigger] = await client.create_webhook(
                url, trigger, database=tenant.copernica_database
            )
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE tenants SET copernica_webhooks = $2 WHERE id = $1", tenant.id, stored
        )
    return stored


async def doctor(
    bridge: RunningBridge, slug: str, capsys: pytest.CaptureFixture[str], **settings: object
) -> tuple[int, dict[str, str]]:
    """Run the checklist in-process; the exit code and each check's line by item."""
    capsys.readouterr()
    code = await run(bridge.pool, dataclasses.replace(bridge.settings, **settings), slug)
    return code, lines_by_item(capsys.readouterr().out)


def lines_by_item(output: str) -> dict[str, str]:
    lines = {}
    for line in output.splitlines():
        for item in CHECKS:
            if line.split(maxsplit=1)[-1].startswith(item + ":"):
                lines[item] = line
    return lines


def also_allowing(bridge: RunningBridge, url: str) -> dict[str, object]:
    """Settings overrides for a sandbox started by the test besides the fixture's."""
    return {"allowed_api_hosts": (*bridge.settings.allowed_api_hosts, urlsplit(url).netloc)}


def hook_url(settings: Settings, tenant: Tenant) -> str:
    return webhook_url(settings.public_url, tenant.hook_token)


async def hook_endpoint_served(bridge: RunningBridge) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(hook_url(bridge.settings, bridge.tenant)) as response,
    ):
        return response.status == 200


@pytest.fixture
async def ready(bridge: RunningBridge) -> RunningBridge:
    """The fixture's tenant with its webhooks registered, as after saving the config page."""
    await register_webhooks(
        bridge.pool, bridge.copernica, bridge.tenant, hook_url(bridge.settings, bridge.tenant)
    )
    if not await hook_endpoint_served(bridge):
        pytest.skip("the bridge does not answer GET /hooks/copernica/<token> yet")
    return bridge


async def test_a_configured_tenant_passes_every_check(
    ready: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = await doctor(ready, ready.tenant.slug, capsys)
    assert set(lines) == set(CHECKS)
    assert all(line.startswith("ok ") for line in lines.values()), lines
    assert code == 0
    assert ready.tenant.hook_token not in "".join(lines.values())  # masked


async def test_the_cli_prints_the_same_checklist(ready: RunningBridge, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": ready.settings.database_url or "",
        "BRIDGE_SECRET_KEYS": ",".join(ready.settings.secret_keys),
        "PUBLIC_URL": ready.settings.public_url,
        "BRIDGE_DATA_DIR": str(tmp_path),
        "ALLOWED_API_HOSTS": ",".join(ready.settings.allowed_api_hosts),
        "COPERNICA_AUTH_URL": ready.settings.copernica_auth_url or "",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.cli",
        "doctor",
        ready.tenant.slug,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = lines_by_item(out.decode())
    assert set(lines) == set(CHECKS), (out, err)
    assert all(line.startswith("ok ") for line in lines.values()), lines
    assert process.returncode == 0
    assert out.decode().rstrip().endswith("all checks passed")


async def test_wrong_credentials_name_the_item_and_the_fix(
    bridge: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    vault = Vault(bridge.settings.secret_keys)
    async with bridge.pool.acquire() as conn:
        sf = await load_salesforce_credentials(conn, vault, bridge.tenant.id)
        cp = await load_copernica_credentials(conn, vault, bridge.tenant.id)
        await save_credentials(
            conn, vault, bridge.tenant.id, dataclasses.replace(sf, consumer_secret="wrong-secret")
        )
        await save_credentials(
            conn, vault, bridge.tenant.id, dataclasses.replace(cp, api_token="wrong-token")
        )
    code, lines = await doctor(bridge, bridge.tenant.slug, capsys)
    assert code == 1
    assert lines["Salesforce credentials"].startswith("FAILED ")
    assert (
        "fix: check the External Client App's consumer key and secret"
        in lines["Salesforce credentials"]
    )
    assert "wrong-secret" not in "".join(lines.values())
    assert lines["Copernica credentials"].startswith("FAILED ")
    assert "fix: check the API token on the config page" in lines["Copernica credentials"]
    for item in ("Salesforce Change Data Capture", "Salesforce custom objects"):
        assert "not checked: needs Salesforce credentials" in lines[item]
    for item in ("Copernica database", "Copernica webhooks registered", "Copernica API usage"):
        assert "not checked: needs Copernica credentials" in lines[item]
    # independent checks still ran
    assert set(lines) == set(CHECKS)


async def test_a_org_without_the_package_is_told_to_deploy_it(
    bridge: RunningBridge,
    sf_sandbox_factory: SandboxFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bare_org = await sf_sandbox_factory(bridge_objects=False)
    tenant, _ = await configure_tenant(
        bridge.pool, Vault(bridge.settings.secret_keys), bare_org, bridge.copernica
    )
    code, lines = await doctor(bridge, tenant.slug, capsys, **also_allowing(bridge, bare_org.url))
    assert code == 1
    line = lines["Salesforce custom objects"]
    assert line.startswith("FAILED ")
    assert "Copernica_Sync_Error__c is missing" in line
    assert "Copernica_Emailing__c is missing" in line
    assert "fix: deploy the package in salesforce/" in line
    assert lines["Salesforce credentials"].startswith("ok ")
    assert lines["Salesforce Change Data Capture"].startswith("ok ")


async def test_contact_not_selected_for_cdc_is_named(
    bridge: RunningBridge,
    sf_sandbox_factory: SandboxFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org = await sf_sandbox_factory(cdc_entities=())
    tenant, _ = await configure_tenant(
        bridge.pool, Vault(bridge.settings.secret_keys), org, bridge.copernica
    )
    code, lines = await doctor(bridge, tenant.slug, capsys, **also_allowing(bridge, org.url))
    assert code == 1
    line = lines["Salesforce Change Data Capture"]
    assert line.startswith("FAILED ") and "fix: select Contact for Change Data Capture" in line
    assert lines["Salesforce custom objects"].startswith("ok ")


async def test_an_unreachable_webhook_url_is_named(
    bridge: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    elsewhere = dataclasses.replace(bridge.settings, public_url=nowhere)
    await register_webhooks(
        bridge.pool, bridge.copernica, bridge.tenant, hook_url(elsewhere, bridge.tenant)
    )
    code, lines = await doctor(bridge, bridge.tenant.slug, capsys, public_url=nowhere)
    assert code == 1
    assert lines["Copernica webhooks registered"].startswith("ok ")
    line = lines["Webhook reachable at PUBLIC_URL"]
    assert line.startswith("FAILED ")
    assert f"GET {nowhere}/hooks/copernica/<token>" in line
    assert f"fix: make {nowhere} reach this bridge" in line


async def test_webhooks_not_registered_or_pointing_elsewhere(
    bridge: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = await doctor(bridge, bridge.tenant.slug, capsys)
    assert code == 1
    assert lines["Copernica webhooks registered"].startswith(
        "FAILED Copernica webhooks registered: no webhook registered -- fix: save the Copernica"
    )
    await register_webhooks(
        bridge.pool, bridge.copernica, bridge.tenant, "https://old.example.com/hooks/copernica/x"
    )
    _, lines = await doctor(bridge, bridge.tenant.slug, capsys)
    line = lines["Copernica webhooks registered"]
    assert line.startswith("FAILED ") and "calls https://old.example.com/hooks/copernica/x" in line


async def test_settings_not_saved_yet(
    bridge: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.tenants import create_tenant

    record = await create_tenant(bridge.pool, f"empty-{secrets.token_hex(4)}")
    code, lines = await doctor(bridge, record.slug, capsys)
    assert code == 1
    assert "not saved yet -- fix: save the Salesforce settings" in lines["Salesforce credentials"]
    assert "not saved yet -- fix: save the Copernica settings" in lines["Copernica credentials"]
    assert lines["Clock"].startswith("FAILED Clock: not checked")


async def test_an_unknown_tenant(bridge: RunningBridge, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert await run(bridge.pool, bridge.settings, "no-such-tenant") == 1
    assert "no tenant named 'no-such-tenant'" in capsys.readouterr().out


async def test_little_salesforce_api_headroom_warns_without_failing(
    ready: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    await ready.salesforce.admin("PATCH", "/limits", {"used": 114_000, "max": 115_000})
    code, lines = await doctor(ready, ready.tenant.slug, capsys)
    line = lines["Salesforce API headroom"]
    assert line.startswith("WARN ") and "of 115,000 daily API requests left" in line
    assert "fix: raise the org's API allocation" in line
    assert code == 0


def test_clock_offsets_warn_then_fail() -> None:
    def clock(*offsets: float) -> PlatformClock:
        watched = PlatformClock()
        watched.offsets.extend(offsets)
        return watched

    assert clock_finding(clock(-1, 0, 1), clock(0.4)).status == "ok"
    warned = clock_finding(clock(45), clock(0))
    assert warned.status == "WARN" and "Salesforce +45 s" in warned.detail
    failed = clock_finding(clock(0), clock(-400, -400, 3))
    assert failed.status == "FAILED" and "Copernica -400 s" in failed.detail
    assert "NTP" in failed.fix
    one_side = clock_finding(clock(), clock(2))
    assert one_side.status == "ok" and "Salesforce not checked" in one_side.detail
    assert clock_finding(clock(), clock()).status == "FAILED"


def test_every_error_category_has_a_fix() -> None:
    assert set(FIXES) == set(CATEGORIES)


async def store_salesforce(bridge: RunningBridge, **changes: object) -> None:
    vault = Vault(bridge.settings.secret_keys)
    async with bridge.pool.acquire() as conn:
        creds = await load_salesforce_credentials(conn, vault, bridge.tenant.id)
        await save_credentials(conn, vault, bridge.tenant.id, dataclasses.replace(creds, **changes))


async def test_the_legacy_soap_login_warns_with_its_retirement(
    ready: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    sf = ready.salesforce.settings
    await ready.salesforce.admin("POST", "/variants", {"soap_login": True})
    await store_salesforce(
        ready, method="soap", username=sf.username, password=sf.password,
        security_token=sf.security_token, consumer_key="", consumer_secret="",
    )
    code, lines = await doctor(ready, ready.tenant.slug, capsys)
    line = lines["Salesforce login method"]
    assert line.startswith("WARN ") and "retired in Summer '27" in line
    assert "fix: create an External Client App with the client credentials flow" in line
    assert lines["Salesforce credentials"].startswith("ok ")  # it still works, for now
    assert code == 0


async def test_a_login_url_that_is_not_a_my_domain_is_flagged(
    bridge: RunningBridge, capsys: pytest.CaptureFixture[str]
) -> None:
    await store_salesforce(bridge, login_url="https://login.salesforce.com")
    code, lines = await doctor(bridge, bridge.tenant.slug, capsys)
    line = lines["Salesforce login method"]
    assert line.startswith("FAILED ") and "not a My Domain URL" in line
    assert "fix: set the login URL on the config page to the org's My Domain URL" in line
    assert "not checked: needs Salesforce login method" in lines["Salesforce credentials"]
    assert code == 1
    await store_salesforce(bridge, login_url="http://127.0.0.1:9")  # never allowed
    _, lines = await doctor(bridge, bridge.tenant.slug, capsys)
    assert "is not a Salesforce address" in lines["Salesforce login method"]


def test_the_login_method_judged_without_a_request() -> None:
    settings = Settings()
    jwt = SalesforceCredentials(method="jwt", login_url="https://login.salesforce.com")
    assert login_method_finding(jwt, settings).status == "WARN"
    my_domain = dataclasses.replace(jwt, login_url="https://acme.my.salesforce.com")
    assert login_method_finding(my_domain, settings).status == "ok"
    soap = dataclasses.replace(jwt, method="soap")
    warned = login_method_finding(soap, settings)
    assert warned.status == "WARN" and "not a My Domain URL" in warned.detail
    client = SalesforceCredentials(login_url="https://acme--uat.sandbox.my.salesforce.com")
    assert login_method_finding(client, settings).status == "ok"
