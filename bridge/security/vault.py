"""The credential vault: platform credentials are stored only as Fernet ciphertext.

Keys come from ``BRIDGE_SECRET_KEYS`` (first = current). ``rotate`` re-encrypts every row under the
current key, so an old key can be dropped from the list afterwards.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.db import QUERIES, Conn, Pool
from bridge.errors import BridgeError, ConfigError

log = logging.getLogger(__name__)

DEMO_KEY_FILE = "secret.key"


class VaultError(BridgeError):
    """Ciphertext that none of the configured keys opens."""


class Vault:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("BRIDGE_SECRET_KEYS is not set (make a key with `bridge generate-key`)")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt(self, secrets: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(secrets, sort_keys=True).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            return dict(json.loads(self._fernet.decrypt(token)))
        except InvalidToken:
            raise VaultError(
                "stored credentials cannot be decrypted with BRIDGE_SECRET_KEYS "
                "(was a key removed before `bridge rotate-keys` ran?)"
            ) from None

    async def store(
        self, conn: Conn, tenant_id: int, platform: str, secrets: dict[str, Any]
    ) -> None:
        await conn.execute(QUERIES["store_credentials"], tenant_id, platform, self.encrypt(secrets))

    async def load(
        self, conn: Conn, tenant_id: int, platform: str
    ) -> dict[str, Any] | None:
        token = await conn.fetchval(QUERIES["load_credentials"], tenant_id, platform)
        return None if token is None else self.decrypt(token)

    async def rotate(self, pool: Pool) -> int:
        """Re-encrypt every stored credential under the current key; return how many."""
        count = 0
        async with pool.acquire() as conn, conn.transaction():
            for row in await conn.fetch(QUERIES["all_credentials_for_update"]):
                try:
                    rotated = self._fernet.rotate(row["ciphertext"])
                except InvalidToken:
                    raise VaultError(
                        f"credentials of tenant {row['tenant_id']} ({row['platform']}) open with "
                        "none of the configured keys; nothing was changed"
                    ) from None
                await conn.execute(
                    QUERIES["replace_credentials"], row["tenant_id"], row["platform"], rotated
                )
                count += 1
        return count


def generate_key() -> str:
    return Fernet.generate_key().decode()


def demo_keys(data_dir: Path) -> tuple[str, ...]:
    """The demo's key: read from the data folder, or generated there (mode 0600) on first use."""
    path = data_dir / DEMO_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key() + "\n")
        log.warning("no BRIDGE_SECRET_KEYS set: generated a demo key in %s", path)
    return (path.read_text().strip(),)
