"""Full sync at scale, the pure parts: which profile the scan's index matches to an unlinked
contact (the engine's first-merge rules without a search), and the cost estimate shown before a
full sync."""

from __future__ import annotations

from bridge.copernica.models import Profile
from bridge.sync.mapping import FieldMap, Mapping
from bridge.sync.reconcile import CopernicaIndex
from bridge.sync.runs import BULK_POLLS, full_sync_cost

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


# --- the estimate shown before a full sync ------------------------------------------------------


def test_below_the_bulk_threshold_contacts_are_read_in_rest_pages_of_2000() -> None:
    cost = full_sync_cost(5_000, 1_000, "both", bulk_from=10_000)
    assert not cost.bulk
    assert cost.salesforce_reads == 1 + 3  # COUNT, then 3 pages
    assert cost.salesforce_writes == 5  # 1,000 profiles in Collections of 200
    assert cost.copernica_reads == 2 * 2  # ids and profiles, pages of 1,000 (the last one short)
    assert cost.copernica_writes == 5_000  # one per profile created or updated
    assert (cost.salesforce, cost.copernica) == (9, 5_004)


def test_from_the_threshold_on_one_bulk_job_reads_50000_records_per_call() -> None:
    cost = full_sync_cost(100_000, 0, "sf_to_cp", bulk_from=10_000)
    assert cost.bulk
    assert cost.salesforce_reads == 1 + 1 + BULK_POLLS + 2 + 1  # COUNT, create, looks, sets, delete
    assert cost.salesforce_writes == 0
    assert cost.copernica_writes == 100_000


def test_one_way_costs_only_that_way() -> None:
    to_salesforce = full_sync_cost(3_000, 401, "cp_to_sf", bulk_from=10_000)
    assert (to_salesforce.salesforce_reads, to_salesforce.salesforce_writes) == (0, 3)
    assert to_salesforce.copernica_writes == 0
    assert full_sync_cost(0, 0, "both", bulk_from=10_000).salesforce == 2  # COUNT and one page
