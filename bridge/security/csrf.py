"""CSRF protection for every form: a hidden ``csrf_token`` field checked on every POST.

Logged in, the token is the one stored with the session. Before login (login and password-reset
forms) it is a double-submit token: a random value in the ``bridge_csrf`` cookie that the form
must repeat. Cross-site pages can neither read the cookie nor the session's token.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf_token"
COOKIE = "bridge_csrf"
HEADER = "X-CSRF-Token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; an empty or missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
