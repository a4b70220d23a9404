"""Rendering a page: the template's context always carries the session, the CSRF token for its
forms and the flash message left by the previous action."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bridge.web.guard import (
    FLASH_COOKIE,
    NO_FLASH,
    SESSION,
    csrf_token,
    drop_cookie,
    keep_pre_login_token,
    take_flash,
)


def when(moment: str | datetime | None, empty: str = "never") -> str:
    """A moment for people: ``2026-03-29 14:05 UTC`` (ISO text from the status JSON, too)."""
    if not moment:
        return empty
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    values = {
        "session": request.get(SESSION),
        "csrf_token": csrf_token(request),
        "flash": take_flash(request) or NO_FLASH,
        "path": request.path,
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    keep_pre_login_token(request, response)
    if FLASH_COOKIE in request.cookies:
        drop_cookie(request, response, FLASH_COOKIE)
    return response
