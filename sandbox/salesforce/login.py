"""HTTP handlers of the two login routes: SOAP partner ``login()`` and the OAuth token endpoint."""

from __future__ import annotations

import base64

from aiohttp import web

from . import auth
from .orgs import ORGS

SOAP_LAST_VERSION = 64.0  # login() is not available from API 65.0
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def soap(request: web.Request) -> web.Response:
    """``POST /services/Soap/u/{version}``: a partner ``login`` envelope → loginResponse, when the
    org allows SOAP login (``soap_login``; off by default in new orgs) and up to API 64.0."""
    version = request.match_info["version"]
    parsed = auth.parse_soap_login((await request.read()).decode("utf-8", "replace"))
    state = request.app[ORGS].for_username(parsed[0] if parsed else "")
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
    form = await request.post()
    grant = str(form.get("grant_type", ""))
    base = auth.base_url(request)
    client_id = str(form.get("client_id", ""))
    client_secret = str(form.get("client_secret", ""))
    basic = request.headers.get("Authorization", "")
    if basic.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(basic[6:].strip()).decode()
            client_id, _, client_secret = decoded.partition(":")
        except ValueError:
            return auth.oauth_error("invalid_client", "invalid client credentials")
    if grant == JWT_BEARER:
        client_id = auth.jwt_issuer(str(form.get("assertion", "")))
    state = request.app[ORGS].for_client(client_id)  # the connected app belongs to one org
    settings = state.settings

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
