"""Accounts: login and logout, the account page (password change, sessions, sign out
everywhere), password reset by e-mail.

- Login is throttled per address and client (``bridge.security.throttle``); unknown addresses
  cost the same scrypt work as known ones, and every failure gets the same message.
- A successful login always starts a new session (new id), ending the one the browser had.
- A reset token is random, stored only as its SHA-256, expires after an hour and works once.
  Asking for a reset answers the same whether or not the address exists; the mail goes out in
  the background so the answer's timing does not tell either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from aiohttp import web

from bridge.db import QUERIES
from bridge.mail import send_mail
from bridge.security import throttle
from bridge.security.passwords import (
    hash_password,
    needs_rehash,
    unmatchable_hash,
    verify_password,
)
from bridge.security.sessions import COOKIE as SESSION_COOKIE
from bridge.security.sessions import digest, open_session, revoke, revoke_others
from bridge.web.guard import (
    SESSION,
    current,
    end_session,
    login_required,
    redirect,
    safe_next,
    start_session,
)
from bridge.web.keys import POOL, SETTINGS
from bridge.web.render import render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

RESET_LIFETIME = 3600.0
MIN_PASSWORD = 10
RESETS_PER_HOUR = 5
# Checked against when the address is unknown, so both cases cost one scrypt verification
# (made without hashing: a hash at import would cost every process 128 MiB at start).
_DUMMY_HASH = unmatchable_hash()
BACKGROUND = web.AppKey("background_tasks", set[asyncio.Task[None]])


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the last address
    in ``X-Forwarded-For`` that is not one of the trusted proxies (the ones before it can be
    made up by the client)."""
    trusted = request.app[SETTINGS].trusted_proxies
    peer = request.remote or "unknown"
    if not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _within(hop, trusted):
            return hop
    return peer


