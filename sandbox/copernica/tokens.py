"""Credentials of the Copernica sandbox: the API token and the v4 JWTs it is exchanged for.

JWTs are HS256-signed with a per-process secret and carry ``iat``, ``exp`` (the standard claim
names; Copernica does not document its own) and a generation number, so the control API can
expire every JWT issued so far at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field


def jwt_subject(token: str) -> str:
    """The unverified ``sub`` of a JWT (``""`` when it has none)."""
    try:
        claims = json.loads(_unb64(token.split(".")[1]))
    except (IndexError, ValueError):
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenIssuer:
    api_token: str
    lifetime: float  # seconds a JWT stays valid
    subject: str = "account-1"  # names the account, so a v4 call finds the secret to check
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    generation: int = 0

    def issue(self, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "iss": "copernica-sandbox",
            "sub": self.subject,
            "iat": issued,
            "exp": issued + int(self.lifetime),
            "gen": self.generation,
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(
            hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        return f"{header}.{payload}.{signature}"

    def valid_jwt(self, token: str, now: float | None = None) -> bool:
        parts = token.split(".")
        if len(parts) != 3:
            return False
        header, payload, signature = parts
        expected = _b64(
            hmac.new(self.secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        if not hmac.compare_digest(expected, signature):
            return False
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            return False
        moment = now if now is not None else time.time()
        return claims.get("gen") == self.generation and moment < float(claims.get("exp", 0))

    def valid_api_token(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.api_token.encode())

    def expire_all(self) -> None:
        """Every JWT issued so far stops working; the API token itself stays valid."""
        self.generation += 1
