"""The demo's mail sink: an in-process SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it is
sent, and the demo page ``/demo/mail`` that lists it.

Wiring (``bridge demo``)::

    async with mail_sink() as sink:
        settings = dataclasses.replace(settings, smtp_url=sink.url)
        app = create_app(settings)
        show_mail(app, sink)           # before the app starts
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.web.guard import login_required
from bridge.web.render import render

if TYPE_CHECKING:  # aiosmtpd is needed by the demo and the tests only: imported when used
    from aiosmtpd.smtp import SMTP, Envelope, Session

KEEP = 200  # messages kept; older ones are dropped


@dataclass(frozen=True)
class SentMail:
    received_at: datetime
    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str


@dataclass
class MailSink:
    """What the sink received, newest last; ``wait_for`` lets tests wait for a message."""

    url: str = ""
    messages: list[SentMail] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        part = parsed.get_body(preferencelist=("plain",)) if parsed.is_multipart() else parsed
        body = part.get_content() if part is not None else ""
        mail = SentMail(
            datetime.now(UTC), str(envelope.mail_from or ""), tuple(envelope.rcpt_tos),
            str(parsed.get("Subject", "")), str(body),
        )
        async with self.arrived:
            self.messages.append(mail)
            del self.messages[:-KEEP]
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    async def wait_for(self, to: str, within: float = 10.0) -> SentMail:
        """The newest message to ``to``, waiting for one to arrive if there is none yet."""
        def newest() -> SentMail | None:
            return next((m for m in reversed(self.messages) if to in m.recipients), None)

        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: newest() is not None)
        found = newest()
        assert found is not None
        return found


MAIL_SINK = web.AppKey("mail_sink", MailSink)


@asynccontextmanager
async def mail_sink(host: str = "127.0.0.1") -> AsyncIterator[MailSink]:
    """Run a sink on an OS-chosen port of ``host`` for as long as the block runs."""
    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.INFO)  # aiosmtpd logs whole messages at DEBUG
    sink = MailSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="bridge-mail-sink"), host, 0)
    port = server.sockets[0].getsockname()[1]
    sink.url = f"smtp://{host}:{port}"
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


@login_required
async def demo_mail(request: web.Request) -> web.StreamResponse:
    """Demo only: what the bridge sent (password resets), newest first, for a logged-in user
    (reset links are as good as passwords)."""
    return render(request, "demo_mail.html", {"messages": list(reversed(request.app[MAIL_SINK].messages))})


def show_mail(app: web.Application, sink: MailSink) -> None:
    """Serve what ``sink`` received at ``/demo/mail`` of the bridge ``app``."""
    app[MAIL_SINK] = sink
    app.router.add_get("/demo/mail", demo_mail)
