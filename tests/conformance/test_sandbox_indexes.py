"""The emulators' indexes give exactly the answers a scan of every record gives.

Copernica: a profile search with ``==`` on a text field or on ``id`` starts from the database's
value index. Salesforce: ``WHERE Id = …`` / ``WHERE Id IN (…)`` look the ids up in the org's
record store. Each test changes the data (creates, updates of the indexed value, deletes) and
compares the answers with a scan's after every step.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from sandbox.copernica.search import candidates, matches_all, parse_conditions, sort_key
from sandbox.copernica.state import Account, Database
from sandbox.salesforce import schema
from tests.fixtures.copernica import RunningSandbox as CopernicaSandbox
from tests.fixtures.salesforce import RunningSandbox as SalesforceSandbox

# --- Copernica --------------------------------------------------------------------------------


def scanned(sb: CopernicaSandbox, *conditions: str) -> list[int]:
    """Ids of database 1's live profiles that match, testing every profile (in id order)."""
    database = sb.state.account.databases[1]
    parsed = parse_conditions(conditions, database, sb.state.tz)
    found = [p for p in database.profiles.values() if p.removed is None and matches_all(p, parsed)]
    return sorted(p.id for p in found)


async def searched(sb: CopernicaSandbox, *conditions: str, **params: str) -> Any:
    query = [("fields[]", c) for c in conditions] + list(params.items())
    reply = await sb.v3("GET", "database/1/profileids", params=query)
    assert reply.status == 200, await reply.text()
    return [int(i) for i in await reply.json()]


async def ok(sb: CopernicaSandbox, method: str, path: str, **kwargs: Any) -> Any:
    reply = await sb.v3(method, path, **kwargs)
    assert reply.status < 300, await reply.text()
    return reply


async def assert_like_scan(sb: CopernicaSandbox) -> None:
    database = sb.state.account.databases[1]
    live = database.live_profiles()
    some = [p.id for p in live[:3]] + [p.id for p in database.profiles.values() if p.removed][:2]
    probes: list[tuple[str, ...]] = [("Email==nobody@example.org",), ("Email==",), ("Title==",)]
    for name in ("SalesforceId", "Email", "Title", "Segment"):
        target = database.field_by_name(name)
        values = {p.values.get(target.id, "") for p in live} if target else {"x"}
        for value in sorted(values):
            probes += [(f"{name}=={value}",), (f"{name}=={value.upper()}",)]
    for profile_id in some:
        probes += [(f"id=={profile_id}",), (f"ID=={profile_id}.0",), (f"id=={profile_id}.5",)]
    probes += [("id==",), ("id==abc",), ("id==0",)]
    probes += [("Email==a@example.org", "Title==dr"), ("Email==a@example.org", "Title!=dr")]
    probes += [("Age==1",), ("Age==1.0",), ("Email=~A@example.org",)]  # scanned: not plain ==
    for conditions in probes:
        assert await searched(sb, *conditions) == scanned(sb, *conditions), conditions

    # paging and ordering apply to the index's answer as to the scan's
    expected = scanned(sb, "Email==a@example.org")
    reply = await ok(
        sb, "GET", "database/1/profiles",
        params=[("fields[]", "Email==A@EXAMPLE.ORG"), ("start", "1"), ("limit", "2")],
    )
    page = await reply.json()
    assert page["total"] == len(expected)
    assert [int(p["ID"]) for p in page["data"]] == expected[1:3]
    key = sort_key("Title", database)
    assert key is not None
    ordered = sorted((database.profiles[i] for i in expected), key=key, reverse=True)  # type: ignore[arg-type]
    by_title = await searched(sb, "Email==a@example.org", orderby="Title", order="desc")
    assert by_title == [p.id for p in ordered]
    assert await searched(sb, "Email==a@example.org", start="1", limit="1") == expected[1:2]


