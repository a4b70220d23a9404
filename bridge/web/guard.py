"""What stands in front of every page: security headers (CSP ``frame-ancestors``), the login
session, CSRF checks, cookie attributes fit for a Salesforce iframe, and one-shot flash messages.

Cookies. The web tab lives in an iframe on a Salesforce domain, so the session cookie is a
third-party cookie there: it must be ``SameSite=None; Secure`` and ``Partitioned`` (CHIPS) to be
sent at all when third-party cookies are blocked. ``Secure`` is set when the request came over
HTTPS (directly, or ``PUBLIC_URL`` is https:// behind a TLS-terminating proxy) or from a host
browsers treat as potentially trustworthy (``localhost``, ``127.0.0.1``, ``::1``: Chromium keeps
``Secure`` cookies over plain HTTP there, which the demo and the browser tests rely on). Over plain
HTTP from any other host a ``Secure`` cookie would be dropped, so the cookie falls back to
``SameSite=Lax`` without ``Partitioned``: the pages work top-level, but not inside Salesforce.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web
from multidict import MultiMapping

from bridge import logs
from bridge.security import csrf
from bridge.security.sessions import COOKIE as SESSION_COOKIE
from bridge.security.sessions import LIFETIME, Session, find_session
from bridge.web.keys import POOL, SETTINGS

log = logging.getLogger(__name__)

SALESFORCE_FRAME_ANCESTORS = (
    "https://*.force.com",
    "https://*.salesforce.com",
    "https://*.lightning.force.com",
    "https://*.visualforce.com",
)
# Machine endpoints that authenticate otherwise (signed webhooks): no CSRF token expected.
CSRF_EXEMPT_PREFIXES = ("/hooks/",)
TRUSTWORTHY_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
FLASH_COOKIE = "bridge_flash"
SESSION = web.RequestKey("session", object)  # the Session, or None when not logged in
PRE_LOGIN_TOKEN = web.RequestKey("csrf_pre", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def frame_ancestors(request: web.Request) -> str:
    """Who may show this page in a frame, besides the origins of ``FRAME_ANCESTORS``.

    A logged-in user's pages: only their own org's Salesforce pages (learned from the My Domain
    of the saved Salesforce settings). Before the login the tenant is not known yet, and the
    login and reset forms, which act for nobody, may be framed by any Salesforce org.
    """
    session = request.get(SESSION)
    if not isinstance(session, Session):
        salesforce: tuple[str, ...] = SALESFORCE_FRAME_ANCESTORS
    else:
        domain = session.salesforce_domain
        salesforce = salesforce_origins(domain) if domain else ()
    return " ".join(("'self'", *salesforce, *request.app[SETTINGS].frame_ancestors))


def salesforce_origins(my_domain: str) -> tuple[str, ...]:
    """The origins that show an org's pages: Lightning, Classic and Visualforce (for
    ``acme--uat.sandbox`` these are ``acme--uat.sandbox.lightning.force.com`` and so on)."""
    name, dot, kind = my_domain.partition(".")
    kind = dot + kind
    return (
        f"https://{name}{kind}.lightning.force.com",
        f"https://{name}{kind}.my.salesforce.com",
        f"https://{name}--c{kind}.vf.force.com",
    )


def content_security_policy(request: web.Request) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {frame_ancestors(request)}"
    )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure_headers(request, exc.headers)
        raise
    _secure_headers(request, response.headers)
    return response


def _secure_headers(request: web.Request, headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", content_security_policy(request))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if request.secure or request.app[SETTINGS].public_url.startswith("https://"):
        # Browsers take it over HTTPS only: from then on they never speak plain HTTP to us.
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.get(SESSION) is not None:
        headers.setdefault("Cache-Control", "no-store")


def secure_context(request: web.Request) -> bool:
    """May cookies be ``Secure`` (see the module docstring)?"""
    if request.secure or request.app[SETTINGS].public_url.startswith("https://"):
        return True
    host = (request.url.host or "").lower()
    return host in TRUSTWORTHY_HOSTS


def cookie_attributes(request: web.Request) -> str:
    if secure_context(request):
        return "Path=/; HttpOnly; Secure; SameSite=None; Partitioned"
    return "Path=/; HttpOnly; SameSite=Lax"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
               max_age: int | None = None) -> None:
    """Written by hand: Python 3.11's ``http.cookies`` does not know ``Partitioned``."""
    lifetime = f"; Max-Age={max_age}" if max_age is not None else ""
    response.headers.add("Set-Cookie", f"{name}={value}{lifetime}; {cookie_attributes(request)}")


def drop_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    """Delete a cookie with the attributes it was set with (a partitioned one needs them)."""
    response.headers.add(
        "Set-Cookie",
        f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; {cookie_attributes(request)}",
    )


def start_session(request: web.Request, response: web.StreamResponse, value: str) -> None:
    set_cookie(request, response, SESSION_COOKIE, value, max_age=int(LIFETIME))


def end_session(request: web.Request, response: web.StreamResponse) -> None:
    drop_cookie(request, response, SESSION_COOKIE)


