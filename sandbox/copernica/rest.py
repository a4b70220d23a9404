"""The REST routes of the Copernica sandbox (``/v3/...`` and ``/v4/...``).

One catch-all aiohttp route hands every call to ``dispatch``, which plays the load balancer
(faults, latency), checks credentials, counts the call and looks the path up in ``ROUTES``.
Unknown paths and wrong verbs answer 400 ``Invalid method``, as Copernica does.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from sandbox.copernica.accounts import ACCOUNT
from sandbox.copernica.runtime import Sandbox
from sandbox.copernica.search import candidates, matches_all, parse_conditions, sort_key
from sandbox.copernica.state import (
    Database,
    Emailing,
    Profile,
    SandboxError,
    Webhook,
    local_text,
    truthy,
)
from sandbox.copernica.values import php_int, php_string
from sandbox.copernica.wire import (
    api_token,
    condition_params,
    created,
    error_reply,
    json_reply,
    no_content,
    overload_reply,
    paged,
    read_body,
    wrapper_of,
)

TRIGGERS = frozenset(
    {"create", "update", "delete", "click", "delivery", "open", "bounce", "failure", "unsubscribe"}
)
TARGET_TYPES = frozenset({"database", "view", "profile"})


@dataclass
class Call:
    """One REST call after routing: the request, the API version and the path parameters."""

    request: web.Request
    sandbox: Sandbox
    version: str  # "v3" | "v4"
    params: dict[str, str]

    @property
    def query(self) -> Any:
        return self.request.query

    async def body(self) -> dict[str, Any]:
        return await read_body(self.request)


Handler = Callable[[Call], Awaitable[web.StreamResponse]]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []
MS = r"(?P<product>ms|draganddrop)"
PUB = r"(?P<product>publisher|html)"


def _created(call: Call, kind: str, new_id: int) -> web.Response:
    """201 for a new ``kind``, with the id headers the ``created_id`` variant names."""
    variants = call.sandbox.variants
    applies = not variants.created_id_kinds or kind.rpartition("/")[2] in variants.created_id_kinds
    return created(
        call.request, kind, new_id, call.version, variants.created_id if applies else "both"
    )


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(pattern + r"/?"), handler))
        return handler

    return register


# dispatch --------------------------------------------------------------------------------------
async def dispatch(request: web.Request) -> web.StreamResponse:
    sandbox = request[ACCOUNT]
    faults = sandbox.faults
    if faults.latency > 0:
        await asyncio.sleep(faults.latency)
    if faults.count > 0 and faults.status and faults.method in ("", request.method):
        faults.count -= 1
        return overload_reply(faults.status, faults.retry_after)
    variants = sandbox.variants
    if request.method == "GET" and variants.redirect_gets > 0:  # a moved call, as documented
        sandbox.variants = replace(variants, redirect_gets=variants.redirect_gets - 1)
        origin = variants.redirect_to.rstrip("/") or f"{request.scheme}://{request.host}"
        return web.Response(
            status=variants.redirect_status, headers={"Location": origin + request.path_qs}
        )
    version = request.match_info["version"]
    denied = check_credentials(request, sandbox, version)
    if denied is not None:
        return denied
    sandbox.count_call()
    tail = request.match_info["tail"]
    found = find_route(request.method, tail, version)
    if found is None:
        return error_reply("Invalid method")
    handler, params = found
    try:
        response = await handler(Call(request, sandbox, version, params))
    except SandboxError as exc:
        return error_reply(exc.message)
    if request.method in ("POST", "PUT", "DELETE") and response.status < 400:
        sandbox.count_write(request.method, request.path_qs, response.status)
        if sandbox.settings.legacy_statuses:
            return legacy_status(request, response)
    return response


def legacy_status(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The observed v2 habits: every successful PUT is 303 See Other, a DELETE is 200."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    if request.method == "PUT":
        tail = request.match_info["tail"]
        query = f"?{request.query_string}" if request.query_string else ""
        location = headers.pop("X-location", f"{request.scheme}://{request.host}/{tail}{query}")
        return web.Response(status=303, headers={**headers, "Location": location})
    if request.method == "DELETE":
        return web.Response(status=200, headers=headers)
    return response


def check_credentials(request: web.Request, sandbox: Sandbox, version: str) -> web.Response | None:
    """v3: ``?access_token=`` (bad → 400); v4: ``Authorization: Bearer <jwt>`` (bad/expired → 401)."""
    if version == "v3":
        token = request.query.get("access_token", "")
        if token and sandbox.issuer.valid_api_token(token):
            return None
        return error_reply("Invalid access token")
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and sandbox.issuer.valid_jwt(credential.strip()):
        return None
    return error_reply(
        "Invalid access token", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


def find_route(method: str, tail: str, version: str) -> tuple[Handler, dict[str, str]] | None:
    for verb, pattern, handler in ROUTES:
        match = pattern.fullmatch(tail)
        if match is None or verb != method:
            continue
        params = {k: v for k, v in match.groupdict().items() if v is not None}
        if version == "v3" and params.get("product") in ("draganddrop", "html"):
            return None  # the new v4 names do not exist on v3
        return handler, params
    return None


async def authenticate(request: web.Request) -> web.Response:
    """``POST https://authenticate.copernica.com``: API token in, bare JWT (text/plain) out."""
    sandbox = request[ACCOUNT]
    token = await api_token(request)
    if not token or not sandbox.issuer.valid_api_token(token):
        return error_reply("Invalid access token")
    return web.Response(text=sandbox.issuer.issue(), content_type="text/plain")