async def test_copernica_equality_searches_answer_as_the_scan(
    copernica_sandbox: CopernicaSandbox,
) -> None:
    sb = copernica_sandbox
    for name, kind in (("SalesforceId", "text"), ("Email", "email"), ("Title", "text"),
                       ("Age", "integer")):
        await ok(sb, "POST", "database/1/fields", json={"name": name, "type": kind})
    emails = ["a@example.org", "A@Example.ORG", "b@example.org", ""]
    titles = ["Dr", "dr", "Mr", ""]
    ids = []
    for n in range(40):
        fields = {
            "SalesforceId": f"003{n % 30:03d}",  # some shared
            "Email": emails[n % 4], "Title": titles[n % 3], "Age": str(n % 5),
        }
        reply = await ok(sb, "POST", "database/1/profiles", json={"fields": fields})
        ids.append(int(reply.headers["X-Created"]))
    await assert_like_scan(sb)

    # updates that change the indexed values: one profile, then every match of a search
    await ok(sb, "PUT", f"profile/{ids[0]}/fields", json={"Email": "b@EXAMPLE.org"})
    await ok(sb, "PUT", f"profile/{ids[1]}", json={"fields": {"SalesforceId": "003new"}})
    await ok(sb, "PUT", "database/1/profiles", params=[("fields[]", "Title==DR")],
             json={"fields": {"Title": "Prof", "Email": "a@example.org"}})
    await ok(sb, "PUT", f"profile/{ids[2]}/fields", json={"Age": "7"})  # an unindexed change
    await assert_like_scan(sb)

    # deletes: soft (the profile stays, emptied) and complete; an update of a removed profile
    await ok(sb, "DELETE", f"profile/{ids[3]}")
    await ok(sb, "DELETE", f"profile/{ids[4]}", json={"completely": True})
    await ok(sb, "DELETE", "database/1/profiles", json={"profiles": [ids[5], ids[6]]})
    await ok(sb, "PUT", f"profile/{ids[3]}/fields", json={"Email": "a@example.org"})
    await assert_like_scan(sb)

    # a field added to existing profiles (with a default), one removed, and new profiles
    await ok(sb, "POST", "database/1/fields", json={"name": "Segment", "value": "Gold"})
    await ok(sb, "PUT", f"profile/{ids[7]}/fields", json={"Segment": "silver"})
    title = sb.state.account.databases[1].field_by_name("Title")
    assert title is not None
    await ok(sb, "DELETE", f"database/1/field/{title.id}")
    for n in range(5):
        await ok(sb, "POST", "database/1/profiles",
                 json={"fields": {"Email": emails[n % 4], "SalesforceId": "003new"}})
    await assert_like_scan(sb)


def test_copernica_index_follows_random_writes() -> None:
    """Random creates, updates, deletes and field changes on the account: after each one, every
    equality search gives the scan's answer, and the index is the one built from scratch."""
    rng = random.Random(20260601)
    account = Account(ZoneInfo("Europe/Amsterdam"))
    database = account.create_database("Random")
    names = ["A", "B", "C"]
    for name in names:
        account.create_field(database, {"name": name})
    pool = ["x", "X", "y", "Ÿ", "ÿ", "straße", "STRASSE", ""]

    def some_fields() -> dict[str, str]:
        return {rng.choice(names): rng.choice(pool) for _ in range(rng.randint(0, 3))}

    for step in range(400):
        live = database.live_profiles()
        action = rng.random()
        if action < 0.35 or not live:
            account.create_profile(database, some_fields(), None, "rest")
        elif action < 0.75:
            account.update_profile(database, rng.choice(live), some_fields(), None, "rest")
        elif action < 0.9:
            account.delete_profile(database, rng.choice(live), "rest", completely=rng.random() < 0.5)
        elif action < 0.95:
            names.append(f"F{step}")
            account.create_field(database, {"name": names[-1], "value": rng.choice(pool)})
        elif len(names) > 1:
            name = names.pop(rng.randrange(len(names)))
            target = database.field_by_name(name)
            assert target is not None
            account.delete_field(database, target)

        for text in [f"{name}=={value}" for name in names for value in pool] + ["id==1001"]:
            conditions = parse_conditions([text], database, account.tz)
            found = [p.id for p in candidates(database, conditions)
                     if p.removed is None and matches_all(p, conditions)]
            scan = [p.id for p in database.profiles.values()
                    if p.removed is None and matches_all(p, conditions)]
            assert found == scan, (step, text)
        assert database.value_index == rebuilt(database), step


