"""Where the platform clients may connect: the outbound host policy.

A tenant administrator types the Salesforce login URL and the Copernica host on the config page.
Pointed anywhere else, the bridge would send the stored password, token or JWT there, or let the
page probe the internal network. So every URL a platform client calls must be ``https://`` under
the platform's own domains (Salesforce: ``salesforce.com`` — My Domain, login, test and instance
hosts; Copernica: ``copernica.com``), or match a pattern the operator lists in
``ALLOWED_API_HOSTS`` (plain ``http://`` is accepted there: the demo and the tests allow the
emulators this way).

``HostPolicy.guard`` is an aiohttp client middleware: it sees every request of a client's
session, a redirect's included, and refuses a URL outside the policy before a connection is
opened. A refused host therefore receives nothing, and the refusal reads the same whatever is
(or is not) listening there.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import aiohttp

from bridge.config import Settings
from bridge.errors import ApiError

SALESFORCE_DOMAINS = ("login.salesforce.com", "test.salesforce.com", "*.salesforce.com")
COPERNICA_DOMAINS = ("copernica.com", "*.copernica.com")
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class HostRefused(ApiError):
    """A URL outside the policy: nothing was sent. The message is meant for the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message, category="auth")


@dataclass(frozen=True)
class Address:
    """The parts of a URL the policy decides on."""

    scheme: str
    host: str  # lower-case; IPv6 without brackets
    port: int | None  # as written; None when the URL names none

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")


def address_of(url: str) -> Address | None:
    """Scheme, host and port of an ``http(s)://`` URL; None for anything else (other schemes,
    user names or passwords in the URL, hosts that are neither a DNS name nor an IP address)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        return None
    if not _NAME.fullmatch(host):
        try:
            host = str(ip_address(host))
        except ValueError:
            return None
    return Address(scheme, host, port)


def _pattern_parts(pattern: str) -> tuple[str, str | None]:
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else None
    host, colon, port = pattern.partition(":")
    return host, port if colon else None


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    if ":" in pattern or not _NAME.fullmatch(pattern):
        try:
            return str(ip_address(pattern)) == host
        except ValueError:
            return False
    return pattern == host


@dataclass(frozen=True)
class HostPolicy:
    """The hosts one platform's client may call: its own ``domains`` over https on the default
    port, and the operator's ``extra`` patterns (``host``, ``*.domain``, ``[v6]``, each with an
    optional ``:port`` or ``:*``; without a port only the scheme's default port) over either
    scheme."""

    platform: str  # "Salesforce" or "Copernica", for messages
    domains: tuple[str, ...]
    extra: tuple[str, ...] = ()

    def own_domain(self, url: str) -> bool:
        """Under the platform's own domains, over https on the default port."""
        where = address_of(url)
        return (
            where is not None
            and where.scheme == "https"
            and where.effective_port == 443
            and any(_host_matches(d, where.host) for d in self.domains)
        )

    def operator_allows(self, url: str) -> bool:
        """Matched by a pattern of ``ALLOWED_API_HOSTS``."""
        where = address_of(url)
        if where is None:
            return False
        for pattern in self.extra:
            host, port = _pattern_parts(pattern)
            if not _host_matches(host, where.host):
                continue
            if port == "*" or (port is None and where.port in (None, _DEFAULT_PORTS[where.scheme])):
                return True
            if port is not None and port.isdigit() and int(port) == where.effective_port:
                return True
        return False

    def allows(self, url: str) -> bool:
        return self.own_domain(url) or self.operator_allows(url)

    def refusal(self, url: str) -> str:
        """Why ``url`` is refused, in words for the config page (no network detail)."""
        domain = self.domains[-1].removeprefix("*.")
        where = address_of(url)
        shown = where.origin if where is not None else "that address"
        return (
            f"{shown} is not a {self.platform} address: the bridge only connects to https:// "
            f"addresses under {domain}."
        )

    def check(self, url: str) -> None:
        """Raise ``HostRefused`` unless the policy allows ``url``."""
        if not _allowed(self, url):
            raise HostRefused(self.refusal(url))

    async def guard(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Client middleware: refuse a request to a host outside the policy before it is sent.
        The policy reads only scheme, user, host and port, so it is asked once per origin."""
        url = request.url
        self.check(f"{url.scheme}://{url.raw_authority}")
        return await handler(request)


@functools.lru_cache(maxsize=1024)
def _allowed(policy: HostPolicy, url: str) -> bool:
    """``policy.allows``, remembered: clients ask it about the same few URLs at every call."""
    return policy.allows(url)


def salesforce_hosts(settings: Settings) -> HostPolicy:
    return HostPolicy("Salesforce", SALESFORCE_DOMAINS, settings.allowed_api_hosts)


def copernica_hosts(settings: Settings) -> HostPolicy:
    return HostPolicy("Copernica", COPERNICA_DOMAINS, settings.allowed_api_hosts)