# account ---------------------------------------------------------------------------------------
@route("GET", r"identity")
async def get_identity(call: Call) -> web.Response:
    s = call.sandbox.settings
    return json_reply(
        {"id": str(s.account_id), "name": s.account_name, "description": "", "company": s.company}
    )


@route("GET", r"consumption")
async def get_consumption(call: Call) -> web.Response:
    begin = call.query.get("begin", "0000-00-00")
    end = call.query.get("end", "9999-99-99")
    calls = sum(n for day, n in call.sandbox.api_calls.items() if begin <= day <= end)
    return json_reply({"begin": begin, "end": end, "apicalls": calls})


# databases -------------------------------------------------------------------------------------
def database_json(call: Call, database: Database) -> dict[str, Any]:
    has = {f.type for f in database.fields}
    return {
        "ID": str(database.id),
        "name": database.name,
        "description": database.description,
        "archived": database.archived,
        "created": local_text(database.created, call.sandbox.tz),
        "fields": wrapper_of([f.as_json() for f in database.fields]),
        "interests": wrapper_of(
            [{"ID": str(i.id), "name": i.name, "group": i.group} for i in database.interests]
        ),
        "collections": wrapper_of([]),
        "intentions": {
            "email": "email" in has,
            "sms": "phone_gsm" in has,
            "fax": "phone_fax" in has,
            "pdf": False,
        },
    }


@route("GET", r"databases")
async def list_databases(call: Call) -> web.Response:
    items = [database_json(call, d) for d in call.sandbox.account.databases.values()]
    return json_reply(paged(call.query, items))


@route("POST", r"databases")
async def create_database(call: Call) -> web.Response:
    body = await call.body()
    database = call.sandbox.account.create_database(
        php_string(body.get("name")),
        php_string(body.get("description")),
        truthy(body.get("archived")),
    )
    return _created(call, "database", database.id)


@route("GET", r"database/(?P<db>[^/]+)")
async def get_database(call: Call) -> web.Response:
    return json_reply(database_json(call, call.sandbox.account.database(call.params["db"])))


@route("PUT", r"database/(?P<db>[^/]+)")
async def edit_database(call: Call) -> web.Response:
    account = call.sandbox.account
    database = account.database(call.params["db"])
    body = await call.body()
    if "name" in body:
        name = php_string(body["name"]).strip()
        clash = any(
            d is not database and d.name.lower() == name.lower() for d in account.databases.values()
        )
        if not name or clash:
            raise SandboxError("Invalid database name")
        database.name = name
    if "description" in body:
        database.description = php_string(body["description"])
    if "archived" in body:
        database.archived = truthy(body["archived"])
    return no_content()