def _within(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    target = safe_next(request.query.get("next"), "/")
    if request.get(SESSION) is not None:
        raise web.HTTPSeeOther(target)
    return render(request, "login.html", {"next": target, "email": ""})


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email = str(form.get("email", "")).strip()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")), "/")
    client = client_address(request)
    context: dict[str, Any] = {"next": target, "email": email}
    if not email or not password:
        context["error"] = "Fill in your e-mail address and your password."
        return render(request, "login.html", context, status=400)
    async with request.app[POOL].acquire() as conn:
        verdict = await throttle.attempt(conn, email, client)
        if not verdict.allowed:
            context["error"] = f"Too many failed attempts. {_wait_words(verdict)}"
            return _too_many(render(request, "login.html", context, status=429), verdict)
        user = await conn.fetchrow(QUERIES["user_by_email"], email)
    stored = user["password_hash"] if user is not None else _DUMMY_HASH
    valid = await asyncio.to_thread(verify_password, password, stored)
    async with request.app[POOL].acquire() as conn:
        if user is None or not valid:
            log.info("failed login from %s", client)
            context["error"] = "Wrong e-mail address or password."
            return render(request, "login.html", context, status=401)
        await throttle.succeeded(conn, email, client)
        if needs_rehash(stored):
            await conn.execute(QUERIES["set_password"], user["id"], user["tenant_id"],
                               await asyncio.to_thread(hash_password, password))
        old = request.get(SESSION)
        if old is not None:
            await revoke(conn, old.id_hash)
        elif request.cookies.get(SESSION_COOKIE):
            await revoke(conn, digest(request.cookies[SESSION_COOKIE]))
        value = await open_session(conn, user["id"], user["tenant_id"])
    log.info("user %s logged in", user["id"])
    response = web.HTTPSeeOther(target)
    start_session(request, response, value)
    raise response


def _wait_words(verdict: throttle.Verdict) -> str:
    seconds = max(1, int(verdict.retry_after + 0.999))
    if seconds < 90:
        return f"Wait {seconds} second{'s' if seconds != 1 else ''} before the next try, or reset your password."
    minutes = round(seconds / 60)
    return f"Wait {minutes} minutes before the next try, or reset your password."


def _too_many(response: web.Response, verdict: throttle.Verdict) -> web.Response:
    response.headers["Retry-After"] = str(max(1, int(verdict.retry_after + 0.999)))
    return response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is not None:
        async with request.app[POOL].acquire() as conn:
            await revoke(conn, session.id_hash)
    response = redirect(request, "/login", "You have been logged out.")
    end_session(request, response)
    raise response


@routes.get("/account")
@login_required
async def account_page(request: web.Request) -> web.Response:
    """Every user's own page: password change, the sessions still open, sign out everywhere."""
    session = current(request)
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(QUERIES["user_sessions"], session.user_id, session.tenant_id)
    sessions = [{"current": r["id_hash"] == session.id_hash, "created_at": r["created_at"],
                 "last_seen_at": r["last_seen_at"], "expires_at": r["expires_at"]} for r in rows]
    return render(request, "account.html", {"sessions": sessions})


@routes.post("/account/password")
@login_required
async def change_password(request: web.Request) -> web.StreamResponse:
    """Change one's own password (account page); the other sessions end."""
    session = current(request)
    form = await request.post()
    old, new, again = (str(form.get(k, "")) for k in ("current_password", "new_password",
                                                       "repeat_password"))
    problem = password_problem(new, again)
    async with request.app[POOL].acquire() as conn:
        user = await conn.fetchrow(QUERIES["user_by_id"], session.user_id, session.tenant_id)
        if user is None:
            raise web.HTTPNotFound()
        verdict = await throttle.attempt(conn, user["email"], client_address(request))
    if not verdict.allowed:  # the current password is guessed here as much as at the login
        raise redirect(request, "/account#password",
                       f"Too many wrong passwords. {_wait_words(verdict)}", "error")
    if not problem and not await asyncio.to_thread(verify_password, old, user["password_hash"]):
        problem = "The current password is wrong."
    elif not problem:
        async with request.app[POOL].acquire() as conn:
            await throttle.succeeded(conn, user["email"], client_address(request))
    if problem:
        raise redirect(request, "/account#password", problem, "error")
    new_hash = await asyncio.to_thread(hash_password, new)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        await conn.execute(QUERIES["set_password"], session.user_id, session.tenant_id, new_hash)
        await conn.execute(QUERIES["void_password_resets"], session.user_id)
        await revoke_others(conn, session.user_id, session.id_hash)
    raise redirect(request, "/account#password",
                   "Your password has been changed. Your other sessions have been signed out.")


@routes.post("/account/sign-out-everywhere")
@login_required
async def sign_out_everywhere(request: web.Request) -> web.StreamResponse:
    """End every session of this user, this one included (a lost laptop, a shared browser)."""
    session = current(request)
    async with request.app[POOL].acquire() as conn:
        await revoke_others(conn, session.user_id)
    log.info("user %s signed out everywhere", session.user_id)
    response = redirect(request, "/login", "You have been signed out everywhere.")
    end_session(request, response)
    raise response


def password_problem(new: str, again: str) -> str | None:
    if len(new) < MIN_PASSWORD:
        return f"The new password must be at least {MIN_PASSWORD} characters long."
    if new != again:
        return "The two new passwords are not the same."
    return None


@routes.get("/password-reset")
async def reset_request_page(request: web.Request) -> web.Response:
    return render(request, "reset_request.html")


@routes.post("/password-reset")
async def reset_request(request: web.Request) -> web.Response:
    form = await request.post()
    email = str(form.get("email", "")).strip()
    if "@" not in email:
        return render(request, "reset_request.html", {
            "error": "Fill in the e-mail address you log in with.", "email": email,
        }, status=400)
    tasks: set[asyncio.Task[None]] = request.app[BACKGROUND]
    task = asyncio.create_task(_send_reset(request.app, email))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return render(request, "reset_request.html", {"sent": True})


async def _send_reset(app: web.Application, email: str) -> None:
    settings = app[SETTINGS]
    try:
        async with app[POOL].acquire() as conn:
            user = await conn.fetchrow(QUERIES["user_by_email"], email)
            if user is None:
                return
            recent = await conn.fetchval(QUERIES["recent_password_resets"], user["id"], 3600.0)
            if recent >= RESETS_PER_HOUR:  # no mail bombing through the reset form
                log.warning("password reset for user %s refused: %s this hour", user["id"], recent)
                return
            token = secrets.token_urlsafe(32)
            async with conn.transaction():
                await conn.execute(QUERIES["void_password_resets"], user["id"])
                await conn.execute(QUERIES["create_password_reset"], _hash(token), user["id"],
                                   RESET_LIFETIME)
        link = f"{settings.public_url}/password-reset/{token}"
        await send_mail(
            settings, user["email"], "Reset your Copernica bridge password",
            "Someone (hopefully you) asked to reset the password of your Copernica bridge "
            f"account.\n\nChoose a new password here (the link works once, for one hour):\n{link}\n\n"
            "If you did not ask for this, ignore this message; your password stays as it is.\n",
        )
        log.info("password reset mail sent to user %s", user["id"])
    except Exception as exc:  # noqa: BLE001 - a background task must log, not die silently
        log.error("could not send a password reset mail: %s", type(exc).__name__)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@routes.get("/password-reset/{token}")
async def reset_page(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        user_id = await conn.fetchval(QUERIES["check_password_reset"],
                                      _hash(request.match_info["token"]))
    if user_id is None:
        return render(request, "reset_form.html", {"invalid": True}, status=404)
    return render(request, "reset_form.html")


@routes.post("/password-reset/{token}")
async def reset(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    new, again = str(form.get("new_password", "")), str(form.get("repeat_password", ""))
    token_hash = _hash(request.match_info["token"])
    problem = password_problem(new, again)
    if problem:
        async with request.app[POOL].acquire() as conn:
            valid = await conn.fetchval(QUERIES["check_password_reset"], token_hash)
        if valid is None:
            return render(request, "reset_form.html", {"invalid": True}, status=404)
        return render(request, "reset_form.html", {"error": problem}, status=400)
    new_hash = await asyncio.to_thread(hash_password, new)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        user_id = await conn.fetchval(QUERIES["use_password_reset"], token_hash)
        if user_id is None:
            return render(request, "reset_form.html", {"invalid": True}, status=404)
        user = await conn.fetchrow(QUERIES["user_for_reset"], user_id)
        assert user is not None  # the reset row references it
        await conn.execute(QUERIES["set_password"], user["id"], user["tenant_id"], new_hash)
        await conn.execute(QUERIES["void_password_resets"], user["id"])
        await revoke_others(conn, user["id"])
    log.info("user %s reset the password", user_id)
    raise redirect(request, "/login", "Your password has been changed. Log in with the new one.")


async def background_tasks(app: web.Application) -> AsyncIterator[None]:
    """Mail still being sent at shutdown is waited for (briefly)."""
    yield
    tasks = app[BACKGROUND]
    pending = list(tasks)
    if pending:
        await asyncio.wait(pending, timeout=10)
