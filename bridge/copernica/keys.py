"""Where the public key that checks a Copernica webhook signature comes from.

A key lookup is an async callable ``(key_id) -> RSAPublicKey | None``. Copernica publishes its
keys in DNS: ``keyId`` is a name like ``<selector>._domainkey.copernica.com`` whose TXT record holds
a DKIM-style ``v=DKIM1; p=<base64 key>``; keys rotate monthly, so look them up, with a short cache.

- ``SandboxKeys``: the key the Copernica sandbox publishes at ``/_sandbox/webhook-key`` (demo, tests).
- ``DnsTxtKeys``: production. It takes the TXT resolver as a parameter (``resolve_txt(name) ->
  list of TXT strings``), so this module does no network I/O of its own and tests can stand in for
  DNS; ``bridge.app.webhook_keys`` plugs in dnspython's ``dns.asyncresolver.resolve(name, "TXT")``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey
KeyLookup = Callable[[str], Awaitable[PublicKey | None]]
TxtResolver = Callable[[str], Awaitable[Sequence[str]]]


def public_key_from_pem(pem: bytes) -> PublicKey | None:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


def public_key_from_dkim(record: str) -> PublicKey | None:
    """The key in a DKIM TXT record (``v=DKIM1; k=rsa; p=<base64 DER>``); None when unusable."""
    tags = {}
    for part in record.split(";"):
        name, _, value = part.partition("=")
        tags[name.strip().lower()] = "".join(value.split())
    if tags.get("k", "rsa").lower() != "rsa" or not tags.get("p"):
        return None
    try:
        key = serialization.load_der_public_key(base64.b64decode(tags["p"]))
    except (ValueError, binascii.Error):
        return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


class _Cache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._keys: dict[str, tuple[float, PublicKey]] = {}

    def get(self, key_id: str) -> PublicKey | None:
        found = self._keys.get(key_id)
        if found is None or time.monotonic() > found[0]:
            return None
        return found[1]

    def put(self, key_id: str, key: PublicKey) -> None:
        self._keys[key_id] = (time.monotonic() + self.ttl, key)


class SandboxKeys:
    """The Copernica sandbox's published key, fetched over HTTP and cached for ``ttl`` seconds."""

    def __init__(self, sandbox_url: str, *, ttl: float = 300.0, timeout: float = 5.0) -> None:
        self.url = sandbox_url.rstrip("/") + "/_sandbox/webhook-key"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache = _Cache(ttl)

    async def __call__(self, key_id: str) -> PublicKey | None:
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.get(self.url) as reply,
            ):
                if reply.status != 200 or reply.headers.get("X-Key-Id") != key_id:
                    return None
                key = public_key_from_pem(await reply.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("copernica sandbox key fetch failed: %s", exc)
            return None
        if key is not None:
            self._cache.put(key_id, key)
        return key


class DnsTxtKeys:
    """Copernica's production keys: the DKIM TXT record at the ``keyId`` name, cached."""

    def __init__(
        self, resolve_txt: TxtResolver, *, ttl: float = 3600.0, suffix: str = ".copernica.com"
    ) -> None:
        self.resolve_txt = resolve_txt
        self.suffix = suffix
        self._cache = _Cache(ttl)

    async def __call__(self, key_id: str) -> PublicKey | None:
        if not key_id.endswith(self.suffix):
            return None
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        try:
            records = await self.resolve_txt(key_id)
        except Exception as exc:  # any resolver failure means: no key, reject the delivery
            log.warning("copernica key lookup for %s failed: %s", key_id, exc)
            return None
        for record in records:
            key = public_key_from_dkim(record)
            if key is not None:
                self._cache.put(key_id, key)
                return key
        return None


def static_keys(keys: dict[str, PublicKey]) -> KeyLookup:
    """A fixed key table (tests, or a key pinned by configuration)."""

    async def lookup(key_id: str) -> PublicKey | None:
        return keys.get(key_id)

    return lookup