@route("POST", r"database/(?P<db>[^/]+)/copy")
async def copy_database(call: Call) -> web.Response:
    account = call.sandbox.account
    body = await call.body()
    options = body.get("options") if isinstance(body.get("options"), dict) else {}
    copy = account.copy_database(
        account.database(call.params["db"]), php_string(body.get("name")), options
    )
    return _created(call, "database", copy.id)


# fields and interests --------------------------------------------------------------------------
@route("GET", r"database/(?P<db>[^/]+)/fields")
async def list_fields(call: Call) -> web.Response:
    database = call.sandbox.account.database(call.params["db"])
    return json_reply(paged(call.query, [f.as_json() for f in database.fields]))


@route("POST", r"database/(?P<db>[^/]+)/fields")
async def create_field(call: Call) -> web.Response:
    account = call.sandbox.account
    new = account.create_field(account.database(call.params["db"]), await call.body())
    return _created(call, "field", new.id)


def _field(call: Call) -> tuple[Database, Any]:
    database = call.sandbox.account.database(call.params["db"])
    target = database.field_by_ref(call.params["field"])
    if target is None:
        raise SandboxError("No field with supplied ID")
    return database, target


@route("PUT", r"database/(?P<db>[^/]+)/field/(?P<field>[^/]+)")
async def edit_field(call: Call) -> web.Response:
    database, target = _field(call)
    call.sandbox.account.edit_field(database, target, await call.body())
    return no_content()


@route("DELETE", r"database/(?P<db>[^/]+)/field/(?P<field>[^/]+)")
async def delete_field(call: Call) -> web.Response:
    database, target = _field(call)
    call.sandbox.account.delete_field(database, target)
    return no_content({"X-Deleted": f"field {target.id}"})


@route("GET", r"database/(?P<db>[^/]+)/interests")
async def list_interests(call: Call) -> web.Response:
    database = call.sandbox.account.database(call.params["db"])
    items = [{"ID": str(i.id), "name": i.name, "group": i.group} for i in database.interests]
    return json_reply(paged(call.query, items))


@route("POST", r"database/(?P<db>[^/]+)/interests")
async def create_interest(call: Call) -> web.Response:
    from sandbox.copernica.state import Interest

    account = call.sandbox.account
    database = account.database(call.params["db"])
    body = await call.body()
    name = php_string(body.get("name")).strip()
    if not name or any(i.name.lower() == name.lower() for i in database.interests):
        raise SandboxError("Invalid interest name")
    interest = Interest(account.new_id("interest"), name, php_string(body.get("group")))
    database.interests.append(interest)
    return _created(call, "interest", interest.id)


# profiles --------------------------------------------------------------------------------------
def select_profiles(
    call: Call, database: Database, members: list[Profile] | None = None
) -> list[Profile]:
    """Apply ``fields[]``, ``orderby`` and ``order`` to the live profiles of a database (or to
    ``members``, a view's); over a whole database an equality starts from its index."""
    sandbox = call.sandbox
    conditions = parse_conditions(condition_params(call.query) or [], database, sandbox.tz)
    pool = candidates(database, conditions) if members is None else members
    found = [p for p in pool if p.removed is None and matches_all(p, conditions)]
    key = sort_key(call.query.get("orderby", "id"), database)
    if key is None:
        random.shuffle(found)
    else:
        found.sort(key=key, reverse=call.query.get("order", "asc").lower() == "desc")  # type: ignore[arg-type]
    return found


def profiles_reply(call: Call, database: Database, found: list[Profile]) -> web.Response:
    dataonly = truthy(call.query.get("dataonly", "false"))
    wrapper = paged(call.query, found)
    wrapper["data"] = [
        call.sandbox.account.profile_json(database, p, dataonly=dataonly) for p in wrapper["data"]
    ]
    return json_reply(wrapper)


