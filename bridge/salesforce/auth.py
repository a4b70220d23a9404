"""Getting a Salesforce session: an OAuth grant, or the legacy SOAP partner ``login()``.

Each authenticator turns credentials into a ``SalesforceSession`` (access token + instance URL);
the REST client calls it again, once, when a call answers ``INVALID_SESSION_ID``.

The default is OAuth 2.0 client credentials through an External Client App, sent to the org's My
Domain URL (Salesforce refuses that flow at login.salesforce.com). The JWT bearer flow is the
other OAuth choice. SOAP ``login()`` is legacy: off by default in new orgs, not available from
API 65.0 and retired for every version in Summer '27 (``SOAP_RETIREMENT``). No login follows a
redirect: the token endpoint answers in place, and a redirect could carry the secret elsewhere.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, unescape

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge.vocabulary import SALESFORCE_API_VERSION, Category

from .errors import SalesforceError, categorise

PRODUCTION_LOGIN_URL = "https://login.salesforce.com"
SANDBOX_LOGIN_URL = "https://test.salesforce.com"
SOAP_RETIREMENT = "Summer '27"
SOAP_NOTICE = (
    "SOAP login() is legacy: Salesforce switches it off by default in new orgs, offers it only "
    f"up to API 64.0 and retires it for every API version in {SOAP_RETIREMENT}. Switch to OAuth "
    "client credentials before then."
)
# <name>.my.salesforce.com, and the My Domains of sandboxes, Developer Edition, scratch orgs …
_MY_DOMAIN = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
    r"(?:\.(?:sandbox|develop|scratch|demo|patch|trailblaze))?\.my\.salesforce\.com"
)


def my_domain_login_url(domain: str) -> str:
    """The login URL of a My Domain (``acme`` → ``https://acme.my.salesforce.com``)."""
    return f"https://{domain}.my.salesforce.com"


def is_my_domain(url: str) -> bool:
    """``https://<name>.my.salesforce.com`` (or a sandbox's ``…sandbox.my.salesforce.com``), no
    path, no other port."""
    parts = urlsplit(url.strip().rstrip("/"))
    try:
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and not parts.path
        and not parts.query
        and "@" not in parts.netloc
        and _MY_DOMAIN.fullmatch((parts.hostname or "").lower()) is not None
    )


