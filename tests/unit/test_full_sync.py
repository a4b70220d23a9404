"""Full sync at scale, the pure parts: which profile the scan's index matches to an unlinked
contact (the engine's first-merge rules without a search), and the cost estimate shown before a
full sync."""

from __future__ import annotations

from bridge.copernica.models import Profile
from bridge.sync.mapping import FieldMap, Mapping
from bridge.sync.reconcile import CopernicaIndex

MAPPING = Mapping(
    fields=(
        FieldMap("Email", "Email", "email", "email", True),
        FieldMap("LastName", "LastName", "string", "text", True),
    ),
    link_field="SalesforceId",
)
KEY = b"k" * 32
X, Y = "0035g0000000001AAA", "0035g0000000002AAA"


def index_of(*profiles: tuple[int, dict[str, str], bool]) -> CopernicaIndex:
    index = CopernicaIndex(KEY, MAPPING)
    for number, fields, linked in profiles:
        index.add(Profile(id=number, fields=fields), linked)
    return index


def test_a_profile_holding_the_contacts_id_is_its_match() -> None:
    index = index_of((7, {"SalesforceId": X}, False))
    assert index.match({"Id": X, "Email": "x@example.org"}) == 7
    assert index.match({"Id": Y, "Email": None}) is None


def test_the_link_field_wins_over_the_e_mail_address() -> None:
    index = index_of((7, {"Email": "x@example.org"}, False), (8, {"SalesforceId": X}, False))
    assert index.match({"Id": X, "Email": "x@example.org"}) == 8


def test_the_first_profile_holding_the_id_decides_even_when_it_is_linked() -> None:
    index = index_of((7, {"SalesforceId": X}, True), (8, {"SalesforceId": X}, False))
    assert index.match({"Id": X, "Email": "x@example.org"}) is None  # no e-mail fallback either


def test_a_unique_unclaimed_address_matches_case_insensitively() -> None:
    index = index_of((7, {"Email": "Jane@Example.org"}, False))
    assert index.match({"Id": X, "Email": "jane@example.ORG"}) == 7


def test_an_address_shared_claimed_or_linked_is_no_match() -> None:
    shared = index_of((7, {"Email": "a@x.org"}, False), (8, {"Email": "a@x.org"}, False))
    claimed = index_of((7, {"Email": "a@x.org", "SalesforceId": Y}, False))
    linked = index_of((7, {"Email": "a@x.org"}, True))
    for index in (shared, claimed, linked):
        assert index.match({"Id": X, "Email": "a@x.org"}) is None


def test_the_index_keeps_hashes_not_values() -> None:
    index = index_of((7, {"Email": "secret@example.org", "SalesforceId": X}, False))
    kept = [*index.by_email, *index.by_email.values(), *index.by_link, *index.by_link.values()]
    assert all(isinstance(value, int) for value in kept)