def ids_reply(call: Call, found: list[Profile]) -> web.Response:
    """A bare JSON array of string ids, paged like every list (``start``, ``limit`` of 100 by
    default, at most ``profileids_cap``); unpaged with ``profileids_paged`` off, unless
    ``start``/``limit`` are given."""
    variants = call.sandbox.variants
    ids = [str(p.id) for p in found]
    if variants.profileids_paged or "start" in call.query or "limit" in call.query:
        page = paged(call.query, ids)
        ids = page["data"][: max(0, variants.profileids_cap)]
    return json_reply(ids)


@route("GET", r"database/(?P<db>[^/]+)/profiles")
async def list_profiles(call: Call) -> web.Response:
    database = call.sandbox.account.database(call.params["db"])
    return profiles_reply(call, database, select_profiles(call, database))


@route("GET", r"database/(?P<db>[^/]+)/profileids")
async def list_profile_ids(call: Call) -> web.Response:
    database = call.sandbox.account.database(call.params["db"])
    return ids_reply(call, select_profiles(call, database))


@route("POST", r"database/(?P<db>[^/]+)/profiles")
async def create_profile(call: Call) -> web.Response:
    account = call.sandbox.account
    database = account.database(call.params["db"])
    body = await call.body()
    profile = account.create_profile(database, body.get("fields"), body.get("interests"), "rest")
    return _created(call, "profile", profile.id)


@route("PUT", r"database/(?P<db>[^/]+)/profiles")
async def update_profiles(call: Call) -> web.Response:
    """Update every match of ``fields[]``; with ``create`` and no match, create one (201)."""
    account = call.sandbox.account
    database = account.database(call.params["db"])
    if condition_params(call.query) is None:
        raise SandboxError("URL parameter fields is required")
    body = await call.body()
    matches = select_profiles(call, database)
    if not matches and truthy(call.query.get("create", "false")):
        profile = account.create_profile(
            database, body.get("fields"), body.get("interests"), "rest"
        )
        return _created(call, "profile", profile.id)
    for profile in matches:
        account.update_profile(database, profile, body.get("fields"), body.get("interests"), "rest")
    return no_content()


@route("DELETE", r"database/(?P<db>[^/]+)/profiles")
async def delete_profiles(call: Call) -> web.Response:
    account = call.sandbox.account
    database = account.database(call.params["db"])
    body = await call.body()
    wanted = body.get("profiles")
    if not isinstance(wanted, list):
        raise SandboxError("Invalid data provided")
    response = no_content()
    for ref in wanted:
        profile = database.profiles.get(php_int(ref))
        if profile is not None and profile.removed is None:
            account.delete_profile(database, profile, "rest")
            response.headers.add("X-Deleted", f"profile {profile.id}")
    return response


@route("GET", r"profile/(?P<profile>[^/]+)")
async def get_profile(call: Call) -> web.Response:
    account = call.sandbox.account
    database, profile = account.profile(call.params["profile"])
    return json_reply(account.profile_json(database, profile))


@route("GET", r"profile/(?P<profile>[^/]+)/fields")
async def get_profile_fields(call: Call) -> web.Response:
    account = call.sandbox.account
    database, profile = account.profile(call.params["profile"])
    return json_reply(account.field_map(database, profile))


@route("GET", r"profile/(?P<profile>[^/]+)/interests")
async def get_profile_interests(call: Call) -> web.Response:
    database, profile = call.sandbox.account.profile(call.params["profile"])
    return json_reply(sorted(profile.interests))


@route("PUT", r"profile/(?P<profile>[^/]+)")
async def update_profile(call: Call) -> web.Response:
    account = call.sandbox.account
    database, profile = account.profile(call.params["profile"])
    body = await call.body()
    account.update_profile(
        database, profile, body.get("fields"), body.get("interests"), "rest", body.get("secret")
    )
    return no_content()


@route("PUT", r"profile/(?P<profile>[^/]+)/fields")
async def update_profile_fields(call: Call) -> web.Response:
    account = call.sandbox.account
    database, profile = account.profile(call.params["profile"])
    account.update_profile(database, profile, await call.body(), None, "rest")
    return no_content()