def rebuilt(database: Database) -> dict[int, dict[str, set[int]]]:
    fresh: dict[int, dict[str, set[int]]] = {f.id: {} for f in database.fields}
    for profile in database.live_profiles():
        for f in database.fields:
            key = profile.values.get(f.id, "").casefold()
            fresh[f.id].setdefault(key, set()).add(profile.id)
    return fresh


# --- Salesforce -------------------------------------------------------------------------------

V = "/services/data/v59.0"


class Api:
    """Raw REST calls against the Salesforce sandbox with a password-grant token."""

    def __init__(self, sandbox: SalesforceSandbox, http: aiohttp.ClientSession) -> None:
        self.sandbox, self.http, self.token = sandbox, http, ""

    async def login(self) -> None:
        s = self.sandbox.settings
        form = {
            "grant_type": "password", "client_id": s.client_id, "client_secret": s.client_secret,
            "username": s.username, "password": s.password + s.security_token,
        }
        async with self.http.post(f"{self.sandbox.url}/services/oauth2/token", data=form) as r:
            assert r.status == 200, await r.text()
            self.token = (await r.json())["access_token"]

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.request(
            method, self.sandbox.url + path, json=body, headers=headers, **kw
        ) as reply:
            assert reply.status < 300, (path, await reply.text())
            return await reply.json() if reply.status != 204 else None

    async def query(self, soql: str, *, include_deleted: bool = False) -> tuple[int, list[str]]:
        """``totalSize`` and the Ids of every page."""
        resource = "queryAll" if include_deleted else "query"
        page = await self.call("GET", f"{V}/{resource}", params={"q": soql})
        total, ids = page["totalSize"], [r["Id"] for r in page["records"]]
        while not page["done"]:
            page = await self.call("GET", page["nextRecordsUrl"])
            ids += [r["Id"] for r in page["records"]]
        return total, ids


@pytest.fixture
async def api(sf_sandbox_factory: Any) -> AsyncIterator[Api]:
    sandbox = await sf_sandbox_factory(query_page_size=200)  # several pages for the long answers
    async with aiohttp.ClientSession() as http:
        client = Api(sandbox, http)
        await client.login()
        yield client


def literals(ids: list[str]) -> str:
    return ", ".join(f"'{i}'" for i in ids)


async def assert_id_queries_like_scan(api: Api, rng: random.Random) -> None:
    records = api.sandbox.state.org.records["Contact"]
    every = list(records)
    deleted = [i for i, r in records.items() if r.deleted]
    wanted = rng.sample(every, min(60, len(every))) + deleted[:5]
    variants = [wanted[0].lower(), wanted[1].upper(), wanted[2][:15],
                schema.make_id("003", "5g", 10**9), "not an id"]
    for include_deleted in (False, True):
        # against the state: 18-character ids in any letter case, deleted ones with queryAll
        lowered = {i.lower() for i in [*wanted, *variants]}
        expected = [i for i, r in records.items()
                    if i.lower() in lowered and (include_deleted or not r.deleted)]
        answer = await api.query(f"SELECT Id FROM Contact WHERE Id IN ({literals(wanted)})",
                                 include_deleted=include_deleted)
        assert answer[1] == [i for i in expected if i in wanted]
        assert len(answer[1]) >= 40  # the comparisons below do not just compare nothing

        # against the emulator's own scan: in parentheses the same condition is evaluated record
        # by record (only a bare ``Id = …`` / ``Id IN (…)`` WHERE is looked up)
        for where in (
            f"Id IN ({literals([*wanted, *variants])})",
            f"Id = '{wanted[3]}'",
            f"Id = '{wanted[4].lower()}'",
            f"Id = '{deleted[0]}'" if deleted else "Id = NULL",
        ):
            for shape in ("SELECT Id FROM Contact WHERE {}",
                          "SELECT COUNT() FROM Contact WHERE {}",
                          "SELECT Id FROM Contact WHERE {} ORDER BY LastName DESC LIMIT 7 OFFSET 2"):
                indexed = await api.query(shape.format(where), include_deleted=include_deleted)
                scan = await api.query(shape.format(f"({where})"), include_deleted=include_deleted)
                assert indexed == scan, (shape, where, include_deleted)