@web.middleware
async def sessions_and_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session from its cookie; refuse state-changing requests without a valid token."""
    value = request.cookies.get(SESSION_COOKIE)
    session = None
    if value:
        async with request.app[POOL].acquire() as conn:
            session = await find_session(conn, value)
    request[SESSION] = session
    token = logs.tenant.set(session.tenant_slug) if session else None
    try:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not request.path.startswith(
            CSRF_EXEMPT_PREFIXES
        ):
            await _check_csrf(request, session)
        return await handler(request)
    finally:
        if token is not None:
            logs.tenant.reset(token)


async def _check_csrf(request: web.Request, session: Session | None) -> None:
    given = request.headers.get(csrf.HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        given = (await request.post()).get(csrf.FIELD)  # type: ignore[assignment]
    expected = session.csrf_token if session else request.cookies.get(csrf.COOKIE)
    if not csrf.matches(expected, given if isinstance(given, str) else None):
        log.warning("refused %s %s: missing or wrong CSRF token", request.method, request.path)
        raise web.HTTPForbidden(
            text="This form has expired or did not come from the bridge. "
            "Reload the page and try again.",
        )


def csrf_token(request: web.Request, response: web.StreamResponse | None = None) -> str:
    """The token a form on this page must carry; before login it also sets the cookie."""
    session: Session | None = request.get(SESSION)
    if session is not None:
        return session.csrf_token
    token = request.get(PRE_LOGIN_TOKEN) or request.cookies.get(csrf.COOKIE) or csrf.new_token()
    request[PRE_LOGIN_TOKEN] = token
    return token


def keep_pre_login_token(request: web.Request, response: web.StreamResponse) -> None:
    token = request.get(PRE_LOGIN_TOKEN)
    if token and request.cookies.get(csrf.COOKIE) != token:
        set_cookie(request, response, csrf.COOKIE, token)


def current(request: web.Request) -> Session:
    session: Session | None = request.get(SESSION)
    if session is None:
        raise web.HTTPUnauthorized()
    return session


def login_required(handler: Handler) -> Handler:
    """Pages answer with the login page's address; JSON endpoints with 401."""
    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.get(SESSION) is None:
            if request.path.endswith(".json"):
                raise web.HTTPUnauthorized(text='{"error": "not logged in"}',
                                           content_type="application/json")
            target = request.path if request.method == "GET" else "/sfcp"
            raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}")
        return await handler(request)

    return guarded


def admin_required(handler: Handler) -> Handler:
    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        if current(request).role != "admin":
            raise web.HTTPForbidden(text="Only an administrator of this account may do this.")
        return await handler(request)

    return login_required(guarded)


# Never kept for the page after an error: what was typed into these fields is not echoed back.
SECRET_FIELDS = frozenset({
    csrf.FIELD, "api_token", "password", "security_token", "consumer_secret", "private_key",
    "current_password", "new_password", "repeat_password",
})
FLASH_LIMIT = 3000  # bytes of the flash cookie; typed values that do not fit are not kept


@dataclass(frozen=True)
class Flash:
    """The answer to the previous action, shown by the next page.

    ``at`` is the id of the page section whose form was used: the message is shown inside that
    section (``templates/_outcome.html``) and the redirect's anchor points at the message itself,
    so it is in view. Without ``at`` it is shown at the top of the page. ``typed`` keeps what the
    user typed (never a secret) after an error; ``anyway`` offers to save without the check that
    failed."""

    kind: str
    text: str
    at: str = ""
    typed: dict[str, list[str]] = field(default_factory=dict)
    anyway: bool = False

    def __bool__(self) -> bool:
        return bool(self.text)

    def value(self, name: str, default: str = "") -> str:
        """What the user typed into ``name``, else ``default``."""
        return self.typed[name][0] if self.typed.get(name) else default

    def values(self, name: str, default: Iterable[str] = ()) -> list[str]:
        return self.typed[name] if name in self.typed else list(default)


NO_FLASH = Flash(kind="", text="")


def flash(request: web.Request, response: web.StreamResponse, message: Flash) -> None:
    """A message for the next page shown (after a redirect)."""
    data: dict[str, Any] = {"kind": message.kind, "text": message.text, "at": message.at,
                            "typed": message.typed, "anyway": message.anyway}
    value = quote(json.dumps(data, separators=(",", ":")))
    if len(value) > FLASH_LIMIT:
        value = quote(json.dumps({**data, "typed": {}}, separators=(",", ":")))
    set_cookie(request, response, FLASH_COOKIE, value)


def take_flash(request: web.Request) -> Flash | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
        typed = data.get("typed") or {}
        return Flash(
            kind=str(data.get("kind", "ok")), text=str(data["text"]), at=str(data.get("at", "")),
            typed={str(k): [str(v) for v in vs] for k, vs in typed.items()
                   if str(k) not in SECRET_FIELDS and isinstance(vs, list)},
            anyway=data.get("anyway") is True,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def redirect(request: web.Request, location: str, message: str | None = None,
             kind: str = "ok", *, typed: MultiMapping[Any] | None = None,
             anyway: bool = False) -> web.HTTPSeeOther:
    """Back to a page, with ``message`` as its answer. A fragment names the section of the form
    used (``/config#salesforce``): the message shows there and the page scrolls to it. After
    an error, pass the posted form as ``typed`` to keep what the user typed (secrets aside)."""
    path, _, section = location.partition("#")
    if not message:
        return web.HTTPSeeOther(location)
    response = web.HTTPSeeOther(f"{path}#outcome-{section}" if section else path)
    kept = {} if typed is None or kind == "ok" else {
        name: [str(v) for v in typed.getall(name)]
        for name in dict.fromkeys(typed.keys()) if name not in SECRET_FIELDS
    }
    flash(request, response, Flash(kind, message, section, kept, anyway))
    return response


def safe_next(target: str | None, default: str = "/sfcp") -> str:
    r"""A path on this site, else ``default``: never an open redirect.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    ``/\t/evil.example`` or ``/\\evil.example`` would leave the site: any control character,
    space, backslash or non-ASCII character refuses the target, and so does anything with a
    scheme or a host."""
    if not target or not target.startswith("/") or len(target) > 2000 or not target.isascii():
        return default
    if any(c <= " " or c in "\x7f\\" for c in target):
        return default
    parts = urlsplit(target)
    if target.startswith("//") or parts.scheme or parts.netloc:
        return default
    return target