@route("DELETE", r"profile/(?P<profile>[^/]+)")
async def delete_profile(call: Call) -> web.Response:
    account = call.sandbox.account
    database, profile = account.profile(call.params["profile"])
    body = await call.body()
    account.delete_profile(database, profile, "rest", completely=truthy(body.get("completely")))
    return no_content({"X-Deleted": f"profile {profile.id}"})


# selections ------------------------------------------------------------------------------------
def view_json(call: Call, view: Any) -> dict[str, Any]:
    nested = view.parent_id is not None
    children = any(v.parent_id == view.id for v in call.sandbox.account.views.values())
    return {
        "ID": str(view.id),
        "name": view.name,
        "description": view.description,
        "parent-type": "view" if nested else "database",
        "parent-id": str(view.parent_id if nested else view.database_id),
        "has-children": children,
        "has-referred": False,
        "has-rules": bool(view.rules),
        "database": str(view.database_id),
        "last-built": local_text(view.last_built, call.sandbox.tz),
    }


@route("GET", r"database/(?P<db>[^/]+)/views")
async def list_views(call: Call) -> web.Response:
    account = call.sandbox.account
    database = account.database(call.params["db"])
    views = [
        view_json(call, v)
        for v in account.views.values()
        if v.database_id == database.id and v.parent_id is None  # nested ones: view/$id/views
    ]
    return json_reply(paged(call.query, views))


@route("POST", r"database/(?P<db>[^/]+)/views")
async def create_view(call: Call) -> web.Response:
    account = call.sandbox.account
    body = await call.body()
    name = php_string(body.get("name")).strip()
    if not name:
        raise SandboxError("Invalid data provided")
    view = account.create_view(
        account.database(call.params["db"]), name, php_string(body.get("description"))
    )
    return _created(call, "view", view.id)


@route("GET", r"view/(?P<view>[^/]+)/views")
async def list_nested_views(call: Call) -> web.Response:
    account = call.sandbox.account
    parent = account.view(call.params["view"])
    views = [view_json(call, v) for v in account.views.values() if v.parent_id == parent.id]
    return json_reply(paged(call.query, views))


@route("GET", r"view/(?P<view>[^/]+)")
async def get_view(call: Call) -> web.Response:
    return json_reply(view_json(call, call.sandbox.account.view(call.params["view"])))


def members_of(call: Call, view: Any) -> tuple[Database, list[Profile]]:
    """The live profiles a selection holds: a nested one narrows the selections around it."""
    account = call.sandbox.account
    database = account.databases[view.database_id]
    members = database.live_profiles()
    for level in account.view_chain(view):
        rules = parse_conditions(level.rules, database, call.sandbox.tz)
        members = [p for p in members if matches_all(p, rules)]
    return database, members


def view_members(call: Call) -> tuple[Database, list[Profile]]:
    database, members = members_of(call, call.sandbox.account.view(call.params["view"]))
    return database, select_profiles(call, database, members)


@route("GET", r"view/(?P<view>[^/]+)/profiles")
async def list_view_profiles(call: Call) -> web.Response:
    database, members = view_members(call)
    return profiles_reply(call, database, members)


@route("GET", r"view/(?P<view>[^/]+)/profileids")
async def list_view_profile_ids(call: Call) -> web.Response:
    return ids_reply(call, view_members(call)[1])


# content ---------------------------------------------------------------------------------------
def ms_template_json(template: Any) -> dict[str, Any]:
    return {
        "id": str(template.id),
        "name": template.name,
        "from_address": {"name": template.from_name, "email": template.from_email},
        "subject": template.subject,
        "type": template.type,
        "archived": template.archived,
        "directory": template.directory,
    }


@route("GET", MS + r"/templates")
async def list_ms_templates(call: Call) -> web.Response:
    items = [ms_template_json(t) for t in call.sandbox.account.ms_templates.values()]
    return json_reply(paged(call.query, items))


@route("GET", MS + r"/template/(?P<id>[^/]+)")
async def get_ms_template(call: Call) -> web.Response:
    template = call.sandbox.account.ms_templates.get(php_int(call.params["id"]))
    if template is None:
        raise SandboxError("No template with supplied ID")
    return json_reply(ms_template_json(template))


