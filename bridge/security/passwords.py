"""Password hashing with scrypt (memory-hard, in the standard library's OpenSSL binding)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# OWASP's minimum for scrypt: n=2**17, r=8, p=1 (128 MiB per hash). Hashes made with weaker
# parameters are replaced at the next successful login (``needs_rehash``).
_N, _R, _P = 2**17, 8, 1
_MAXMEM = 256 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def unmatchable_hash() -> str:
    """A hash with today's parameters that no password matches (its digest is random bytes):
    verifying against it costs what verifying a real one costs, and making it costs nothing."""
    return f"scrypt${_N}${_R}${_P}${_b64(os.urandom(16))}${_b64(os.urandom(64))}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=_MAXMEM,
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with weaker parameters than today's."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return True
    try:
        n, r, p = (int(x) for x in parts[1:4])
    except ValueError:
        return True
    return n < _N or r < _R or p < _P
