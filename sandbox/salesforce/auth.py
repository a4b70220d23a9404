"""Logins of the sandbox org: SOAP partner ``login()``, the OAuth token endpoint, and sessions.

Choices where Salesforce's documentation is silent:
- ``instance_url`` / ``serverUrl`` are built from the request's own scheme and host, so the app
  works on any host and port (``https://`` when a proxy sends ``X-Forwarded-Proto: https``).
- Every grant answers a fresh access token; the refresh_token grant accepts the configured
  ``SandboxSettings.refresh_token``; no grant issues a refresh token (password, JWT and client
  credentials flows do not on Salesforce either).
- JWT bearer: RS256 only; ``iss`` must be the client id, ``sub`` the username, ``aud`` one of
  login/test.salesforce.com or the sandbox's own URL, ``exp`` in the future; the signature is
  checked against ``SandboxSettings.jwt_certificate_pem`` (a certificate or a public key).
- A session whose password has expired may only log in: REST answers 403
  ``INVALID_OPERATION_WITH_EXPIRED_PASSWORD``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape, unescape

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .settings import SandboxSettings

SOAP_NS = "urn:partner.soap.sforce.com"


@dataclass
class Session:
    token: str
    user_id: str
    expires_at: float  # monotonic
    password_expired: bool = False


class Sessions:
    """Access tokens with an inactivity timeout; every use resets the timer."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.by_token: dict[str, Session] = {}

    def issue(self) -> Session:
        org = self.settings.organization_id[:15]
        token = f"{org}!AQ0AQ{secrets.token_urlsafe(48)}"
        session = Session(
            token=token,
            user_id=self.settings.user_id,
            expires_at=time.monotonic() + self.settings.session_seconds,
            password_expired=self.settings.password_expired,
        )
        self.by_token[token] = session
        return session

    def use(self, token: str | None) -> Session | None:
        """The live session for ``token`` (timer reset), or None when unknown or expired."""
        session = self.by_token.get(token or "")
        if session is None:
            return None
        if time.monotonic() > session.expires_at:
            del self.by_token[session.token]
            return None
        session.expires_at = time.monotonic() + self.settings.session_seconds
        return session

    def expire_all(self) -> int:
        count = len(self.by_token)
        self.by_token.clear()
        return count


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer x`` or ``OAuth x`` (jsforce's CometD scheme)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


def base_url(request: web.Request) -> str:
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme)
    return f"{scheme}://{request.host}"


def credentials_ok(settings: SandboxSettings, username: str, password: str) -> bool:
    return hmac.compare_digest(username.lower(), settings.username.lower()) and (
        hmac.compare_digest(password, settings.password + settings.security_token)
    )


# --- SOAP ------------------------------------------------------------------------------


def _element(xml: str, name: str) -> str | None:
    """Text of the first ``<name>`` / ``<prefix:name>`` element (SOAP prefixes vary by client)."""
    match = re.search(rf"<(?:[\w-]+:)?{name}(?:\s[^>]*)?>(.*?)</(?:[\w-]+:)?{name}>", xml, re.S)
    if not match:
        return None
    return unescape(match.group(1), {"&quot;": '"', "&apos;": "'"})


def soap_fault(code: str, message: str, status: int = 500) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return web.Response(status=status, body=body.encode(), content_type="text/xml", charset="UTF-8")


def soap_login_reply(
    settings: SandboxSettings, session: Session, base: str, version: str
) -> web.Response:
    org15 = settings.organization_id[:15]
    user_info = {
        "accessibilityMode": "false",
        "chatterExternal": "false",
        "currencySymbol": "$",
        "orgAttachmentFileSizeLimit": "5242880",
        "orgDefaultCurrencyIsoCode": "USD",
        "orgDefaultCurrencyLocale": "en_US",
        "orgDisallowHtmlAttachments": "false",
        "orgHasPersonAccounts": "false",
        "organizationId": settings.organization_id,
        "organizationMultiCurrency": "false",
        "organizationName": escape(settings.organization_name),
        "profileId": "00e5g000001SBOXAAK",
        "roleId": None,
        "sessionSecondsValid": str(int(settings.session_seconds)),
        "userDefaultCurrencyIsoCode": None,
        "userEmail": escape(settings.username),
        "userFullName": "Sandbox Admin",
        "userId": settings.user_id,
        "userLanguage": "en_US",
        "userLocale": "en_US",
        "userName": escape(settings.username),
        "userTimeZone": "Europe/Amsterdam",
        "userType": "Standard",
        "userUiSkin": "Theme3",
    }
    info = "".join(
        f'<{key} xsi:nil="true"/>' if value is None else f"<{key}>{value}</{key}>"
        for key, value in user_info.items()
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns="{SOAP_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl>"
        f"<passwordExpired>{str(session.password_expired).lower()}</passwordExpired>"
        "<sandbox>true</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl>"
        f"<sessionId>{session.token}</sessionId><userId>{settings.user_id}</userId>"
        f"<userInfo>{info}</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return web.Response(body=body.encode(), content_type="text/xml", charset="UTF-8")


def parse_soap_login(xml: str) -> tuple[str, str] | None:
    """(username, password) of a partner ``login`` envelope, None when it is not one."""
    if not re.search(r"<(?:[\w-]+:)?login[\s>]", xml):
        return None
    username = _element(xml, "username")
    password = _element(xml, "password")
    if username is None or password is None:
        return None
    return username.strip(), password


# --- OAuth -----------------------------------------------------------------------------


def token_reply(
    settings: SandboxSettings, session: Session, base: str, *, scope: str | None, signed: bool
) -> dict[str, str]:
    identity = f"{base}/id/{settings.organization_id}/{settings.user_id}"
    reply = {
        "access_token": session.token,
        "instance_url": base,
        "id": identity,
        "token_type": "Bearer",
    }
    if signed:
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(
            settings.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        reply["issued_at"] = issued_at
        reply["signature"] = base64.b64encode(digest).decode()
    if scope:
        reply["scope"] = scope
    return reply


def oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description},
        status=status,
        content_type="application/json",
    )


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_issuer(assertion: str) -> str:
    """The unverified ``iss`` of a JWT assertion: the client id that names the org to verify it."""
    try:
        claims = json.loads(_b64url(assertion.split(".")[1]))
    except (IndexError, ValueError):
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else ""


def jwt_claims(settings: SandboxSettings, assertion: str, base: str) -> dict | str:
    """The verified claims of an RS256 JWT assertion, or the error_description to answer."""
    if not settings.jwt_certificate_pem:
        return "invalid assertion"
    try:
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(claims_b64))
        signature = _b64url(signature_b64)
    except (ValueError, json.JSONDecodeError):
        return "invalid assertion"
    if header.get("alg") != "RS256":
        return "invalid assertion"
    pem = settings.jwt_certificate_pem.encode()
    try:
        if b"CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            return "invalid assertion"
        key.verify(
            signature,
            f"{header_b64}.{claims_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return "invalid assertion"
    audiences = {"https://login.salesforce.com", "https://test.salesforce.com", base}
    if claims.get("iss") != settings.client_id:
        return "invalid client credentials"
    if str(claims.get("sub", "")).lower() != settings.username.lower():
        return "user hasn't approved this consumer"
    aud = claims.get("aud")
    if (aud if isinstance(aud, str) else "").rstrip("/") not in audiences:
        return "audience is invalid"
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time():
        return "expired authorization code"
    return claims
