"""Where the platform clients may connect (``bridge.hosts``), and how the config page reads the
login URL and the Copernica host it is given."""

from __future__ import annotations

import pytest

from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.hosts import HostRefused, copernica_hosts, salesforce_hosts
from bridge.salesforce.auth import is_my_domain
from bridge.web.config_page import MY_DOMAIN_NEEDED, copernica_host, salesforce_login_url

NOTHING_EXTRA = Settings()
EMULATORS = Settings.from_env({"ALLOWED_API_HOSTS": "localhost:8801, 127.0.0.1:*, *.proxy.example"})


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.my.salesforce.com",
        "https://acme--uat.sandbox.my.salesforce.com",
        "https://login.salesforce.com/services/oauth2/token",
        "https://test.salesforce.com",
        "https://na42.salesforce.com/services/data/v59.0/limits",
    ],
)
def test_salesforce_hosts_are_allowed_over_https(url: str) -> None:
    assert salesforce_hosts(NOTHING_EXTRA).allows(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://acme.my.salesforce.com",  # plain http, even on Salesforce's domain
        "https://acme.my.salesforce.com:8443",
        "https://salesforce.com.evil.example",
        "https://evilsalesforce.com",
        "https://login.salesforce.com@evil.example",
        "https://127.0.0.1",
        "http://localhost:8801",  # not allowed unless the operator says so
        "http://169.254.169.254/latest/meta-data",
        "ftp://login.salesforce.com",
        "https://api.copernica.com",  # Copernica's host is not a Salesforce host
        "not a url",
    ],
)
def test_everything_else_is_refused(url: str) -> None:
    hosts = salesforce_hosts(NOTHING_EXTRA)
    assert not hosts.allows(url)
    with pytest.raises(HostRefused) as refused:
        hosts.check(url)
    assert "under salesforce.com" in refused.value.message
    assert refused.value.category == "auth"


def test_copernica_hosts() -> None:
    hosts = copernica_hosts(NOTHING_EXTRA)
    assert hosts.allows("https://api.copernica.com/v4/identity")
    assert hosts.allows("https://authenticate.copernica.com")
    assert hosts.allows("https://rest.copernica.com")
    assert not hosts.allows("https://copernica.com.evil.example")
    assert not hosts.allows("http://api.copernica.com")
    assert not hosts.allows("https://acme.my.salesforce.com")


def test_the_operator_may_allow_more_hosts() -> None:
    hosts = salesforce_hosts(EMULATORS)
    assert hosts.allows("http://localhost:8801")
    assert not hosts.allows("http://localhost:8802")  # another port
    assert not hosts.allows("http://localhost")  # the default port is another port too
    assert hosts.allows("http://127.0.0.1:1234") and hosts.allows("https://127.0.0.1")
    assert hosts.allows("https://a.proxy.example") and not hosts.allows("https://proxy.example")
    assert not hosts.allows("http://127.0.0.2:1234")
    assert hosts.operator_allows("http://localhost:8801")
    assert not hosts.operator_allows("https://acme.my.salesforce.com")


@pytest.mark.parametrize("value", ["*", "http://localhost", "local host", "a:b:c", "x:99999999"])
def test_a_bad_pattern_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="ALLOWED_API_HOSTS"):
        Settings.from_env({"ALLOWED_API_HOSTS": value})


def test_my_domain_urls() -> None:
    assert is_my_domain("https://acme.my.salesforce.com")
    assert is_my_domain("https://acme--uat.sandbox.my.salesforce.com/")
    assert is_my_domain("https://acme-dev-ed.develop.my.salesforce.com")
    assert not is_my_domain("https://login.salesforce.com")
    assert not is_my_domain("https://test.salesforce.com")
    assert not is_my_domain("http://acme.my.salesforce.com")
    assert not is_my_domain("https://acme.my.salesforce.com/services")
    assert not is_my_domain("https://a.b.my.salesforce.com")


def test_the_login_url_the_page_accepts() -> None:
    hosts = salesforce_hosts(NOTHING_EXTRA)
    assert salesforce_login_url("acme.my.salesforce.com/", "client_credentials", hosts) == (
        "https://acme.my.salesforce.com"
    )
    assert salesforce_login_url("", "soap", hosts) == "https://login.salesforce.com"
    assert salesforce_login_url("https://test.salesforce.com", "jwt", hosts)
    for refused, method in (
        ("", "client_credentials"),
        ("https://login.salesforce.com", "client_credentials"),
    ):
        with pytest.raises(ValueError, match="My Domain"):
            salesforce_login_url(refused, method, hosts)  # type: ignore[arg-type]
    assert MY_DOMAIN_NEEDED
    for refused in ("http://acme.my.salesforce.com", "https://10.0.0.1:22", "https://evil.example"):
        with pytest.raises(ValueError, match="not a Salesforce address"):
            salesforce_login_url(refused, "soap", hosts)
    with pytest.raises(ValueError, match="login URL only"):
        salesforce_login_url("https://acme.my.salesforce.com/services?x=1", "jwt", hosts)
    emulator = salesforce_hosts(EMULATORS)
    assert salesforce_login_url("http://localhost:8801", "client_credentials", emulator) == (
        "http://localhost:8801"
    )


def test_the_copernica_host_the_page_accepts() -> None:
    hosts = copernica_hosts(NOTHING_EXTRA)
    assert copernica_host("", hosts) == ""
    assert copernica_host("rest.copernica.com", hosts) == "https://rest.copernica.com"
    assert copernica_host("https://api.copernica.com/", hosts) == "https://api.copernica.com"
    with pytest.raises(ValueError, match="not a Copernica address"):
        copernica_host("http://127.0.0.1:5432", hosts)
    with pytest.raises(ValueError, match="host only"):
        copernica_host("https://api.copernica.com/v4", hosts)
    assert copernica_host("http://127.0.0.1:8802", copernica_hosts(EMULATORS)) == (
        "http://127.0.0.1:8802"
    )


def test_the_copernica_authentication_url_is_the_operators() -> None:
    assert Settings.from_env({}).copernica_auth_url is None  # Copernica's own service
    named = Settings.from_env({"COPERNICA_AUTH_URL": "http://127.0.0.1:8802/authenticate/"})
    assert named.copernica_auth_url == "http://127.0.0.1:8802/authenticate"
    with pytest.raises(ConfigError, match="COPERNICA_AUTH_URL"):
        Settings.from_env({"COPERNICA_AUTH_URL": "authenticate.example"})
