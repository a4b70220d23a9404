"""Rendering a page: the template's context always carries the session, the CSRF token for its
forms and the flash message left by the previous action."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from bridge.web.guard import (
    FLASH_COOKIE,
    SESSION,
    csrf_token,
    drop_cookie,
    keep_pre_login_token,
    take_flash,
)


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    flash = take_flash(request)
    values = {
        "session": request.get(SESSION),
        "csrf_token": csrf_token(request),
        "flash": flash,
        "path": request.path,
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(template, request, values, status=status)
    keep_pre_login_token(request, response)
    if FLASH_COOKIE in request.cookies:
        drop_cookie(request, response, FLASH_COOKIE)
    return response
