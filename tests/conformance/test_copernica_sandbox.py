"""Contract tests: the Copernica sandbox answers the examples Copernica documents faithfully."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import pytest

from sandbox.copernica import SandboxSettings
from tests.fixtures.copernica import RunningSandbox

pytestmark = pytest.mark.asyncio


async def error_of(reply: Any) -> str:
    assert reply.status == 400, reply.status
    assert reply.headers["Content-Type"] == "application/json"
    return (await reply.json())["error"]["message"]


async def make_field(sb: RunningSandbox, name: str, type: str = "text", **spec: Any) -> int:
    reply = await sb.v3("POST", "database/1/fields", json={"name": name, "type": type, **spec})
    assert reply.status == 201, await reply.text()
    return int(reply.headers["X-Created"])


async def make_profile(sb: RunningSandbox, **fields: Any) -> int:
    reply = await sb.v3("POST", "database/1/profiles", json={"fields": fields})
    assert reply.status == 201
    return int(reply.headers["X-Created"])


async def search(sb: RunningSandbox, *conditions: str, **params: str) -> dict[str, Any]:
    query = [("fields[]", c) for c in conditions] + list(params.items())
    reply = await sb.v3("GET", "database/1/profiles", params=query)
    assert reply.status == 200, await reply.text()
    return await reply.json()


# authentication -------------------------------------------------------------------------------
async def test_v3_token_in_query_and_bad_token_is_400(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    reply = await sb.v3("GET", "identity")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert set(await reply.json()) >= {"id", "name", "description", "company"}
    bad = await sb.session.get(f"{sb.url}/v3/identity", params={"access_token": "nope"})
    assert await error_of(bad) == "Invalid access token"


async def test_v4_jwt_exchange_bearer_and_expiry(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    refused = await sb.session.post(f"{sb.url}/authenticate", data={"access_token": "nope"})
    assert await error_of(refused) == "Invalid access token"
    jwt = await sb.jwt()
    assert jwt.count(".") == 2
    ok = await sb.session.get(f"{sb.url}/v4/identity", headers={"Authorization": f"Bearer {jwt}"})
    assert ok.status == 200
    missing = await sb.session.get(f"{sb.url}/v4/identity")
    assert missing.status == 401
    assert (await missing.json())["error"]["message"] == "Invalid access token"
    query_token = await sb.session.get(
        f"{sb.url}/v4/identity", params={"access_token": "sandbox-token"}
    )
    assert query_token.status == 401
    await sb.admin("POST", "tokens/expire")
    expired = await sb.session.get(
        f"{sb.url}/v4/identity", headers={"Authorization": f"Bearer {jwt}"}
    )
    assert expired.status == 401


async def test_consumption_counts_api_calls(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    for _ in range(3):
        await sb.v3("GET", "identity")
    reply = await sb.v3(
        "GET", "consumption", params=[("begin", "2000-01-01"), ("end", "2999-12-31")]
    )
    assert (await reply.json())["apicalls"] == 4  # three identity calls and this one


# databases ------------------------------------------------------------------------------------
async def test_database_list_wrapper_and_string_ids(copernica_sandbox: RunningSandbox) -> None:
    body = await (await copernica_sandbox.v3("GET", "databases")).json()
    assert {k: body[k] for k in ("start", "limit", "count", "total")} == {
        "start": 0,
        "limit": 100,
        "count": 1,
        "total": 1,
    }
    item = body["data"][0]
    assert item["ID"] == "1" and item["archived"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", item["created"])
    for wrapper in ("fields", "interests", "collections"):
        assert set(item[wrapper]) == {"start", "limit", "count", "total", "data"}


async def test_database_create_edit_copy_and_no_delete(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    reply = await sb.v3("POST", "databases", json={"name": "Leads", "description": "d"})
    assert reply.status == 201 and await reply.read() == b""
    new_id = reply.headers["X-Created"]
    assert (await (await sb.v3("GET", "database/leads")).json())["ID"] == new_id  # name works
    edit = await sb.v3("PUT", f"database/{new_id}", json={"archived": True})
    assert edit.status == 204
    assert (await (await sb.v3("GET", f"database/{new_id}")).json())["archived"] is True
    copy = await sb.v3("POST", f"database/{new_id}/copy", json={"name": "Leads copy"})
    assert copy.status == 201 and copy.headers["X-Created"] != new_id
    assert await error_of(await sb.v3("DELETE", f"database/{new_id}")) == "Invalid method"
    assert await error_of(await sb.v3("GET", "database/999")) == "No database with supplied ID"
    dupe = await sb.v3("POST", "databases", json={"name": "LEADS"})
    assert dupe.status == 400


async def test_unknown_paths_and_verbs_are_invalid_method(
    copernica_sandbox: RunningSandbox,
) -> None:
    sb = copernica_sandbox
    assert await error_of(await sb.v3("GET", "nonsense")) == "Invalid method"
    assert await error_of(await sb.v3("PATCH", "database/1")) == "Invalid method"
    assert await error_of(await sb.v3("GET", "Databases")) == "Invalid method"  # case-sensitive


# fields ---------------------------------------------------------------------------------------
async def test_fields_create_list_edit_delete(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    email = await make_field(sb, "Email", "email")
    await make_field(sb, "Age", "integer", value="0")
    assert (
        await sb.v3("POST", "database/1/fields", json={"name": "E2", "type": "email"})
    ).status == 400
    assert (
        await sb.v3("POST", "database/1/fields", json={"name": "X", "type": "blob"})
    ).status == 400
    assert (await sb.v3("POST", "database/1/fields", json={"name": "id"})).status == 400
    listed = await (await sb.v3("GET", "database/1/fields")).json()
    assert [f["name"] for f in listed["data"]] == ["Email", "Age"]
    first = listed["data"][0]
    assert first["ID"] == str(email) and first["type"] == "email" and first["length"] == "255"
    assert (await sb.v3("PUT", f"database/1/field/{email}", json={"name": "Mail"})).status == 204
    deleted = await sb.v3("DELETE", "database/1/field/Age")
    assert deleted.status == 204 and deleted.headers["X-Deleted"].startswith("field ")
    names = [f["name"] for f in (await (await sb.v3("GET", "database/1/fields")).json())["data"]]
    assert names == ["Mail"]


# profiles: create and coercion ----------------------------------------------------------------
async def test_profile_create_coerces_values_to_strings(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Email", "email")
    await make_field(sb, "Age", "integer")
    await make_field(sb, "Score", "float")
    await make_field(sb, "Color", "select", value="red\ngreen*\nblue")
    await make_field(sb, "Born", "empty_date")
    await make_field(sb, "Seen", "datetime")
    await make_field(sb, "Note", "text", value="default")
    pid = await make_profile(
        sb,
        email="A@x.org",
        AGE="42abc",
        Score="1.50",
        Color="purple",
        Born="nonsense",
        Seen="2024-06-01T10:00:00Z",
        Unknown="ignored",
    )
    reply = await sb.v3("GET", f"profile/{pid}")
    profile = await reply.json()
    assert profile["ID"] == str(pid) and profile["database"] == "1"
    assert profile["fields"] == {
        "Email": "A@x.org",
        "Age": "42",
        "Score": "1.5",
        "Color": "",
        "Born": "",
        "Seen": "2024-06-01 12:00:00",  # moved to Europe/Amsterdam (CEST)
        "Note": "default",
    }
    assert profile["removed"] is False
    assert re.fullmatch(r"[0-9a-f]{28}", profile["secret"])
    defaults = await (await sb.v3("GET", f"profile/{await make_profile(sb)}/fields")).json()
    assert (
        defaults["Color"] == "green"
        and defaults["Age"] == "0"
        and defaults["Seen"] == ("0000-00-00 00:00:00")
    )


async def test_profile_create_form_encoded_and_bad_fields(
    copernica_sandbox: RunningSandbox,
) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Email", "email")
    reply = await sb.v3(
        "POST",
        "database/1/profiles",
        data="fields%5Bemail%5D=form%40x.org",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 201
    pid = reply.headers["X-Created"]
    assert reply.headers["X-location"].endswith(f"/v3/profile/{pid}")
    fields = await (await sb.v3("GET", f"profile/{pid}/fields")).json()
    assert fields == {"Email": "form@x.org"}
    bad = await sb.v3("POST", "database/1/profiles", json={"fields": ["not", "a", "map"]})
    assert await error_of(bad) == "Invalid data provided"
    assert await error_of(await sb.v3("GET", "profile/abc")) == "No entity with supplied ID"
    assert await error_of(await sb.v3("GET", "profile/0")) == "No entity with supplied ID"


# profiles: search and paging ------------------------------------------------------------------
@pytest.fixture
async def people(copernica_sandbox: RunningSandbox) -> list[int]:
    sb = copernica_sandbox
    await make_field(sb, "Email", "email")
    await make_field(sb, "Name")
    await make_field(sb, "Age", "integer")
    rows = [
        ("ann@x.org", "Ann", 30),
        ("bob@y.org", "Bob", 9),
        ("", "Cid", 100),
        ("dee@x.org", "Dee", 45),
    ]
    return [await make_profile(sb, Email=e, Name=n, Age=a) for e, n, a in rows]


def names(body: dict[str, Any]) -> list[str]:
    return [p["fields"]["Name"] for p in body["data"]]


async def test_every_operator(copernica_sandbox: RunningSandbox, people: list[int]) -> None:
    sb = copernica_sandbox
    assert names(await search(sb, "Name==ann")) == ["Ann"]  # case-insensitive text
    assert names(await search(sb, "Name!=Ann")) == ["Bob", "Cid", "Dee"]
    assert names(await search(sb, "Name<>Ann")) == ["Bob", "Cid", "Dee"]
    assert names(await search(sb, "Age<30")) == ["Bob"]  # numeric, not string, comparison
    assert names(await search(sb, "Age>30")) == ["Cid", "Dee"]
    assert names(await search(sb, "Age<=30")) == ["Ann", "Bob"]
    assert names(await search(sb, "Age>=45")) == ["Cid", "Dee"]
    assert names(await search(sb, "Email=~%@x.org")) == ["Ann", "Dee"]
    assert names(await search(sb, "Email!~%@x.org")) == ["Bob", "Cid"]
    assert names(await search(sb, "Name=~_o_")) == ["Bob"]
    assert names(await search(sb, "Email==")) == ["Cid"]  # empty right side matches empty
    assert names(await search(sb, "Email=~%x.org", "Age>40")) == ["Dee"]  # ANDed


async def test_pseudo_fields_and_ignored_conditions(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    assert names(await search(sb, f"id>{people[1]}")) == ["Cid", "Dee"]
    secret = (await (await sb.v3("GET", f"profile/{people[2]}")).json())["secret"]
    assert names(await search(sb, f"code=={secret}")) == ["Cid"]
    assert names(await search(sb, "modified>=2000-01-01 00:00:00")) == ["Ann", "Bob", "Cid", "Dee"]
    assert names(await search(sb, "modified<2000-01-01 00:00:00")) == []
    assert len((await search(sb, "Nope==1"))["data"]) == 4  # unknown field: condition dropped
    assert len((await search(sb, "Name ==Ann"))["data"]) == 4  # space before the operator
    assert names(await search(sb, "Name== Ann")) == []  # space after it is part of the value


async def test_order_paging_total_and_dataonly(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    assert names(await search(sb, orderby="Age", order="desc")) == ["Cid", "Dee", "Ann", "Bob"]
    assert names(await search(sb, orderby="Name")) == ["Ann", "Bob", "Cid", "Dee"]
    page = await search(sb, start="1", limit="2")
    assert (page["start"], page["limit"], page["count"], page["total"]) == (1, 2, 2, 4)
    assert names(page) == ["Bob", "Cid"]
    assert "total" not in await search(sb, total="false")
    assert (await search(sb, limit="5000"))["limit"] == 1000
    negative = await search(sb, start="-1")
    assert negative["count"] == 0 and negative["data"] == [] and negative["start"] == -1
    light = (await search(sb, dataonly="true"))["data"][0]
    assert set(light) == {"ID", "fields", "interests", "modified"}
    ids = await (await sb.v3("GET", "database/1/profileids")).json()
    assert ids == [str(p) for p in people]


# profiles: updates, upsert, delete ------------------------------------------------------------
async def test_update_moves_modified_only_on_real_change(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    pid = people[0]

    async def seq() -> int:
        raw = await sb.admin("GET", "databases/1/profiles")
        return next(p["seq"] for p in raw["data"] if p["ID"] == str(pid))

    before = await seq()
    same = await sb.v3("PUT", f"profile/{pid}", json={"fields": {"Name": "Ann"}})
    assert same.status == 204 and await seq() == before
    assert (await sb.v3("PUT", f"profile/{pid}/fields", json={"Name": "Anna"})).status == 204
    assert await seq() > before
    assert (await (await sb.v3("GET", f"profile/{pid}/fields")).json())["Name"] == "Anna"
    ignored = await sb.v3("PUT", f"profile/{pid}", json={"fields": "garbage"})
    assert ignored.status == 204  # a non-object fields is ignored on update


async def test_upsert_update_and_create(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    missing = await sb.v3("PUT", "database/1/profiles", json={"fields": {"Age": 1}})
    assert await error_of(missing) == "URL parameter fields is required"
    updated = await sb.v3(
        "PUT",
        "database/1/profiles",
        params=[("fields[]", "Email=~%@x.org"), ("create", "1")],
        json={"fields": {"Age": 77}},
    )
    assert updated.status == 204 and "X-Created" not in updated.headers
    assert names(await search(sb, "Age==77")) == ["Ann", "Dee"]
    untouched = await sb.v3(
        "PUT",
        "database/1/profiles",
        params=[("fields[]", "Email==new@z.org")],
        json={"fields": {"Name": "New"}},
    )
    assert untouched.status == 204 and names(await search(sb, "Name==New")) == []
    created = await sb.v3(
        "PUT",
        "database/1/profiles",
        params=[("fields[]", "Email==new@z.org"), ("create", "true")],
        json={"fields": {"Email": "new@z.org", "Name": "New"}},
    )
    assert created.status == 201
    assert names(await search(sb, "Email==new@z.org")) == ["New"]
    assert created.headers["X-Created"] == (await search(sb, "Name==New"))["data"][0]["ID"]


async def test_delete_profile_and_removed_behaviour(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    pid = people[0]
    reply = await sb.v3("DELETE", f"profile/{pid}")
    assert reply.status == 204 and reply.headers["X-Deleted"] == f"profile {pid}"
    gone = await (await sb.v3("GET", f"profile/{pid}")).json()
    assert gone["ID"] == str(pid) and isinstance(gone["removed"], str)
    assert set(gone["fields"].values()) == {""}
    again = await sb.v3("DELETE", f"profile/{pid}")
    assert await error_of(again) == "This profile has already been removed"
    assert names(await search(sb)) == ["Bob", "Cid", "Dee"]
    bulk = await sb.v3("DELETE", "database/1/profiles", json={"profiles": people[1:3]})
    assert bulk.status == 204
    assert bulk.headers.getall("X-Deleted") == [f"profile {p}" for p in people[1:3]]
    assert names(await search(sb)) == ["Dee"]


# selections and emailings ---------------------------------------------------------------------
async def test_views_and_view_profiles(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    view = await sb.admin("POST", "databases/1/views", {"name": "Adults", "rules": ["Age>=18"]})
    listed = await (await sb.v3("GET", "database/1/views")).json()
    assert listed["data"][0]["ID"] == view["ID"] and listed["data"][0]["has-rules"] is True
    members = await (await sb.v3("GET", f"view/{view['ID']}/profiles")).json()
    assert names(members) == ["Ann", "Cid", "Dee"]


async def test_templates_sending_and_statistics(
    copernica_sandbox: RunningSandbox, people: list[int]
) -> None:
    sb = copernica_sandbox
    templates = await (await sb.v4("GET", "draganddrop/templates")).json()
    assert templates["data"][0]["from_address"]["email"] == "news@sandbox.example"
    assert (await sb.v3("GET", "ms/templates")).status == 200
    assert await error_of(await sb.v3("GET", "draganddrop/templates")) == "Invalid method"
    spec = {"template": 1, "target": 1, "targettype": "database"}
    assert await error_of(await sb.v4("POST", "draganddrop/emailing", json=spec)) == (
        "Invalid method"  # no page documents the new name for a send
    )
    sent = await sb.v4("POST", "ms/emailing", json=spec)
    assert sent.status == 201
    emailing = sent.headers["X-Created"]
    assert sent.headers["X-location"].endswith(f"/v4/ms/emailing/{emailing}")
    one = await (await sb.v4("GET", f"draganddrop/emailing/{emailing}")).json()
    assert set(one) == {"data"} and one["data"]["id"] == emailing  # inside data, as documented
    stats = await (await sb.v4("GET", f"ms/emailing/{emailing}/statistics")).json()
    assert stats["destinations"] == 3  # Cid has no e-mail address
    assert stats["deliveries"]["total"] + stats["errors"]["total"] == 3
    again = await (await sb.v3("GET", f"ms/emailing/{emailing}/statistics")).json()
    assert again == stats  # deterministic
    listed = await (await sb.v3("GET", "ms/emailings")).json()
    assert listed["data"][0]["id"] == emailing and listed["data"][0]["destinations"] == 3
    docs = await (await sb.v4("GET", "html/documents")).json()
    pub = await sb.v3(
        "POST",
        "publisher/emailing",
        json={"document": docs["data"][0]["id"], "target": people[0], "targettype": "profile"},
    )
    assert pub.status == 201
    bad = await sb.v3(
        "POST", "ms/emailing", json={"template": 99, "target": 1, "targettype": "database"}
    )
    assert bad.status == 400


# webhooks -------------------------------------------------------------------------------------
async def test_webhook_crud(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    body = {"handler": "http://127.0.0.1:9/x", "trigger": "update", "callers": ["ms"]}
    reply = await sb.v3("POST", "webhooks", json=body)
    assert reply.status == 201
    hook = reply.headers["X-Created"]
    got = await (await sb.v3("GET", f"webhook/{hook}")).json()
    assert got == {"ID": hook, "handler": body["handler"], "trigger": "update", "callers": ["ms"]}
    assert (await sb.v3("PUT", f"webhook/{hook}", json={"trigger": "create"})).status == 204
    assert (await (await sb.v3("GET", f"webhook/{hook}")).json())["trigger"] == "create"
    deleted = await sb.v3("DELETE", f"webhook/{hook}")
    assert deleted.status == 204 and deleted.headers["X-Deleted"] == f"webhook {hook}"
    assert (
        await sb.v3("POST", "webhooks", json={"handler": "ftp://x", "trigger": "update"})
    ).status == 400


async def test_webhook_payload_and_signature_headers(
    copernica_sandbox: RunningSandbox, copernica_webhook_receiver: Any
) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Email", "email")
    await sb.v3(
        "POST", "webhooks", json={"handler": copernica_webhook_receiver.url, "trigger": "update"}
    )
    pid = await make_profile(sb, Email="old@x.org")
    await sb.v3("PUT", f"profile/{pid}", json={"fields": {"email": "new@x.org"}})
    [hook] = await copernica_webhook_receiver.wait_for(1)
    assert hook.path == "/hooks/copernica/tenant-token"
    assert hook.headers["Content-Type"] == "application/x-www-form-urlencoded"
    for header in ("Date", "Digest", "X-Copernica-ID", "Signature"):
        assert header in hook.headers
    assert hook.headers["Digest"].startswith("SHA-256=")
    assert 'algorithm="rsa-sha256"' in hook.headers["Signature"]
    form = dict(parse_qsl(hook.body.decode()))
    assert form["type"] == "update" and form["profile"] == str(pid) and form["database"] == "1"
    assert form["fields[Email]"] == "new@x.org" and form["parameters[email]"] == "new@x.org"
    assert form["time"].isdigit() and {"timestamp", "created", "modified"} <= set(form)


async def test_callers_filter_and_user_edits(
    copernica_sandbox: RunningSandbox, copernica_webhook_receiver: Any
) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Name")
    for trigger in ("create", "update", "delete"):
        spec = {"handler": copernica_webhook_receiver.url, "trigger": trigger, "callers": ["ms"]}
        await sb.v3("POST", "webhooks", json=spec)
    writes_before = (await sb.admin("GET", "stats"))["rest_writes"]
    await make_profile(sb, Name="via rest")  # excluded: caller is rest
    made = await sb.admin("POST", "databases/1/profiles", {"fields": {"Name": "by user"}})
    await sb.admin("PUT", f"profiles/{made['ID']}", {"fields": {"Name": "edited"}})
    await sb.admin("DELETE", f"profiles/{made['ID']}")
    hooks = await copernica_webhook_receiver.wait_for(3)
    await sb.admin("POST", "webhooks/drain")
    assert [dict(parse_qsl(h.body.decode()))["type"] for h in hooks] == [
        "create",
        "update",
        "delete",
    ]
    delete = dict(parse_qsl(hooks[2].body.decode()))
    assert delete["fields[Name]"] == "edited"  # values from before the delete
    assert (await sb.admin("GET", "stats"))["rest_writes"] == writes_before + 1


async def test_delivery_retries_faults_and_feedback(
    copernica_sandbox: RunningSandbox, copernica_webhook_receiver: Any
) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Name")
    await sb.v3(
        "POST", "webhooks", json={"handler": copernica_webhook_receiver.url, "trigger": "create"}
    )
    copernica_webhook_receiver.statuses = [500, 503]
    await sb.admin("POST", "webhooks/faults", {"fail": 1})
    await make_profile(sb, Name="one")
    hooks = await copernica_webhook_receiver.wait_for(
        2
    )  # attempt 1 failed in the sandbox, 2+3 got 5xx
    await sb.admin("POST", "webhooks/drain")
    assert len(copernica_webhook_receiver.received) == 3
    attempts = (await sb.admin("GET", "webhooks/deliveries"))["attempts"]
    assert [a["ok"] for a in attempts] == [False, False, False, True]
    assert len({h.headers["X-Nonce"] for h in hooks}) == 3  # each attempt signed afresh

    await sb.admin("POST", "webhooks/faults", {"duplicate": 1})
    await make_profile(sb, Name="two")
    await sb.admin("POST", "webhooks/drain")
    assert len(copernica_webhook_receiver.received) == 5

    await sb.admin("POST", "webhooks/faults", {"reorder": 1})
    await make_profile(sb, Name="three")
    await make_profile(sb, Name="four")
    await sb.admin("POST", "webhooks/drain")
    order = [
        dict(parse_qsl(h.body.decode()))["fields[Name]"]
        for h in copernica_webhook_receiver.received[5:]
    ]
    assert order == ["four", "three"]

    copernica_webhook_receiver.statuses = [500] * 4
    await make_profile(sb, Name="lost")
    await sb.admin("POST", "webhooks/drain")
    errors = await sb.admin("GET", "webhooks/feedback-loop-errors")
    assert (
        errors[-1]["response"] == 500 and errors[-1]["recipient"] == copernica_webhook_receiver.url
    )


@pytest.mark.parametrize("copernica_settings", [SandboxSettings(webhook_concurrency=3)])
async def test_deliveries_go_out_three_at_a_time_when_set(
    copernica_sandbox: RunningSandbox, copernica_webhook_receiver: Any
) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Name")
    await sb.v3(
        "POST", "webhooks", json={"handler": copernica_webhook_receiver.url, "trigger": "create"}
    )
    copernica_webhook_receiver.gate.clear()  # the handler answers nothing yet
    for n in range(5):
        await make_profile(sb, Name=f"p{n}")
    await copernica_webhook_receiver.wait_for(3)  # three in flight, none answered
    assert len(copernica_webhook_receiver.received) == 3
    copernica_webhook_receiver.gate.set()
    await sb.admin("POST", "webhooks/drain")
    names = {dict(parse_qsl(h.body.decode()))["fields[Name]"]
             for h in copernica_webhook_receiver.received}
    assert names == {f"p{n}" for n in range(5)}
    attempts = (await sb.admin("GET", "webhooks/deliveries"))["attempts"]
    assert len(attempts) == 5 and all(a["ok"] for a in attempts)


# faults and control ---------------------------------------------------------------------------
async def test_overload_pages_and_rate_limit(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    await sb.admin("POST", "faults", {"status": 503, "count": 1})
    page = await sb.v3("GET", "identity")
    assert page.status == 503 and page.headers["Content-Type"] == "text/html"
    assert "Loadbalancer Error" in await page.text()
    await sb.admin("POST", "faults", {"status": 429, "count": 1, "retry_after": 7})
    limited = await sb.v3("GET", "identity")
    assert limited.status == 429 and limited.headers["Retry-After"] == "7"
    assert (await sb.v3("GET", "identity")).status == 200


async def test_reset_raw_listing_and_published_key(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    await make_field(sb, "Name")
    await make_profile(sb, Name="x")
    raw = await sb.admin("GET", "databases/1/profiles")
    assert raw["count"] == 1 and raw["data"][0]["seq"] >= 1
    assert (await sb.admin("GET", "rest-writes"))["count"] == 2
    await sb.admin("POST", "reset")
    assert (await sb.admin("GET", "databases/1/profiles"))["count"] == 0
    assert (await sb.admin("GET", "stats"))["rest_writes"] == 0
    async with sb.session.get(f"{sb.url}/_sandbox/webhook-key") as reply:
        assert reply.headers["X-Key-Id"] == "sandbox._domainkey.copernica.com"
        assert (await reply.read()).startswith(b"-----BEGIN PUBLIC KEY-----")


# variants: the other shapes seen in the sources, one switch each -----------------------------
async def test_variants_switch_and_reset(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    defaults = await sb.admin("GET", "variants")
    assert defaults["send_paths"] == "documented" and defaults["created_id"] == "both"
    assert defaults["signature_shape"] == "documentation" and defaults["digest_token"] == "SHA-256"
    changed = await sb.admin("POST", "variants", {"created_id": "x-location", "send_paths": "new"})
    assert changed["created_id"] == "x-location" and changed["digest_token"] == "SHA-256"
    async with sb.session.post(f"{sb.url}/_sandbox/variants", json={"send_paths": "x"}) as bad:
        assert bad.status == 400
    await sb.admin("POST", "reset")
    assert await sb.admin("GET", "variants") == defaults


async def test_created_ids_in_either_header_or_none(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    await sb.admin("POST", "variants", {"created_id": "x-location", "created_id_kinds": ["profile"]})
    reply = await sb.v3("POST", "database/1/profiles", json={"fields": {}})
    assert reply.status == 201 and "X-Created" not in reply.headers
    assert re.fullmatch(r"http://.+/v3/profile/\d+", reply.headers["X-location"])
    field = await sb.v3("POST", "database/1/fields", json={"name": "A", "type": "text"})
    assert "X-Created" in field.headers  # another kind: both headers
    await sb.admin("POST", "variants", {"created_id": "none", "created_id_kinds": []})
    bare = await sb.v3("POST", "database/1/fields", json={"name": "B", "type": "text"})
    assert bare.status == 201 and not {"X-Created", "X-location"} & set(bare.headers)


async def test_profileids_page_like_every_list(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    seeded = await sb.admin(
        "POST", "databases/1/profiles/seed",
        {"profiles": [{"fields": {}} for _ in range(250)] + [{"fields": {}, "removed": True}]},
    )
    live = seeded["ids"][:250]
    first = await (await sb.v3("GET", "database/1/profileids")).json()
    assert first == live[:100]  # the documented default limit
    rest = await (
        await sb.v3("GET", "database/1/profileids", params=[("start", "200"), ("limit", "1000")])
    ).json()
    assert rest == live[200:]
    await sb.admin("POST", "variants", {"profileids_cap": 30})
    capped = await (
        await sb.v3("GET", "database/1/profileids", params=[("limit", "1000")])
    ).json()
    assert capped == live[:30]
    await sb.admin("POST", "variants", {"profileids_paged": False, "profileids_cap": 1000})
    assert await (await sb.v3("GET", "database/1/profileids")).json() == live
    assert (await sb.admin("GET", "stats"))["rest_writes"] == 0  # seeding is no REST write


async def test_nested_selections(copernica_sandbox: RunningSandbox, people: list[int]) -> None:
    sb = copernica_sandbox
    outer = await sb.admin("POST", "databases/1/views", {"name": "With mail", "rules": ["Email!="]})
    inner = await sb.admin(
        "POST", "databases/1/views", {"name": "Ann only", "rules": ["Name==Ann"], "parent": outer["ID"]}
    )
    top = await (await sb.v3("GET", "database/1/views")).json()
    assert [v["ID"] for v in top["data"]] == [outer["ID"]] and top["data"][0]["has-children"]
    nested = await (await sb.v3("GET", f"view/{outer['ID']}/views")).json()
    [child] = nested["data"]
    assert child["ID"] == inner["ID"] and child["parent-type"] == "view"
    assert child["parent-id"] == outer["ID"] and not child["has-children"]
    members = await (await sb.v3("GET", f"view/{inner['ID']}/profiles")).json()
    assert [p["fields"]["Name"] for p in members["data"]] == ["Ann"]


async def test_gets_can_be_redirected(copernica_sandbox: RunningSandbox) -> None:
    sb = copernica_sandbox
    await sb.admin("POST", "variants", {"redirect_gets": 1, "redirect_status": 303})
    moved = await sb.session.get(
        f"{sb.url}/v3/identity", params={"access_token": sb.state.settings.api_token},
        allow_redirects=False,
    )
    assert moved.status == 303 and moved.headers["Location"].startswith(f"{sb.url}/v3/identity?")
    assert (await sb.v3("GET", "identity")).status == 200  # only the next GET was moved


async def test_webhook_signature_shapes(
    copernica_sandbox: RunningSandbox, copernica_webhook_receiver: Any
) -> None:
    sb = copernica_sandbox
    await sb.v3("POST", "webhooks", json={"handler": copernica_webhook_receiver.url, "trigger": "create"})
    await make_profile(sb)
    await sb.admin(
        "POST", "variants",
        {"signature_shape": "library", "digest_token": "sha256", "copernica_id": "account_{id}"},
    )
    await make_profile(sb)
    documented, library = await copernica_webhook_receiver.wait_for(2)
    assert re.search(r'headers="\(request-target\) Host Date [^"]+" signature="', documented.headers["Signature"])
    assert documented.headers["Digest"].startswith("SHA-256=")
    assert documented.headers["X-Copernica-ID"] == "account-1"
    assert '",signature="' in library.headers["Signature"]
    assert 'headers="(request-target) host date' in library.headers["Signature"]
    assert library.headers["Digest"].startswith("sha256=")
    assert library.headers["X-Copernica-ID"] == "account_1"