async def test_salesforce_id_queries_answer_as_the_scan(api: Api) -> None:
    rng = random.Random(59)
    # seeded silently, with and without a deleted one; enough for every base-62 digit to roll over
    seeded = await api.sandbox.admin("POST", "/records/Contact", {"records": [
        {"LastName": f"Seed {n % 17}", "Email": f"c{n}@example.org", "IsDeleted": n % 40 == 0}
        for n in range(150)
    ]})
    ids = seeded["ids"]
    for n in range(5):
        ids.append((await api.call("POST", f"{V}/sobjects/Contact", {"LastName": f"New {n}"}))["id"])
    await assert_id_queries_like_scan(api, rng)

    # updates (Ids stay, values move), deletes, an undelete, a merge, more creates
    for record_id in rng.sample(ids, 20):
        if not api.sandbox.state.org.records["Contact"][record_id].deleted:
            await api.call("PATCH", f"{V}/sobjects/Contact/{record_id}", {"LastName": "Moved"})
    for record_id in ids[10:20]:
        await api.call("DELETE", f"{V}/sobjects/Contact/{record_id}")
    await api.sandbox.admin("POST", f"/contacts/{ids[10]}/undelete")
    await api.sandbox.admin("POST", "/merge", {"master": ids[30], "losers": [ids[31]]})
    collection = await api.call("POST", f"{V}/composite/sobjects", {"records": [
        {"attributes": {"type": "Contact"}, "LastName": f"Batch {n}"} for n in range(30)
    ]})
    assert all(item["success"] for item in collection)
    await assert_id_queries_like_scan(api, rng)

    # an all-or-none composite that fails puts back a copy of the record store
    reply = await api.call("POST", f"{V}/composite", {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"{V}/sobjects/Contact", "referenceId": "new",
         "body": {"LastName": "Rolled back"}},
        {"method": "PATCH", "url": f"{V}/sobjects/Contact/{ids[11]}", "referenceId": "gone",
         "body": {"LastName": "Deleted"}},
    ]})
    assert [r["httpStatusCode"] for r in reply["compositeResponse"]] == [400, 404]
    await api.call("PATCH", f"{V}/sobjects/Contact/{ids[41]}", {"LastName": "After restore"})
    await assert_id_queries_like_scan(api, rng)


def test_ids_in_any_letter_case() -> None:
    """What lets a dict keyed by exact Id answer SOQL's case-insensitive comparison."""
    for number in (1, 61, 62, 3843, 10**6, 62**9):
        record_id = schema.make_id("003", "5g", number)
        for spelling in (record_id, record_id.lower(), record_id.upper(), record_id.swapcase()):
            assert schema.id_in_any_case(spelling) == record_id
    assert schema.id_in_any_case("003000000000001") is None  # 15 characters: never a stored Id
    assert schema.id_in_any_case("003000000000001zzz") is None  # suffix disagrees with the case
    assert schema.id_in_any_case("003000000000001!!!") is None
