"""HTTP handlers of the two login routes: SOAP partner ``login()`` and the OAuth token endpoint."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from aiohttp import web

from . import auth
from .state import ORG, SandboxState

if TYPE_CHECKING:
    from .orgs import Orgs

SOAP_LAST_VERSION = 64.0  # login() is not available from API 65.0
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ROUTES = ("/services/Soap/u/", "/services/oauth2/token")


async def login_org(request: web.Request, orgs: Orgs) -> SandboxState:
    """The org a login names: by its SOAP username, else by its OAuth client (a JWT's issuer)."""
    if request.path.startswith("/services/Soap/"):
        parsed = auth.parse_soap_login((await request.read()).decode("utf-8", "replace"))
        return orgs.for_username(parsed[0] if parsed else "")
    client = await oauth_client(request)
    return orgs.for_client(client[0] if client else "")


async def oauth_client(request: web.Request) -> tuple[str, str] | None:
    """(client id, secret) of a token request, from HTTP Basic or the form (a JWT assertion's
    issuer names the client); None when the Basic header is malformed."""
    form = await request.post()
    if form.get("grant_type") == JWT_BEARER:
        return auth.jwt_issuer(str(form.get("assertion", ""))), ""
    basic = request.headers.get("Authorization", "")
    if basic.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(basic[6:].strip()).decode().partition(":")
        except ValueError:
            return None
        return client_id, secret
    return str(form.get("client_id", "")), str(form.get("client_secret", ""))


async def soap(request: web.Request) -> web.Response:
    """``POST /services/Soap/u/{version}``: a partner ``login`` envelope → loginResponse, when the
    org allows SOAP login (``soap_login``; off by default in new orgs) and up to API 64.0."""
    state = request[ORG]
    version = request.match_info["version"]
    if not state.settings.soap_login:
        return auth.soap_fault(
            "INVALID_OPERATION",
            "SOAP API login() is disabled by default in this org; use OAuth (an External Client "
            "App) instead",
        )
    try:
        too_new = float(version) > SOAP_LAST_VERSION
    except ValueError:
        too_new = False
    if too_new:
        return auth.soap_fault(
            "UNSUPPORTED_API_VERSION", f"login() is not available in API version {version}"
        )
    parsed = auth.parse_soap_login((await request.read()).decode("utf-8", "replace"))
    if parsed is None:
        return auth.soap_fault(
            "INVALID_REQUEST", "This sandbox only implements the partner login() call"
        )
    username, password = parsed
    if not auth.credentials_ok(state.settings, username, password):
        return auth.soap_fault(
            "INVALID_LOGIN", "Invalid username, password, security token; or user locked out."
        )
    session = state.sessions.issue()
    return auth.soap_login_reply(state.settings, session, auth.base_url(request), version)


async def token(request: web.Request) -> web.Response:
    """``POST /services/oauth2/token`` for the password, client_credentials, refresh_token and
    JWT bearer grants."""
    state = request[ORG]
    settings = state.settings
    form = await request.post()
    grant = str(form.get("grant_type", ""))
    base = auth.base_url(request)
    client = await oauth_client(request)
    if client is None:
        return auth.oauth_error("invalid_client", "invalid client credentials")
    client_id, client_secret = client

    def client_ok(secret_required: bool) -> bool:
        if client_id != settings.client_id:
            return False
        return not secret_required or client_secret == settings.client_secret

    if grant == "password":
        if not client_ok(True):
            return auth.oauth_error("invalid_client_id", "client identifier invalid")
        if not auth.credentials_ok(
            settings, str(form.get("username", "")), str(form.get("password", ""))
        ):
            return auth.oauth_error("invalid_grant", "authentication failure")
        session = state.sessions.issue()
        return web.json_response(auth.token_reply(settings, session, base, scope=None, signed=True))
    if grant == "client_credentials":
        if not client_ok(True):
            return auth.oauth_error("invalid_client", "invalid client credentials")
        session = state.sessions.issue()
        return web.json_response(
            auth.token_reply(settings, session, base, scope="api", signed=True)
        )
    if grant == "refresh_token":
        if not client_ok(bool(client_secret)):
            return auth.oauth_error("invalid_client_id", "client identifier invalid")
        if str(form.get("refresh_token", "")) != settings.refresh_token:
            return auth.oauth_error("invalid_grant", "expired access/refresh token")
        session = state.sessions.issue()
        return web.json_response(
            auth.token_reply(settings, session, base, scope="refresh_token api", signed=True)
        )
    if grant == JWT_BEARER:
        claims = auth.jwt_claims(settings, str(form.get("assertion", "")), base)
        if isinstance(claims, str):
            error = "invalid_client" if "client" in claims else "invalid_grant"
            return auth.oauth_error(error, claims)
        session = state.sessions.issue()
        return web.json_response(
            auth.token_reply(settings, session, base, scope="api", signed=False)
        )
    return auth.oauth_error("unsupported_grant_type", "grant type not supported")
