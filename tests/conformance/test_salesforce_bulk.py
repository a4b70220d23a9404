"""Bulk API 2.0 query jobs of the sandbox: the documented life cycle, shapes and CSV paging, over
raw HTTP and through simple-salesforce 1.12.10's ``bulk2`` (unchanged)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from simple_salesforce import Salesforce

from bridge.salesforce import SalesforceClient
from bridge.salesforce.bulk import bulk_query_pages, typed
from bridge.salesforce.errors import SalesforceError
from tests.fixtures.salesforce import RunningSandbox, ThreadedSandbox, https_to_sandbox

V = "/services/data/v59.0"
JOBS = f"{V}/jobs/query"


class Bulk:
    """Raw HTTP against the sandbox with a bearer token."""

    def __init__(self, sandbox: RunningSandbox, http: aiohttp.ClientSession, token: str) -> None:
        self.sandbox, self.http, self.token = sandbox, http, token

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/csv"}
        async with self.http.request(
            method, self.sandbox.url + path, json=body, params=params, headers=headers
        ) as response:
            text = await response.text()
            assert "Sforce-Limit-Info" in response.headers
            if response.content_type == "text/csv":
                return response.status, text, response.headers
            return response.status, (await response.json() if text else None), response.headers

    async def create(self, query: str, **options: str) -> dict[str, Any]:
        status, job, _ = await self.call(
            "POST", JOBS, {"operation": "query", "query": query} | options
        )
        assert status == 200, job
        return dict(job)

    async def until_finished(self, job_id: str) -> dict[str, Any]:
        for _ in range(400):
            status, job, _ = await self.call("GET", f"{JOBS}/{job_id}")
            assert status == 200
            if job["state"] in ("JobComplete", "Failed", "Aborted"):
                return dict(job)
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job_id} still {job['state']}")


@pytest.fixture
async def bulk(sf_sandbox: RunningSandbox) -> AsyncIterator[Bulk]:
    form = {
        "grant_type": "client_credentials",
        "client_id": sf_sandbox.settings.client_id,
        "client_secret": sf_sandbox.settings.client_secret,
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sf_sandbox.url}/services/oauth2/token", data=form) as response:
            token = (await response.json())["access_token"]
        yield Bulk(sf_sandbox, http, token)


async def seed(sandbox: RunningSandbox, count: int, **values: Any) -> None:
    await sandbox.admin(
        "POST",
        "/records/Contact",
        {"records": [{"LastName": f"Bulk{i:04d}", **values} for i in range(count)]},
    )


def rows(text: str, delimiter: str = ",", line_ending: str = "\n") -> list[list[str]]:
    assert text.endswith(line_ending)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


async def test_a_query_job_goes_from_upload_complete_to_job_complete(bulk: Bulk) -> None:
    await seed(bulk.sandbox, 3)
    job = await bulk.create("SELECT Id, LastName FROM Contact")
    assert job["state"] == "UploadComplete"
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert job["operation"] == "query" and job["object"] == "Contact"
    assert job["contentType"] == "CSV" and job["concurrencyMode"] == "Parallel"
    assert job["apiVersion"] == 59.0
    assert (job["lineEnding"], job["columnDelimiter"]) == ("LF", "COMMA")
    assert {"createdById", "createdDate", "systemModstamp"} <= set(job)
    finished = await bulk.until_finished(job["id"])
    assert finished["state"] == "JobComplete"
    assert finished["jobType"] == "V2Query"
    assert finished["numberRecordsProcessed"] == 3
    assert {"retries", "totalProcessingTime"} <= set(finished)


async def test_results_come_in_csv_sets_named_by_locators(bulk: Bulk) -> None:
    await seed(bulk.sandbox, 5)
    job = await bulk.create("SELECT Id, LastName FROM Contact ORDER BY LastName")
    await bulk.until_finished(job["id"])
    seen: list[str] = []
    locator: str | None = None
    sets = []
    while locator != "null":
        params = {"maxRecords": "2"} | ({"locator": locator} if locator else {})
        status, text, headers = await bulk.call("GET", f"{JOBS}/{job['id']}/results", params=params)
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        table = rows(text)
        assert table[0] == ["Id", "LastName"]  # the header row, in the order selected
        assert int(headers["Sforce-NumberOfRecords"]) == len(table) - 1
        seen += [row[1] for row in table[1:]]
        sets.append((locator, text))
        locator = headers["Sforce-Locator"]
    assert seen == [f"Bulk{i:04d}" for i in range(5)]
    assert len(sets) == 3
    again_locator, again_text = sets[1]
    status, text, _ = await bulk.call(
        "GET",
        f"{JOBS}/{job['id']}/results",
        params={"maxRecords": "2", "locator": again_locator or ""},
    )
    assert (status, text) == (200, again_text)  # a locator may be read again while the job lives


async def test_values_are_quoted_with_nulls_empty_and_booleans_in_words(bulk: Bulk) -> None:
    await seed(bulk.sandbox, 1, FirstName='Jo "JJ", Jr', DoNotCall=True, Email=None)
    job = await bulk.create(
        "SELECT FirstName, DoNotCall, Email, CreatedDate FROM Contact",
        columnDelimiter="PIPE",
        lineEnding="CRLF",
    )
    await bulk.until_finished(job["id"])
    _, text, _ = await bulk.call("GET", f"{JOBS}/{job['id']}/results")
    header, row = rows(text, "|", "\r\n")
    assert text.startswith('"FirstName"|"DoNotCall"|"Email"|"CreatedDate"\r\n')
    assert row[:3] == ['Jo "JJ", Jr', "true", ""]
    assert row[3].endswith("Z") and len(row[3]) == len("2024-05-14T09:21:37.000Z")


async def test_query_all_includes_deleted_records(bulk: Bulk) -> None:
    await seed(bulk.sandbox, 2)
    status, found, _ = await bulk.call("GET", f"{V}/query", params={"q": "SELECT Id FROM Contact"})
    doomed = found["records"][0]["Id"]
    assert (await bulk.call("DELETE", f"{V}/sobjects/Contact/{doomed}"))[0] == 204
    counts = {}
    for operation in ("query", "queryAll"):
        _, job, _ = await bulk.call(
            "POST", JOBS, {"operation": operation, "query": "SELECT Id, IsDeleted FROM Contact"}
        )
        assert (await bulk.until_finished(job["id"]))["state"] == "JobComplete"
        _, text, _ = await bulk.call("GET", f"{JOBS}/{job['id']}/results")
        counts[operation] = len(rows(text)) - 1
    assert counts == {"query": 1, "queryAll": 2}


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT COUNT() FROM Contact",
        "SELECT Id FROM Contact LIMIT 10 OFFSET 5",
        "SELECT LastName, COUNT(Id) FROM Contact GROUP BY LastName",
        "SELECT FIELDS(STANDARD) FROM Contact",
        "SELECT MailingAddress FROM Contact",
    ],
)
async def test_unsupported_soql_is_refused_at_creation(bulk: Bulk, soql: str) -> None:
    status, body, _ = await bulk.call("POST", JOBS, {"operation": "query", "query": soql})
    assert status == 400
    assert body[0]["errorCode"] == "API_ERROR" and body[0]["message"]


async def test_bad_soql_answers_as_the_rest_query_does(bulk: Bulk) -> None:
    status, body, _ = await bulk.call(
        "POST", JOBS, {"operation": "query", "query": "SELECT Nope__c FROM Contact"}
    )
    assert (status, body[0]["errorCode"]) == (400, "INVALID_FIELD")


async def test_results_need_a_complete_job_a_good_locator_and_the_same_version(bulk: Bulk) -> None:
    await bulk.sandbox.admin("POST", "/bulk", {"processing_seconds": 60})
    slow = await bulk.create("SELECT Id FROM Contact")
    status, body, _ = await bulk.call("GET", f"{JOBS}/{slow['id']}/results")
    assert (status, body[0]["errorCode"]) == (400, "JOB_NOT_COMPLETE")
    status, body, _ = await bulk.call("DELETE", f"{JOBS}/{slow['id']}")
    assert (status, body[0]["errorCode"]) == (400, "API_ERROR")  # not terminated yet
    status, aborted, _ = await bulk.call("PATCH", f"{JOBS}/{slow['id']}", {"state": "Aborted"})
    assert (status, aborted["state"]) == (200, "Aborted")
    assert (await bulk.call("DELETE", f"{JOBS}/{slow['id']}"))[0] == 204
    assert (await bulk.call("GET", f"{JOBS}/{slow['id']}"))[0] == 404

    await bulk.sandbox.admin("POST", "/bulk", {"processing_seconds": 0})
    await seed(bulk.sandbox, 1)
    job = await bulk.create("SELECT Id FROM Contact")
    await bulk.until_finished(job["id"])
    status, body, _ = await bulk.call(
        "GET", f"{JOBS}/{job['id']}/results", params={"locator": "not-a-locator!"}
    )
    assert (status, body[0]["errorCode"]) == (400, "INVALID_LOCATOR")
    status, body, _ = await bulk.call(
        "GET", f"{JOBS}/{job['id']}/results", params={"maxRecords": "0"}
    )
    assert status == 400
    status, _, _ = await bulk.call("GET", f"/services/data/v60.0/jobs/query/{job['id']}/results")
    assert status == 409


async def test_a_failed_job_says_why(bulk: Bulk) -> None:
    await bulk.sandbox.admin(
        "POST", "/bulk", {"fail_next": "InternalServerError: retried 15 times"}
    )
    job = await bulk.create("SELECT Id FROM Contact")
    finished = await bulk.until_finished(job["id"])
    assert finished["state"] == "Failed"
    assert "retried 15 times" in finished["errorMessage"]


async def test_every_bulk_request_is_one_api_call(bulk: Bulk) -> None:
    await seed(bulk.sandbox, 3)
    before = bulk.sandbox.state.api_used
    job = await bulk.create("SELECT Id FROM Contact")  # 1
    polls = 0
    while (await bulk.call("GET", f"{JOBS}/{job['id']}"))[1]["state"] != "JobComplete":
        polls += 1
        await asyncio.sleep(0.01)
    polls += 1
    await bulk.call("GET", f"{JOBS}/{job['id']}/results", params={"maxRecords": "2"})
    await bulk.call("DELETE", f"{JOBS}/{job['id']}")
    assert bulk.sandbox.state.api_used - before == 1 + polls + 1 + 1
    overview = await bulk.sandbox.admin("GET", "/bulk")
    assert overview["calls"] == 1 + polls + 1 + 1 and overview["jobs_created"] == 1


async def test_an_unknown_token_is_refused(bulk: Bulk) -> None:
    bulk.token = "00D000000000000!nope"
    status, body, _ = await bulk.call("GET", JOBS)
    assert (status, body[0]["errorCode"]) == (401, "INVALID_SESSION_ID")


def test_simple_salesforce_bulk2_query_reads_every_set(sf_sandbox_thread: ThreadedSandbox) -> None:
    sf_sandbox_thread.admin(
        "POST", "/records/Contact", {"records": [{"LastName": f"S{i:03d}"} for i in range(450)]}
    )
    sf = Salesforce(
        username="admin@sandbox.example",
        password="sandbox-password",
        security_token="SANDBOXTOKEN",
        session=https_to_sandbox(sf_sandbox_thread.url),
    )
    sets = list(sf.bulk2.Contact.query("SELECT Id, LastName FROM Contact", max_records=200))
    assert len(sets) == 3
    names = [row["LastName"] for text in sets for row in csv.DictReader(io.StringIO(text))]
    assert sorted(names) == [f"S{i:03d}" for i in range(450)]


# --- the bridge's client (bridge.salesforce.bulk) -------------------------------------------


async def test_the_bridge_reads_records_as_the_rest_query_gives_them(
    sf_sandbox: RunningSandbox, sf_client: SalesforceClient
) -> None:
    await seed(sf_sandbox, 5, DoNotCall=True, Description='two\nlines, "quoted"')
    await seed(sf_sandbox, 2, Email="x@example.org", Birthdate="1990-02-03")
    soql = "SELECT Id, LastName, Email, DoNotCall, Birthdate, Description, CreatedDate FROM Contact"
    pages = [p async for p in bulk_query_pages(sf_client, soql, sobject="Contact", page_size=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    by_rest = {
        r["Id"]: {k: v for k, v in r.items() if k != "attributes"}
        async for r in sf_client.query(soql)
    }
    assert {r["Id"]: r for p in pages for r in p} == by_rest
    assert (await sf_sandbox.admin("GET", "/bulk"))["jobs"] == []  # deleted after reading


async def test_the_bridge_pages_through_several_result_sets(
    sf_sandbox: RunningSandbox, sf_client: SalesforceClient
) -> None:
    await seed(sf_sandbox, 25)
    pages = [
        p
        async for p in bulk_query_pages(
            sf_client, "SELECT Id FROM Contact", sobject="Contact", page_size=4, set_size=10
        )
    ]
    assert sum(len(p) for p in pages) == 25
    assert len({r["Id"] for p in pages for r in p}) == 25
    # 1 create + polls + 3 sets + 1 delete; the describe was read once before
    overview = await sf_sandbox.admin("GET", "/bulk")
    assert overview["jobs_created"] == 1 and overview["jobs"] == []


async def test_a_failed_job_is_a_transient_error_and_is_deleted(
    sf_sandbox: RunningSandbox, sf_client: SalesforceClient
) -> None:
    await sf_sandbox.admin("POST", "/bulk", {"fail_next": "InternalServerError"})
    with pytest.raises(SalesforceError) as failure:
        [p async for p in bulk_query_pages(sf_client, "SELECT Id FROM Contact", sobject="Contact")]
    assert failure.value.category == "transient" and failure.value.code == "BULK_JOB_FAILED"
    assert (await sf_sandbox.admin("GET", "/bulk"))["jobs"] == []


async def test_a_refused_query_is_a_validation_error(sf_client: SalesforceClient) -> None:
    with pytest.raises(SalesforceError) as failure:
        [
            p
            async for p in bulk_query_pages(
                sf_client, "SELECT Id FROM Contact LIMIT 5 OFFSET 2", sobject="Contact"
            )
        ]
    assert failure.value.category == "validation"


def test_csv_values_get_the_rest_types() -> None:
    assert typed("boolean", "true") is True and typed("boolean", "false") is False
    assert typed("string", "") is None
    assert typed("double", "12.5") == 12.5 and typed("int", "7") == 7
    assert typed("datetime", "2024-05-14T09:21:37.000Z") == "2024-05-14T09:21:37.000+0000"
    assert typed("date", "2024-05-14") == "2024-05-14"


async def test_limits_count_the_query_jobs_of_the_day(bulk: Bulk) -> None:
    async def remaining() -> int:
        status, limits, _ = await bulk.call("GET", f"{V}/limits")
        assert status == 200
        assert limits["DailyBulkV2QueryJobs"]["Max"] == 10000
        return int(limits["DailyBulkV2QueryJobs"]["Remaining"])

    before = await remaining()
    await bulk.create("SELECT Id FROM Contact")
    await bulk.create("SELECT Id, LastName FROM Contact")
    assert await remaining() == before - 2
