"""Webhook delivery of the Copernica sandbox: form-encoded payloads, signed like Copernica signs.

Each webhook has its own queue and background task, so a REST write answers before its webhook
is delivered. With one delivery in flight per webhook (the default) deliveries to one handler keep
their order (a retry holds the queue); ``concurrency`` lets more go out at once, in any order. Faults
(failed attempts, duplicates, swapped order) are switched on through the control API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.copernica.state import Account, ProfileChange, Webhook, local_text
from sandbox.copernica.variants import DigestToken, SignatureShape, Variants

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    "(request-target)",
    "host",
    "date",
    "content-length",
    "content-type",
    "x-copernica-id",
    "digest",
    "x-nonce",
)
# How the documentation's example lists them (header names as written in its example).
DOCUMENTED_NAMES = (
    "(request-target)", "Host", "Date", "Content-length", "Content-type", "X-Copernica-ID",
    "Digest", "X-nonce",
)


class Signer:
    """The sandbox's RSA key: signs deliveries and publishes its public half (PEM and DKIM TXT)."""

    def __init__(self, key_id: str, private_pem: bytes | None = None) -> None:
        self.key_id = key_id
        if private_pem:
            loaded = serialization.load_pem_private_key(private_pem, password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("the webhook signing key must be an RSA key")
            self.private_key = loaded
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def dkim_record(self) -> str:
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def headers_for(
        self,
        url: str,
        body: bytes,
        account_marker: str,
        *,
        shape: SignatureShape = "documentation",
        digest_token: DigestToken = "SHA-256",
        content_type: str = "application/x-www-form-urlencoded",
    ) -> dict[str, str]:
        """All headers of one delivery attempt, ``Signature`` last (draft-cavage, rsa-sha256).

        ``shape``: ``documentation`` writes the ``Signature`` header as the documentation's example
        does (header names as written there, no comma before ``signature=``); ``library`` as
        Copernica's signature library prints it (comma separated, lower-case names)."""
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        values = {
            "(request-target)": f"post {target}",
            "host": parts.netloc,
            "date": formatdate(usegmt=True),
            "content-length": str(len(body)),
            "content-type": content_type,
            "x-copernica-id": account_marker,
            "digest": f"{digest_token}=" + base64.b64encode(hashlib.sha256(body).digest()).decode(),
            "x-nonce": secrets.token_hex(16),
        }
        signing_string = "\n".join(f"{name}: {values[name]}" for name in SIGNED_HEADERS)
        signature = self.private_key.sign(
            signing_string.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        encoded = base64.b64encode(signature).decode()
        if shape == "library":
            header = (
                f'keyId="{self.key_id}",algorithm="rsa-sha256",'
                f'headers="{" ".join(SIGNED_HEADERS)}",signature="{encoded}"'
            )
        else:
            header = (
                f'keyId="{self.key_id}",algorithm="rsa-sha256", '
                f'headers="{" ".join(DOCUMENTED_NAMES)}" signature="{encoded}"'
            )
        return {
            "Host": values["host"],
            "Date": values["date"],
            "Content-Type": values["content-type"],
            "Content-Length": values["content-length"],
            "X-Copernica-ID": account_marker,
            "Digest": values["digest"],
            "X-Nonce": values["x-nonce"],
            "Signature": header,
        }


def payload_pairs(change: ProfileChange, tz: ZoneInfo) -> list[tuple[str, str]]:
    """The form fields of a profile webhook, in the documented names."""
    pairs = [
        ("type", change.type),
        ("id", str(change.profile_id)),
        ("profile", str(change.profile_id)),
        ("database", str(change.database_id)),
        ("timestamp", local_text(change.at, tz)),
        ("time", str(int(change.at.timestamp()))),
    ]
    if change.type != "delete":
        pairs += [
            ("created", local_text(change.created, tz)),
            ("modified", local_text(change.modified, tz)),
        ]
        pairs += [(f"parameters[{k}]", v) for k, v in change.parameters.items()]
    pairs += [(f"fields[{k}]", v) for k, v in change.fields.items()]
    if change.type != "delete":
        pairs += [("interests[]", name) for name in change.interests]
    return pairs


@dataclass
class Delivery:
    """One event on its way to one webhook."""

    event_id: int
    webhook_id: int
    change_type: str
    profile_id: int
    body: bytes
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class DeliveryFaults:
    fail: int = 0  # next N attempts fail as if the connection was refused
    duplicate: int = 0  # next N events are delivered twice
    reorder: int = 0  # next N events are held back and delivered after the event that follows


class Dispatcher:
    """Turns profile changes into signed webhook deliveries with retries and back-off."""

    def __init__(
        self,
        account: Account,
        signer: Signer,
        *,
        variants: Callable[[], Variants],
        account_marker: Callable[[], str],
        max_attempts: int,
        retry_base: float,
        timeout: float,
        reorder_hold: float,
        concurrency: int = 1,
    ) -> None:
        self.account = account
        self.signer = signer
        self.variants = variants
        self.account_marker = account_marker
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.timeout = timeout
        self.reorder_hold = reorder_hold
        self.concurrency = max(1, concurrency)
        self.faults = DeliveryFaults()
        self.log: deque[dict[str, Any]] = deque(maxlen=2000)
        self.feedback_loop_errors: deque[dict[str, Any]] = deque(maxlen=1000)
        self.session: aiohttp.ClientSession | None = None
        self._queues: dict[int, asyncio.Queue[Delivery]] = {}
        self._workers: dict[int, list[asyncio.Task[None]]] = {}
        self._held: dict[int, tuple[Delivery, asyncio.TimerHandle]] = {}
        self._events = 0
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        account.listeners.append(self.on_change)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def stop(self) -> None:
        tasks = [task for workers in self._workers.values() for task in workers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        for _, timer in self._held.values():
            timer.cancel()
        self._held.clear()
        self._inflight = 0
        self._idle.set()
        if self.session is not None:
            await self.session.close()

    def pending(self) -> int:
        """Deliveries queued, held back or in progress."""
        return self._inflight

    async def drain(self) -> None:
        """Wait until every queued delivery finished (wrap in ``asyncio.timeout``)."""
        await self._idle.wait()

    def on_change(self, change: ProfileChange) -> None:
        hooks = [h for h in self.account.webhooks.values() if h.wants(change)]
        if not hooks:
            return
        body = urlencode(payload_pairs(change, self.account.tz)).encode()
        for hook in hooks:
            self._events += 1
            delivery = Delivery(self._events, hook.id, change.type, change.profile_id, body)
            copies = 1
            if self.faults.duplicate > 0:
                self.faults.duplicate -= 1
                copies = 2
            for _ in range(copies):
                self._enqueue(hook, delivery)

    def _enqueue(self, hook: Webhook, delivery: Delivery) -> None:
        self._inflight += 1
        self._idle.clear()
        queue = self._queues.setdefault(hook.id, asyncio.Queue())
        workers = self._workers.setdefault(hook.id, [])
        workers[:] = [task for task in workers if not task.done()]
        while len(workers) < self.concurrency:
            workers.append(asyncio.get_running_loop().create_task(self._work(hook.id, queue)))
        held = self._held.pop(hook.id, None)
        if held is not None:
            held[1].cancel()
            queue.put_nowait(delivery)
            queue.put_nowait(held[0])
            return
        if self.faults.reorder > 0:
            self.faults.reorder -= 1
            timer = asyncio.get_running_loop().call_later(self.reorder_hold, self._release, hook.id)
            self._held[hook.id] = (delivery, timer)
            return
        queue.put_nowait(delivery)

    def _release(self, hook_id: int) -> None:
        held = self._held.pop(hook_id, None)
        if held is not None:
            self._queues[hook_id].put_nowait(held[0])

    async def _work(self, hook_id: int, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._deliver(delivery)
            except Exception:  # a worker must survive any single delivery
                log.exception("webhook delivery %s crashed", delivery.event_id)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()
                queue.task_done()

    async def _deliver(self, delivery: Delivery) -> None:
        for attempt in range(1, self.max_attempts + 1):
            hook = self.account.webhooks.get(delivery.webhook_id)
            if hook is None:
                return  # removed while queued: nothing to deliver to
            posted = time.monotonic()
            status, error = await self._attempt(hook.handler, delivery.body)
            answered = time.monotonic()
            ok = status is not None and 200 <= status < 300
            self.log.append(
                {
                    "event": delivery.event_id,
                    "webhook": str(hook.id),
                    "type": delivery.change_type,
                    "profile": str(delivery.profile_id),
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "ok": ok,
                    "latency_ms": round((answered - delivery.enqueued) * 1000, 3),
                    "answer_ms": round((answered - posted) * 1000, 3),  # the receiver's answer
                }
            )
            if ok:
                return
            if attempt == self.max_attempts:
                self.feedback_loop_errors.append(
                    {
                        "time": formatdate(usegmt=True),
                        "response": status or 0,
                        "recipient": hook.handler,
                        "header": error or "",
                    }
                )
                return
            await asyncio.sleep(min(60.0, self.retry_base * 2 ** (attempt - 1)))

    async def _attempt(self, url: str, body: bytes) -> tuple[int | None, str | None]:
        if self.faults.fail > 0:
            self.faults.fail -= 1
            return None, "injected failure"
        assert self.session is not None, "dispatcher not started"
        variants = self.variants()
        headers = self.signer.headers_for(
            url, body, self.account_marker(),
            shape=variants.signature_shape, digest_token=variants.digest_token,
        )
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