def pub_template_json(template: Any) -> dict[str, Any]:
    return {
        "id": str(template.id),
        "name": template.name,
        "archived": 1 if template.archived else None,
    }


def document_json(document: Any, source: bool = True) -> dict[str, Any]:
    body = {
        "id": str(document.id),
        "template": str(document.template_id),
        "name": document.name,
        "from_address": document.from_address,
        "subject": document.subject,
        "archived": 1 if document.archived else None,
    }
    if source:
        body["source"] = document.source
    return body


@route("GET", PUB + r"/templates")
async def list_publisher_templates(call: Call) -> web.Response:
    items = [pub_template_json(t) for t in call.sandbox.account.publisher_templates.values()]
    return json_reply(paged(call.query, items))


@route("GET", PUB + r"/template/(?P<id>[^/]+)")
async def get_publisher_template(call: Call) -> web.Response:
    template = call.sandbox.account.publisher_templates.get(php_int(call.params["id"]))
    if template is None:
        raise SandboxError("No template with supplied ID")
    return json_reply(pub_template_json(template))


@route("GET", PUB + r"/documents")
async def list_documents(call: Call) -> web.Response:
    source = truthy(call.query.get("source", "true"))
    items = [document_json(d, source) for d in call.sandbox.account.documents.values()]
    return json_reply(paged(call.query, items))


@route("GET", PUB + r"/document/(?P<id>[^/]+)")
async def get_document(call: Call) -> web.Response:
    document = call.sandbox.account.documents.get(php_int(call.params["id"]))
    if document is None:
        raise SandboxError("No document with supplied ID")
    return json_reply(document_json(document))


# emailings -------------------------------------------------------------------------------------
def target_profiles(call: Call, target_type: str, target: str) -> tuple[Database, list[Profile]]:
    account = call.sandbox.account
    if target_type not in TARGET_TYPES:
        raise SandboxError("Invalid target type")
    if target_type == "database":
        database = account.database(target)
        return database, database.live_profiles()
    if target_type == "view":
        return members_of(call, account.view(target))
    database, profile = account.profile(target)
    if profile.removed is not None:
        raise SandboxError("This profile has already been removed")
    return database, [profile]


def with_email(database: Database, profiles: list[Profile]) -> list[int]:
    email = next((f for f in database.fields if f.type == "email"), None)
    if email is None:
        return []
    return [p.id for p in profiles if p.values.get(email.id, "").strip()]


def _send_path_served(call: Call) -> bool:
    """``send_paths``: documented (``ms/emailing``, ``publisher/emailing``), new
    (``draganddrop/emailing``, ``html/emailing``) or both."""
    new = call.params["product"] in ("draganddrop", "html")
    paths = call.sandbox.variants.send_paths
    return paths == "both" or (paths == "new") == new


async def _send(call: Call, product: str) -> web.Response:
    if not _send_path_served(call):
        raise SandboxError("Invalid method")
    account = call.sandbox.account
    body = await call.body()
    target_type = php_string(body.get("targettype"))
    target = php_string(body.get("target"))
    if not target_type or not target:
        raise SandboxError("Invalid data provided")
    if product == "ms":
        template = account.ms_templates.get(php_int(body.get("template")))
        if template is None:
            raise SandboxError("No template with supplied ID")
        content_id, subject = template.id, template.subject
        from_name, from_email = template.from_name, template.from_email
    else:
        document = account.documents.get(php_int(body.get("document")))
        if document is None:
            raise SandboxError("No document with supplied ID")
        content_id, subject = document.id, document.subject
        from_name, _, rest = document.from_address.partition("<")
        from_name, from_email = from_name.strip().strip('"'), rest.rstrip(">").strip()
    if not subject or not from_email:
        raise SandboxError("Template is not complete: subject and from address are required")
    database, profiles = target_profiles(call, target_type, target)
    settings = body.get("settings") if isinstance(body.get("settings"), dict) else {}
    emailing = Emailing(
        id=account.new_id("emailing"),
        product="ms" if product == "ms" else "publisher",
        content_id=content_id,
        subject=subject,
        from_name=from_name,
        from_email=from_email,
        target_type=target_type,
        target_id=php_int(target) if target.isdigit() else database.id,
        destinations=with_email(database, profiles),
        timestamp=account.now(),
        description=php_string(settings.get("description")),
    )
    account.emailings[emailing.id] = emailing
    return _created(call, f"{product}/emailing", emailing.id)


