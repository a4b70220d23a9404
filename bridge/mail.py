"""Sending mail (password resets) through the SMTP server in ``Settings.smtp_url``.

``smtp://host:port`` speaks plain SMTP and upgrades with STARTTLS when the server offers it;
``smtps://`` uses implicit TLS; ``user:password@`` logs in. Without ``SMTP_URL`` nothing can be
sent: ``MailNotConfigured`` is raised and the caller logs it (never the message body, which may
carry a reset link).
"""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from bridge.config import Settings
from bridge.errors import BridgeError


class MailNotConfigured(BridgeError):
    """SMTP_URL is not set."""


def compose(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    return message


async def send_mail(settings: Settings, to: str, subject: str, body: str) -> None:
    if not settings.smtp_url:
        raise MailNotConfigured("SMTP_URL is not set: cannot send mail")
    parts = urlsplit(settings.smtp_url)
    implicit_tls = parts.scheme == "smtps"
    await aiosmtplib.send(
        compose(settings, to, subject, body),
        hostname=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=implicit_tls,
        start_tls=False if implicit_tls else None,  # None: STARTTLS when the server offers it
        timeout=30,
    )
