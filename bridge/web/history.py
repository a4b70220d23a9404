"""What the sync did, made visible: the fields that sync and how (``/sfcp/fields``), one contact's
history (``/sfcp/history``), the conflicts (``/sfcp/conflicts``) and the runs (``/sfcp/runs``);
the conflict rule as a setting (``POST /config/conflict-rule``) and "Refresh statistics".

The pages read the audit log, which keeps ids, field names, directions and outcomes; the values of
a conflict only for the audit retention window (design.md §6), so an older conflict shows that
they were erased. Every query is scoped to the session's tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from aiohttp import web

from bridge.copernica.models import Field
from bridge.db import QUERIES
from bridge.sync import statistics
from bridge.sync.engine import valid_salesforce_id
from bridge.sync.mapping import SKIPPED_SF_TYPES, build_mapping
from bridge.sync.objects import CONTACT
from bridge.tenants import Tenant, load_tenant, update_tenant
from bridge.vocabulary import (
    CONFLICT_RULES,
    DIRECTION_LABELS,
    DIRECTION_WORDS,
    LINK_FIELD_FALLBACK,
    ConflictRule,
    Direction,
)
from bridge.web import platforms
from bridge.web.guard import admin_required, current, login_required, redirect
from bridge.web.keys import POOL, QUEUE
from bridge.web.render import render

routes = web.RouteTableDef()

HISTORY_LIMIT = 200  # entries of one contact shown, newest first
CONFLICTS_LIMIT = 100
RUNS_LIMIT = 50
MATCHES_LIMIT = 20  # contacts or profiles one e-mail address may find

RULE_LABELS: dict[ConflictRule, str] = {
    "newest": "the newest change wins",
    "salesforce_wins": "Salesforce wins",
    "copernica_wins": "Copernica wins",
}
SIDE_LABELS = {"salesforce": "Salesforce", "copernica": "Copernica"}
ACTION_WORDS = {
    "create": "created", "update": "updated", "delete": "deleted", "undelete": "restored",
    "merge": "merged", "conflict": "conflict", "copernica_delete": "deleted in Copernica",
}
RUN_KINDS = {"full": "Full sync", "reconcile": "Reconcile", "manual": "Manual sync"}


async def _tenant(request: web.Request) -> Tenant:
    async with request.app[POOL].acquire() as conn:
        return await load_tenant(conn, current(request).tenant_id)


# --- the fields view ----------------------------------------------------------------------


def field_rows(
    cp_fields: Iterable[Field],
    described: Mapping[str, dict[str, Any]],
    *,
    direction: Direction,
    link_field: str | None,
    timezone: str,
) -> list[dict[str, Any]]:
    """One row per Copernica field: the Salesforce field it syncs with, which way, and why a
    field does not sync. ``link_field`` is the Copernica field keeping the Salesforce Id."""
    cp_fields = list(cp_fields)
    mapping = build_mapping(
        cp_fields, described, link_field=link_field or LINK_FIELD_FALLBACK, timezone=timezone
    )
    mapped = {fm.cp_name: fm for fm in mapping.fields}
    by_lower = {name.lower(): describe for name, describe in described.items()}
    rows = []
    for cp in cp_fields:
        fm = mapped.get(cp.name)
        row: dict[str, Any] = {"copernica": cp.name, "copernica_type": cp.type,
                               "salesforce": None, "salesforce_type": None,
                               "read_only": False, "synced": fm is not None}
        if fm is not None:
            row.update(salesforce=fm.sf_name, salesforce_type=fm.sf_type,
                       read_only=not fm.to_salesforce, way=_way(direction, fm.to_salesforce))
            row["synced"] = row["way"] is not None
            if row["way"] is None:
                row["why"] = "read-only in Salesforce, and the direction is Copernica to Salesforce"
        elif link_field is not None and cp.name.lower() == link_field.lower():
            row.update(salesforce="Id", salesforce_type="id", read_only=True,
                       way="Salesforce → Copernica", link=True)
            row["synced"] = True
        else:
            describe = by_lower.get(cp.name.lower())
            if describe is None:
                row["why"] = "no Salesforce contact field has this name"
            elif str(describe.get("type")) in SKIPPED_SF_TYPES:
                row["why"] = f"Salesforce {describe.get('type')} fields cannot be synced"
            else:
                row["why"] = "not synced"
        rows.append(row)
    return rows


def _way(direction: Direction, writable: bool) -> str | None:
    if direction == "sf_to_cp":
        return "Salesforce → Copernica"
    if direction == "cp_to_sf":
        return "Copernica → Salesforce" if writable else None
    return "Both ways" if writable else "Salesforce → Copernica only"


def link_field_of(cp_fields: Iterable[Field], wanted: str) -> str | None:
    """The Copernica field holding the Salesforce Id, as the sync chooses it (the tenant's
    setting, else the bridge's own ``SalesforceId``); None until the first sync creates it."""
    names = {f.name.lower(): f.name for f in cp_fields}
    return names.get(wanted.lower()) or names.get(LINK_FIELD_FALLBACK.lower())


@routes.get("/sfcp/fields")
@login_required
async def fields_view(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    context: dict[str, Any] = {"rows": [], "problem": None, "link_field": None,
                               "direction": DIRECTION_LABELS[tenant.direction]}
    if not tenant.copernica_database:
        context["problem"] = ("No Copernica database is synchronised yet: choose one in the "
                              "settings.")
        return render(request, "fields.html", context)
    try:
        copernica = await platforms.copernica(request, tenant.id)
        salesforce = await platforms.salesforce(request, tenant.id)
        cp_fields, described = await platforms.bounded(asyncio.gather(
            platforms.collect(copernica.fields(tenant.copernica_database)),
            salesforce.fields("Contact"),
        ))
    except platforms.FAILURES as exc:
        context["problem"] = f"The fields could not be read: {platforms.user_message(exc)}"
        return render(request, "fields.html", context)
    link_field = link_field_of(cp_fields, tenant.link_field)
    context["link_field"] = link_field
    context["rows"] = field_rows(cp_fields, described, direction=tenant.direction,
                                 link_field=link_field, timezone=tenant.copernica_timezone)
    return render(request, "fields.html", context)


# --- one contact's history and the conflicts ----------------------------------------------


def describe_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """An audit entry in words: what happened, which way, and for a conflict both values, who
    won and why."""
    entry: dict[str, Any] = {
        "at": row["at"], "salesforce_id": row["salesforce_id"],
        "copernica_id": row["copernica_id"], "fields": list(row["fields"] or []),
        "what": ACTION_WORDS.get(row["action"], row["action"]),
        "way": DIRECTION_WORDS.get(row["direction"], row["direction"]),
        "outcome": row["outcome"], "conflict": row["action"] == "conflict",
    }
    if entry["conflict"]:
        detail = row["detail"]  # None once the retention window erased it
        winner = str(row["outcome"]).removesuffix(" wins")
        entry["winner"] = SIDE_LABELS.get(winner, winner)
        entry["erased"] = detail is None
        if detail is not None:
            entry["salesforce_value"] = detail.get("salesforce")
            entry["copernica_value"] = detail.get("copernica")
            entry["why"] = conflict_reason(detail.get("rule"), winner)
    return entry


SALESFORCE_DECIDES = "read-only in Salesforce, or the direction is Salesforce to Copernica"


def conflict_reason(rule: str, winner: str) -> str:
    """Why ``winner`` took a conflict under ``rule``: Salesforce also decides fields read-only
    there and every field in the direction Salesforce to Copernica (``bridge.sync.merge``)."""
    if rule == "salesforce_wins":
        return "rule “Salesforce wins”"
    if winner == "copernica":
        return ("rule “the newest change wins”: the Copernica change was newer" if rule == "newest"
                else "rule “Copernica wins”")
    if rule == "newest":
        return ("rule “the newest change wins”: the Salesforce change was newer or as new, or the "
                f"field is {SALESFORCE_DECIDES}")
    return f"Salesforce decides this field: it is {SALESFORCE_DECIDES}"


def full_salesforce_id(sf_id: str) -> str:
    """The 18-character form of a Salesforce Id, which the API returns and the audit log keeps:
    the 15 characters users copy from a URL, and three that say which of them are upper case."""
    if len(sf_id) == 18:
        return sf_id
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, c in enumerate(sf_id[start:start + 5]) if "A" <= c <= "Z")
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return sf_id + suffix


async def _who(
    request: web.Request, tenant: Tenant, query: str
) -> tuple[set[str], set[str], list[str]]:
    """The Salesforce Contact Ids and Copernica profile ids a search means, and what could not
    be asked. An e-mail address is looked up on both platforms."""
    if valid_salesforce_id(query):
        return {full_salesforce_id(query)}, set(), []
    if query.isdigit():
        return set(), {query}, []
    sf_ids: set[str] = set()
    cp_ids: set[str] = set()
    problems = []
    try:
        salesforce = await platforms.salesforce(request, tenant.id)
        found = await platforms.bounded(salesforce.records_by_field(
            CONTACT.sobject, ["Id"], "Email", query, limit=MATCHES_LIMIT
        ))
        sf_ids = {str(record["Id"]) for record in found}
    except platforms.FAILURES as exc:
        problems.append(f"Salesforce could not be searched: {platforms.user_message(exc)}")
    if tenant.copernica_database:
        try:
            copernica = await platforms.copernica(request, tenant.id)
            profiles = await platforms.bounded(copernica.find_profiles(
                tenant.copernica_database, {"Email": query}, MATCHES_LIMIT))
            # Copernica drops a condition on a field it does not have: check what came back.
            cp_ids = {str(p.id) for p in profiles if _email(p.fields) == query.lower()}
        except platforms.FAILURES as exc:
            problems.append(f"Copernica could not be searched: {platforms.user_message(exc)}")
    return sf_ids, cp_ids, problems


def _email(fields: Mapping[str, str]) -> str:
    return next((v for k, v in fields.items() if k.lower() == "email"), "").strip().lower()


@routes.get("/sfcp/history")
@login_required
async def history(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    query = request.query.get("q", "").strip()[:200]
    context: dict[str, Any] = {"query": query, "entries": None, "problems": [], "error": None,
                               "salesforce_ids": [], "copernica_ids": []}
    if not query:
        return render(request, "history.html", context)
    if "@" not in query and not valid_salesforce_id(query) and not query.isdigit():
        context["error"] = ("Type an e-mail address, a Salesforce Contact Id (15 or 18 characters) "
                            "or a Copernica profile ID.")
        return render(request, "history.html", context, status=400)
    sf_ids, cp_ids, context["problems"] = await _who(request, tenant, query)
    async with request.app[POOL].acquire() as conn:
        linked = await conn.fetch(QUERIES["linked_profiles"], tenant.id, list(sf_ids), list(cp_ids))
        for link in linked:
            sf_ids.add(link["salesforce_id"])
            cp_ids.add(link["copernica_id"])
        rows = await conn.fetch(QUERIES["contact_history"], tenant.id, list(sf_ids), list(cp_ids),
                                HISTORY_LIMIT)
    context.update(entries=[describe_entry(r) for r in rows], limit=HISTORY_LIMIT,
                   salesforce_ids=sorted(sf_ids), copernica_ids=sorted(cp_ids, key=int))
    return render(request, "history.html", context)


@routes.get("/sfcp/conflicts")
@login_required
async def conflicts(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(QUERIES["recent_conflicts"], tenant.id, CONFLICTS_LIMIT)
    return render(request, "conflicts.html", {
        "entries": [describe_entry(r) for r in rows], "limit": CONFLICTS_LIMIT,
        "rule": RULE_LABELS[tenant.conflict_rule], "is_admin": current(request).role == "admin",
    })


# --- the runs -----------------------------------------------------------------------------


def describe_run(row: asyncpg.Record) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    return {
        "id": row["id"], "kind": RUN_KINDS.get(row["kind"], row["kind"]), "state": row["state"],
        "trigger": row["requested_by"] or "the bridge", "created_at": row["created_at"],
        "started_at": started, "finished_at": finished,
        "seconds": round((finished - started).total_seconds()) if started and finished else None,
        "done": row["done"], "total": row["total"], "summary": row["message"],
    }


@routes.get("/sfcp/runs")
@login_required
async def run_history(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(QUERIES["run_history"], current(request).tenant_id, RUNS_LIMIT)
    return render(request, "runs.html", {"runs": [describe_run(r) for r in rows],
                                         "limit": RUNS_LIMIT})


# --- actions ------------------------------------------------------------------------------


@routes.post("/config/conflict-rule")
@admin_required
async def save_conflict_rule(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    rule = next((r for r in CONFLICT_RULES if r == form.get("conflict_rule")), None)
    if rule is None:
        raise redirect(request, "/config#conflict-rule", "Choose one of the conflict rules.",
                       "error")
    async with request.app[POOL].acquire() as conn:
        await update_tenant(conn, current(request).tenant_id, conflict_rule=rule)
    raise redirect(request, "/config#conflict-rule",
                   f"Conflict rule saved: {RULE_LABELS[rule]}. It settles every conflict from "
                   "now on.")


@routes.post("/sfcp/statistics")
@login_required
async def refresh_statistics(request: web.Request) -> web.StreamResponse:
    await statistics.refresh_now(request.app[QUEUE], current(request).tenant_id)
    raise redirect(request, "/sfcp#emailings",
                   "Refreshing the statistics: the figures are fetched from Copernica and written "
                   "to the Copernica emailing records in Salesforce now. This table shows "
                   "Copernica's figures as of this page.")