def is_sandbox_login(url: str) -> bool:
    """A login URL of a Salesforce sandbox: test.salesforce.com or a sandbox My Domain."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com")


@dataclass(frozen=True)
class SalesforceSession:
    access_token: str
    instance_url: str  # scheme://host[:port], no path
    user_id: str | None = None
    organization_id: str | None = None


class Authenticator(Protocol):
    """Something that can log in; called again when the session has expired."""

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession: ...


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _network_error(error: BaseException) -> SalesforceError:
    return SalesforceError(f"login failed: {error!r}", category="transient")


# --- SOAP -------------------------------------------------------------------------------


def _element(xml: str, name: str) -> str | None:
    match = re.search(rf"<(?:[\w-]+:)?{name}(?:\s[^>]*)?>(.*?)</(?:[\w-]+:)?{name}>", xml, re.S)
    return unescape(match.group(1)) if match else None


@dataclass(frozen=True)
class SoapLogin:
    """Partner ``login()`` with username and password + security token (legacy: see
    ``SOAP_NOTICE``)."""

    username: str
    password: str
    security_token: str = ""
    login_url: str = PRODUCTION_LOGIN_URL
    api_version: str = SALESFORCE_API_VERSION

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession:
        envelope = (
            '<?xml version="1.0" encoding="utf-8" ?>'
            '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">'
            '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
            f"<n1:username>{escape(self.username)}</n1:username>"
            f"<n1:password>{escape(self.password + self.security_token)}</n1:password>"
            "</n1:login></env:Body></env:Envelope>"
        )
        url = f"{self.login_url.rstrip('/')}/services/Soap/u/{self.api_version}"
        headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"}
        try:
            async with http.post(
                url, data=envelope.encode(), headers=headers, allow_redirects=False
            ) as response:
                status, xml = response.status, await response.text()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise _network_error(error) from error
        if status != 200:
            code = _element(xml, "exceptionCode") or _element(xml, "faultcode") or f"HTTP{status}"
            code = code.removeprefix("sf:")
            message = _element(xml, "exceptionMessage") or _element(xml, "faultstring") or xml
            category = "transient" if status >= 502 else categorise(401, code)
            raise SalesforceError(message, category=category, status=status, code=code)
        if (_element(xml, "passwordExpired") or "").strip() == "true":
            raise SalesforceError(
                "the password of the integration user has expired",
                category="auth",
                status=status,
                code="PASSWORD_EXPIRED",
            )
        session_id, server_url = _element(xml, "sessionId"), _element(xml, "serverUrl")
        if not session_id or not server_url:
            raise SalesforceError("login reply without sessionId/serverUrl", category="transient")
        return SalesforceSession(
            access_token=session_id,
            instance_url=_origin(server_url),
            user_id=_element(xml, "userId"),
            organization_id=_element(xml, "organizationId"),
        )


# --- OAuth ------------------------------------------------------------------------------


async def _token_request(
    http: aiohttp.ClientSession,
    login_url: str,
    form: dict[str, str],
    headers: dict[str, str] | None = None,
) -> SalesforceSession:
    url = f"{login_url.rstrip('/')}/services/oauth2/token"
    try:
        async with http.post(
            url, data=form, headers=headers or {}, allow_redirects=False
        ) as response:
            status = response.status
            text = await response.text()
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _network_error(error) from error
    try:
        body: Any = json.loads(text)
    except json.JSONDecodeError:
        body = {}
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        code = body.get("error") if isinstance(body, dict) else None
        message = (body.get("error_description") if isinstance(body, dict) else None) or text
        category: Category = "transient" if status >= 500 else "auth"
        raise SalesforceError(f"OAuth: {message}", category=category, status=status, code=code)
    user_id = org_id = None
    identity = str(body.get("id", ""))
    if identity.count("/") >= 2:
        org_id, user_id = identity.rstrip("/").split("/")[-2:]
    return SalesforceSession(
        access_token=body["access_token"],
        instance_url=_origin(body["instance_url"]),
        user_id=user_id,
        organization_id=org_id,
    )


@dataclass(frozen=True)
class PasswordLogin:
    """OAuth username-password flow (discouraged by Salesforce; kept for old set-ups)."""

    client_id: str
    client_secret: str
    username: str
    password: str
    security_token: str = ""
    login_url: str = PRODUCTION_LOGIN_URL

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession:
        form = {
            "grant_type": "password",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "password": self.password + self.security_token,
        }
        return await _token_request(http, self.login_url, form)


@dataclass(frozen=True)
class ClientCredentialsLogin:
    """OAuth client credentials flow (an External Client App whose "Run As" user is the
    integration user); must be sent to the org's My Domain URL."""

    client_id: str
    client_secret: str
    login_url: str

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession:
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        return await _token_request(
            http,
            self.login_url,
            {"grant_type": "client_credentials"},
            {"Authorization": f"Basic {basic}"},
        )


@dataclass(frozen=True)
class RefreshTokenLogin:
    """OAuth refresh-token grant with a refresh token obtained once by an administrator."""

    client_id: str
    refresh_token: str
    client_secret: str | None = None
    login_url: str = PRODUCTION_LOGIN_URL

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": self.refresh_token,
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        return await _token_request(http, self.login_url, form)


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key of the JWT bearer flow (``SalesforceError`` when it is not one)."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError):
        raise SalesforceError(
            "the private key is not an unencrypted PEM private key", category="auth"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SalesforceError("the JWT key must be an RSA private key", category="auth")
    return key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class JwtBearerLogin:
    """OAuth JWT bearer flow: an RS256 assertion signed with the private key whose certificate
    is on the External Client App.

    ``audience`` defaults to login.salesforce.com, or test.salesforce.com for a sandbox's login
    URL (test.salesforce.com or a ``….sandbox.my.salesforce.com`` My Domain).
    """

    client_id: str
    username: str
    private_key_pem: str
    login_url: str = PRODUCTION_LOGIN_URL
    audience: str | None = None
    lifetime: int = 180

    def assertion(self, now: float | None = None) -> str:
        audience = self.audience or (
            SANDBOX_LOGIN_URL if is_sandbox_login(self.login_url) else PRODUCTION_LOGIN_URL
        )
        claims = {
            "iss": self.client_id,
            "sub": self.username,
            "aud": audience,
            "exp": int((now or time.time()) + self.lifetime),
        }
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps(claims).encode())
        key = load_private_key(self.private_key_pem)
        signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64url(signature)}"

    async def login(self, http: aiohttp.ClientSession) -> SalesforceSession:
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": self.assertion(),
        }
        return await _token_request(http, self.login_url, form)