@route("POST", MS + r"/emailing")
async def send_ms_emailing(call: Call) -> web.Response:
    return await _send(call, "ms")


@route("POST", PUB + r"/emailing")
async def send_publisher_emailing(call: Call) -> web.Response:
    return await _send(call, "publisher")


def emailing_json(call: Call, emailing: Emailing) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(emailing.id),
        "timestamp": local_text(emailing.timestamp, call.sandbox.tz),
        "subject": emailing.subject,
        "destinations": len(emailing.destinations),
        "type": "individual" if emailing.target_type == "profile" else "mass",
        "target": {
            "type": emailing.target_type,
            "sources": [{"id": str(emailing.target_id), "type": emailing.target_type}],
        },
    }
    if emailing.product == "ms":
        body["template"] = str(emailing.content_id)
        body["from_address"] = {"name": emailing.from_name, "email": emailing.from_email}
    else:
        stats = statistics(call, emailing)
        body["document"] = str(emailing.content_id)
        body["description"] = emailing.description
        body["from_address"] = f'"{emailing.from_name}" <{emailing.from_email}>'
        for key in ("clicks", "impressions", "errors", "unsubscribes", "abuses"):
            body[key] = str(stats[key]["total"])
    return body


def product_of(call: Call) -> str:
    return "ms" if call.params["product"] in ("ms", "draganddrop") else "publisher"


def find_emailing(call: Call) -> Emailing:
    emailing = call.sandbox.account.emailings.get(php_int(call.params["id"]))
    if emailing is None or emailing.product != product_of(call):
        raise SandboxError("No emailing with supplied ID")
    return emailing


