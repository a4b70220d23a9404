"""Copernica credentials: the v3 ``access_token`` and the v4 JWT it is exchanged for.

v4: ``POST https://authenticate.copernica.com`` with ``access_token=<API token>`` answers the JWT
(24 h). The JWT is cached and renewed ``renew_margin`` seconds before the ``exp`` in its payload
(or 24 h after it was fetched when the payload cannot be read).

The authentication URL is Copernica's own unless the operator names another one
(``COPERNICA_AUTH_URL``, e.g. for the emulators): the API host a tenant may set on the config page
never decides where its API token goes.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from bridge.copernica.errors import CopernicaError, error_from_reply

DEFAULT_AUTH_URL = "https://authenticate.copernica.com"
JWT_LIFETIME = 24 * 3600.0


@dataclass(frozen=True)
class Jwt:
    token: str
    expires: float  # Unix seconds


def jwt_from_reply(text: str, now: float) -> Jwt:
    """The JWT from the authenticate reply: a bare token, a JSON string or a JSON object."""
    token = text.strip()
    if token.startswith(("{", '"')):
        try:
            parsed = json.loads(token)
        except ValueError:
            parsed = token
        if isinstance(parsed, dict):
            parsed = parsed.get("token") or parsed.get("access_token") or parsed.get("jwt") or ""
        token = str(parsed).strip()
    if token.count(".") != 2:
        raise CopernicaError("authenticate: the reply is not a JWT", category="auth")
    return Jwt(token, expiry_of(token) or now + JWT_LIFETIME)


def expiry_of(token: str) -> float | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class JwtSource:
    """Hands out a valid JWT, fetching a new one only when needed (one fetch at a time)."""

    def __init__(
        self,
        api_token: str,
        auth_url: str,
        *,
        renew_margin: float,
        clock: Callable[[], float],
    ) -> None:
        self.api_token = api_token
        self.auth_url = auth_url
        self.renew_margin = renew_margin
        self.clock = clock
        self.fetches = 0
        self._jwt: Jwt | None = None
        self._lock = asyncio.Lock()

    def forget(self, token: str) -> None:
        """The server refused ``token``: the next call fetches a new one."""
        if self._jwt is not None and self._jwt.token == token:
            self._jwt = None

    async def token(self, session: aiohttp.ClientSession) -> str:
        async with self._lock:
            jwt = self._jwt
            if jwt is None or self.clock() >= jwt.expires - self.renew_margin:
                jwt = self._jwt = await self._fetch(session)
            return jwt.token

    async def _fetch(self, session: aiohttp.ClientSession) -> Jwt:
        self.fetches += 1
        async with session.post(
            self.auth_url, data={"access_token": self.api_token}, allow_redirects=False
        ) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise error_from_reply(
                    reply.status,
                    body,
                    reply.headers.get("Content-Type", ""),
                    reply.headers.get("Retry-After"),
                    "authenticate",
                )
        return jwt_from_reply(body.decode("utf-8", "replace"), self.clock())
