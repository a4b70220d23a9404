"""The sandbox's SOQL subset: parsing, evaluation and the errors Salesforce gives."""

from __future__ import annotations

import pytest

from sandbox.salesforce import SandboxSettings
from sandbox.salesforce.cdc import Transaction
from sandbox.salesforce.org import Org, SalesforceFault
from sandbox.salesforce.soql import parse, run


@pytest.fixture
def org() -> Org:
    org = Org(SandboxSettings())
    txn = Transaction(origin="", user_id=org.settings.user_id)
    for last, first, email, birthdate, opted in [
        ("Alpha", "Ann", "ann@example.org", "1980-01-01", False),
        ("beta", None, "b@example.net", None, True),
        ("Gamma", "Gus", None, "1995-06-30", False),
        ("O'Brien", "Otto", "o@example.org", "2001-12-31", True),
    ]:
        org.create(
            "Contact",
            {
                "LastName": last,
                "FirstName": first,
                "Email": email,
                "Birthdate": birthdate,
                "HasOptedOutOfEmail": opted,
            },
            txn,
        )
    return org


def names(org: Org, soql: str, *, include_deleted: bool = False) -> list[str]:
    return [
        str(r.values["LastName"])
        for r in run(org, parse(org, soql), include_deleted=include_deleted)
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("LastName = 'BETA'", ["beta"]),
        ("LastName != 'beta'", ["Alpha", "Gamma", "O'Brien"]),
        ("FirstName = null", ["beta"]),
        ("Email LIKE '%.org'", ["Alpha", "O'Brien"]),
        ("LastName IN ('alpha', 'gamma')", ["Alpha", "Gamma"]),
        ("LastName NOT IN ('alpha')", ["beta", "Gamma", "O'Brien"]),
        ("Birthdate > 1990-01-01", ["Gamma", "O'Brien"]),
        ("Birthdate <= 1995-06-30 AND HasOptedOutOfEmail = false", ["Alpha", "Gamma"]),
        ("(LastName = 'Alpha' OR LastName = 'beta') AND NOT HasOptedOutOfEmail = true", ["Alpha"]),
        ("LastName = 'O\\'Brien'", ["O'Brien"]),
        ("CreatedDate > 2000-01-01T00:00:00Z", ["Alpha", "beta", "Gamma", "O'Brien"]),
        ("CreatedDate < 2000-01-01T00:00:00+02:00", []),
    ],
)
def test_where(org: Org, where: str, expected: list[str]) -> None:
    assert names(org, f"SELECT Id FROM Contact WHERE {where} ORDER BY LastName") == expected


def test_order_limit_offset(org: Org) -> None:
    soql = "select Id from contact order by Birthdate desc nulls last, LastName limit 2 offset 1"
    assert names(org, soql) == ["Gamma", "Alpha"]
    assert names(org, "SELECT Id FROM Contact ORDER BY FirstName") == [
        "beta",
        "Alpha",
        "Gamma",
        "O'Brien",
    ]


def test_deleted_rows_only_with_query_all(org: Org) -> None:
    target = next(iter(org.records["Contact"].values()))
    org.delete("Contact", target.id, Transaction(origin="", user_id=org.settings.user_id))
    soql = "SELECT Id FROM Contact WHERE IsDeleted = true"
    assert names(org, soql) == []
    assert names(org, soql, include_deleted=True) == ["Alpha"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROMM Contact", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Contact WHERE LastName = 'a' AND Email = 'b' OR Title = 'c'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact LIMIT x", "MALFORMED_QUERY"),
        ("SELECT Id, Foo__c FROM Contact", "INVALID_FIELD"),
        ("SELECT Account.Name FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE Birthdate = '2020-01-01'", "INVALID_FIELD"),
        ("SELECT Id FROM Contact WHERE LastName = 5", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
        ("", "MALFORMED_QUERY"),
    ],
)
def test_errors(org: Org, soql: str, code: str) -> None:
    with pytest.raises(SalesforceFault) as failure:
        parse(org, soql)
    assert failure.value.code == code


def test_invalid_field_message_points_at_the_column(org: Org) -> None:
    with pytest.raises(SalesforceFault) as failure:
        parse(org, "SELECT Id, Foo__c FROM Contact")
    assert "\n           ^\nERROR at Row:1:Column:12\nNo such column 'Foo__c'" in (
        failure.value.message
    )


def test_count(org: Org) -> None:
    query = parse(org, "SELECT COUNT() FROM Contact WHERE Email != null")
    assert query.count_only and len(run(org, query, include_deleted=False)) == 3