def statistics(call: Call, emailing: Emailing) -> dict[str, Any]:
    """Deterministic from (seed, emailing id): the same emailing always shows the same numbers."""
    rng = random.Random(f"{call.sandbox.settings.statistics_seed}:{emailing.id}")
    destinations = len(emailing.destinations)
    errors = rng.randint(0, destinations // 20)
    deliveries = destinations - errors
    impressions = round(deliveries * rng.uniform(0.2, 0.6))
    clicks = round(impressions * rng.uniform(0.1, 0.4))
    unsubscribes = rng.randint(0, deliveries // 50)
    abuses = rng.randint(0, deliveries // 200)

    def pair(unique: int) -> dict[str, int]:
        return {"total": unique + rng.randint(0, unique), "unique": unique}

    body = {
        "destinations": destinations,
        "deliveries": {"total": deliveries},
        "errors": {"total": errors, "unique": errors},
        "impressions": pair(impressions),
        "clicks": pair(clicks),
        "unsubscribes": {"total": unsubscribes, "unique": unsubscribes},
        "abuses": {"total": abuses, "unique": abuses},
        "unknown": {"total": 0},
        "retries": 0,
    }
    body["dominant_results"] = {
        "destinations": destinations,
        "errors": errors,
        "abuses": abuses,
        "unsubscribes": unsubscribes,
        "clicks": clicks,
        "impressions": impressions - clicks,
        "deliveries": deliveries - impressions,
    }
    return body


@route("GET", MS + r"/emailings")
async def list_ms_emailings(call: Call) -> web.Response:
    return _list_emailings(call)


@route("GET", PUB + r"/emailings")
async def list_publisher_emailings(call: Call) -> web.Response:
    return _list_emailings(call)


def _list_emailings(call: Call) -> web.Response:
    product = product_of(call)
    found = [e for e in call.sandbox.account.emailings.values() if e.product == product]
    return json_reply(paged(call.query, [emailing_json(call, e) for e in found]))


def one_emailing(call: Call, body: dict[str, Any]) -> web.Response:
    """A single emailing: inside ``data``, as documented (the variant sends it bare)."""
    return json_reply({"data": body} if call.sandbox.variants.emailing_data_wrapper else body)


@route("GET", MS + r"/emailing/(?P<id>[^/]+)")
async def get_ms_emailing(call: Call) -> web.Response:
    return one_emailing(call, {**emailing_json(call, find_emailing(call)), "tags": []})


@route("GET", PUB + r"/emailing/(?P<id>[^/]+)")
async def get_publisher_emailing(call: Call) -> web.Response:
    return one_emailing(call, emailing_json(call, find_emailing(call)))


@route("GET", MS + r"/emailing/(?P<id>[^/]+)/statistics")
async def ms_statistics(call: Call) -> web.Response:
    return json_reply(statistics(call, find_emailing(call)))


@route("GET", PUB + r"/emailing/(?P<id>[^/]+)/statistics")
async def publisher_statistics(call: Call) -> web.Response:
    return json_reply(statistics(call, find_emailing(call)))


async def _destinations(call: Call) -> web.Response:
    emailing = find_emailing(call)
    sent = local_text(emailing.timestamp, call.sandbox.tz)
    items = [
        {
            "ID": str(emailing.id * 100000 + n),
            "mailing": str(emailing.id),
            "timestampsent": sent,
            "profile": str(profile_id),
            "subprofile": None,
        }
        for n, profile_id in enumerate(emailing.destinations, start=1)
    ]
    return json_reply(paged(call.query, items))


route("GET", MS + r"/emailing/(?P<id>[^/]+)/destinations")(_destinations)
route("GET", PUB + r"/emailing/(?P<id>[^/]+)/destinations")(_destinations)


# webhooks --------------------------------------------------------------------------------------
def _webhook_spec(call: Call, body: dict[str, Any], hook: Webhook) -> None:
    if "handler" in body:
        handler = php_string(body["handler"]).strip()
        if not handler.startswith(("http://", "https://")):
            raise SandboxError("Invalid handler")
        hook.handler = handler
    if "trigger" in body:
        trigger = php_string(body["trigger"]).strip().lower()
        if trigger not in TRIGGERS:
            raise SandboxError("Invalid trigger")
        hook.trigger = trigger
    if "callers" in body:
        callers = body["callers"]
        if isinstance(callers, str):
            callers = [c for c in callers.split(",") if c.strip()]
        if isinstance(callers, dict):
            callers = list(callers.values())
        hook.callers = [php_string(c).strip().lower() for c in callers] if callers else None
    if body.get("database"):
        hook.database_id = call.sandbox.account.database(php_string(body["database"])).id


@route("POST", r"webhooks")
async def create_webhook(call: Call) -> web.Response:
    account = call.sandbox.account
    body = await call.body()
    if not body.get("handler") or not body.get("trigger"):
        raise SandboxError("Invalid data provided")
    hook = Webhook(account.new_id("webhook"), "", "", None)
    _webhook_spec(call, body, hook)
    account.webhooks[hook.id] = hook
    return _created(call, "webhook", hook.id)


def find_webhook(call: Call) -> Webhook:
    hook = call.sandbox.account.webhooks.get(php_int(call.params["id"]))
    if hook is None:
        raise SandboxError("No webhook with supplied ID")
    return hook


@route("GET", r"webhook/(?P<id>[^/]+)")
async def get_webhook(call: Call) -> web.Response:
    return json_reply(find_webhook(call).as_json())


@route("PUT", r"webhook/(?P<id>[^/]+)")
async def edit_webhook(call: Call) -> web.Response:
    _webhook_spec(call, await call.body(), find_webhook(call))
    return no_content()


@route("DELETE", r"webhook/(?P<id>[^/]+)")
async def delete_webhook(call: Call) -> web.Response:
    hook = find_webhook(call)
    del call.sandbox.account.webhooks[hook.id]
    return no_content({"X-Deleted": f"webhook {hook.id}"})
