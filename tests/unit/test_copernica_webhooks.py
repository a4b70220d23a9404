"""Copernica webhook intake: signature checks and payload parsing, without a network."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.copernica.keys import DnsTxtKeys, public_key_from_dkim, static_keys
from bridge.copernica.webhooks import (
    MailingEvent,
    ProfileEvent,
    SubprofileEvent,
    WebhookRejected,
    account_number,
    delivery_key,
    header_shape,
    parse_payload,
    receive_webhook,
)
from sandbox.copernica.hooks import Signer

KEY_ID = "sandbox._domainkey.copernica.com"
URL = "http://127.0.0.1:8080/hooks/copernica/tok?x=1"
PATH = "/hooks/copernica/tok?x=1"
BODY = (
    b"type=update&profile=5001&database=12&timestamp=2024-06-01+12%3A00%3A00&time=1717236000"
    b"&created=2023-05-02+10%3A11%3A12&modified=2024-06-01+12%3A00%3A00"
    b"&parameters%5BEmail%5D=new%40example.org&fields%5BEmail%5D=new%40example.org"
    b"&fields%5BFirstName%5D=Ann&interests%5B%5D=newsletter"
)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(KEY_ID)


@pytest.fixture(scope="module")
def lookup(signer: Signer):  # type: ignore[no-untyped-def]
    return static_keys({KEY_ID: signer.private_key.public_key()})


def signed(signer: Signer, body: bytes = BODY) -> dict[str, str]:
    return signer.headers_for(URL, body, "account-1")


async def receive(headers: dict[str, str], body: bytes, lookup, now: float | None = None):  # type: ignore[no-untyped-def]
    return await receive_webhook("POST", PATH, headers, body, lookup, now or time.time())


async def test_signed_form_delivery_verifies(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    event = await receive(signed(signer), BODY, lookup)
    assert isinstance(event, ProfileEvent)
    assert (event.type, event.profile_id, event.database_id) == ("update", 5001, 12)
    assert event.fields == {"Email": "new@example.org", "FirstName": "Ann"}
    assert event.parameters == {"Email": "new@example.org"}
    assert event.interests == ("newsletter",) and event.time == 1717236000
    assert event.account == "account-1" and event.modified == "2024-06-01 12:00:00"


async def test_tampered_body_is_rejected(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    tampered = BODY.replace(b"Ann", b"Eve")
    with pytest.raises(WebhookRejected) as caught:
        await receive(signed(signer), tampered, lookup)
    assert caught.value.status == 401 and "Digest" in caught.value.reason
    # a forger who also fixes the Digest still fails the signature
    headers = signed(signer)
    headers["Digest"] = signed(signer, tampered)["Digest"]
    with pytest.raises(WebhookRejected) as caught:
        await receive(headers, tampered, lookup)
    assert caught.value.reason == "signature does not verify"


async def test_wrong_key_is_rejected(signer: Signer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(WebhookRejected) as caught:
        await receive(signed(signer), BODY, static_keys({KEY_ID: other}))
    assert caught.value.status == 401
    with pytest.raises(WebhookRejected) as caught:
        await receive(signed(signer), BODY, static_keys({}))
    assert caught.value.reason == "no public key for keyId"


async def test_stale_date_is_rejected(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WebhookRejected) as caught:
        await receive(signed(signer), BODY, lookup, now=time.time() + 120)
    assert caught.value.reason == "stale Date"


async def test_unsigned_and_weakly_signed_are_rejected(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    headers = signed(signer)
    unsigned = {k: v for k, v in headers.items() if k != "Signature"}
    with pytest.raises(WebhookRejected) as caught:
        await receive(unsigned, BODY, lookup)
    assert caught.value.reason == "unsigned delivery"
    weak = dict(
        headers, Signature=re.sub(r"\(request-target\) host ", "", headers["Signature"], flags=re.I)
    )
    with pytest.raises(WebhookRejected) as caught:
        await receive(weak, BODY, lookup)
    assert "does not cover" in caught.value.reason
    foreign = dict(headers, Signature=headers["Signature"].replace("copernica.com", "evil.example"))
    with pytest.raises(WebhookRejected) as caught:
        await receive(foreign, BODY, lookup)
    assert caught.value.reason == "keyId is not a Copernica key"
    with pytest.raises(WebhookRejected) as caught:
        await receive_webhook("GET", PATH, headers, BODY, lookup, time.time())
    assert caught.value.status == 405


async def test_wrong_path_breaks_the_signature(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WebhookRejected):
        await receive_webhook(
            "POST", "/hooks/copernica/other", signed(signer), BODY, lookup, time.time()
        )


def test_json_body_and_interest_maps_parse() -> None:
    body = {
        "type": "create",
        "profile": 7,
        "database": "3",
        "fields": {"Email": "a@b.c", "Age": 4, "Opt": True, "Gone": None},
        "interests": {"news": 1, "promo": 0},
    }
    event = parse_payload("application/json; charset=utf-8", json.dumps(body).encode())
    assert isinstance(event, ProfileEvent)
    assert event.fields == {"Email": "a@b.c", "Age": "4", "Opt": "1", "Gone": ""}
    assert event.interests == ("news",)
    form = parse_payload(
        "application/x-www-form-urlencoded",
        b"type=delete&profile=9&database=1&interests%5Bnews%5D=1&interests%5Bpromo%5D=0",
    )
    assert isinstance(form, ProfileEvent) and form.interests == ("news",)


def test_subprofile_mailing_and_old_callbacks_parse() -> None:
    sub = parse_payload(
        "", b"type=update&subprofile=4&profile=9&database=1&collection=2&fields%5BSku%5D=x"
    )
    assert isinstance(sub, SubprofileEvent) and sub.collection_id == 2
    click = parse_payload(
        "application/x-www-form-urlencoded",
        b"type=click&id=msg-1&recipient=a%40b.c&original=https%3A%2F%2Fx",
    )
    assert isinstance(click, MailingEvent) and click.data["recipient"] == "a@b.c"
    old = parse_payload("application/x-www-form-urlencoded", b"action=create&profile=1&database=1")
    assert isinstance(old, ProfileEvent) and old.type == "create"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"[1,2]", 400),
        ("application/json", b"{", 400),
        ("application/json", b'{"type":"update","profile":1,"database":1,"fields":[1]}', 400),
        ("text/xml", b"<x/>", 415),
        ("application/x-www-form-urlencoded", b"type=update&profile=-1&database=1", 400),
        ("application/x-www-form-urlencoded", b"type=update&database=1", 400),
        ("application/x-www-form-urlencoded", b"type=dance&profile=1&database=1", 400),
        ("application/x-www-form-urlencoded", b"\xff\xfe", 400),
    ],
)
def test_malformed_payloads_are_clear_4xx(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_payload(content_type, body)
    assert caught.value.status == status


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "", "text/plain", "a/b; x"]
    ),
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.dictionaries(
            st.sampled_from(["type", "profile", "database", "fields", "interests", "id", "time"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=6,
            ),
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_parser_never_crashes_on_garbage(content_type: str, body: bytes) -> None:
    try:
        event = parse_payload(content_type, body)
    except WebhookRejected as rejected:
        assert 400 <= rejected.status < 500 and rejected.reason
    else:
        assert isinstance(event, ProfileEvent | SubprofileEvent | MailingEvent)


@settings(max_examples=150, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["Signature", "Date", "Digest", "Host", "Content-Type", "X-Copernica-ID"]),
        st.text(max_size=80),
    ),
    body=st.binary(max_size=100),
)
def test_intake_never_crashes_on_garbage_headers(headers: dict[str, str], body: bytes) -> None:
    async def lookup(_: str) -> None:
        return None

    with pytest.raises(WebhookRejected) as caught:
        asyncio.run(receive_webhook("POST", "/h", headers, body, lookup, time.time()))
    assert 400 <= caught.value.status < 500


async def test_dns_txt_lookup_reads_dkim_records(signer: Signer) -> None:
    asked: list[str] = []

    async def resolve(name: str) -> list[str]:
        asked.append(name)
        return ["v=spf1 -all", signer.dkim_record()]

    keys = DnsTxtKeys(resolve)
    event = await receive_webhook("POST", PATH, signed(signer), BODY, keys, time.time())
    assert isinstance(event, ProfileEvent)
    assert await keys(KEY_ID) is not None and asked == [KEY_ID]  # cached
    assert await keys("x._domainkey.evil.example") is None
    assert public_key_from_dkim("v=DKIM1; p=") is None


@pytest.mark.parametrize("shape", ["documentation", "library"])
@pytest.mark.parametrize("token", ["SHA-256", "sha-256", "sha256"])
async def test_every_header_shape_and_digest_token_verifies(
    signer: Signer, lookup, shape: str, token: str  # type: ignore[no-untyped-def]
) -> None:
    headers = signer.headers_for(URL, BODY, "account-1", shape=shape, digest_token=token)  # type: ignore[arg-type]
    if shape == "documentation":
        assert '" signature="' in headers["Signature"]  # no comma, as in the documentation
        assert "Host Date Content-length" in headers["Signature"]
    assert headers["Digest"].startswith(f"{token}=")
    event = await receive(headers, BODY, lookup)
    assert isinstance(event, ProfileEvent) and event.profile_id == 5001


async def test_signature_parameters_in_any_order_and_folded_verify(
    signer: Signer, lookup  # type: ignore[no-untyped-def]
) -> None:
    headers = signer.headers_for(URL, BODY, "account-1", shape="library")
    params = dict(re.findall(r'(\w+)="([^"]*)"', headers["Signature"]))
    value = params["signature"]
    folded = "\n       ".join(value[i : i + 40] for i in range(0, len(value), 40))
    listed = params["headers"].replace(" x-copernica-id", "\n       X-Copernica-ID")
    reordered = (
        f'signature="{folded}" headers="{listed}"\n     '
        f'algorithm="rsa-sha256" keyId="{params["keyId"]}" extra="ignored"'
    )
    event = await receive(dict(headers, Signature=reordered), BODY, lookup)
    assert isinstance(event, ProfileEvent)


async def test_host_and_account_must_be_ours(signer: Signer, lookup) -> None:  # type: ignore[no-untyped-def]
    async def receive_as(headers: dict[str, str], host: str, account: str | None) -> object:
        return await receive_webhook(
            "POST", PATH, headers, BODY, lookup, time.time(),
            expected_host=host, expected_account=account,
        )

    for marker in ("account-1", "account_1", "environment_1", "ACCOUNT-01"):
        headers = signer.headers_for(URL, BODY, marker)
        assert isinstance(await receive_as(headers, "127.0.0.1:8080", "1"), ProfileEvent)
    headers = signed(signer)
    with pytest.raises(WebhookRejected) as caught:
        await receive_as(headers, "bridge.example.com", "1")
    assert caught.value.status == 401 and caught.value.reason == "Host is not ours"
    with pytest.raises(WebhookRejected) as caught:
        await receive_as(headers, "127.0.0.1:8080", "2")
    assert caught.value.status == 401 and "X-Copernica-ID" in caught.value.reason
    assert isinstance(await receive_as(headers, "127.0.0.1:8080", None), ProfileEvent)
    assert account_number("account-1234") == account_number("account_1234") == "1234"


@pytest.mark.parametrize("depth", [50, 100_000])
def test_a_deeply_nested_json_body_is_a_400(depth: int) -> None:
    body = ('{"type":"update","profile":1,"database":1,"fields":' + "[" * depth + "]" * depth + "}")
    with pytest.raises(WebhookRejected) as caught:
        parse_payload("application/json", body.encode())
    assert caught.value.status == 400


def test_header_shape_names_the_parts_but_no_value(signer: Signer) -> None:
    headers = signer.headers_for(URL, BODY, "account-4711", digest_token="sha256")
    shape = header_shape(headers)
    for part in ("keyId", "signature", "(request-target)", "sha256", "account-<digits>", "RFC 1123"):
        assert part in shape, shape
    signature = re.search(r'signature="([^"]+)"', headers["Signature"])
    assert signature is not None
    for value in (signature.group(1)[:20], headers["Digest"].partition("=")[2][:20], "4711",
                  headers["X-Nonce"], headers["Date"]):
        assert value not in shape


def test_a_delivery_key_names_one_delivery(signer: Signer) -> None:
    first, second = signed(signer), signed(signer)  # another nonce: another signature
    assert delivery_key(first) == delivery_key(dict(first))
    assert delivery_key(first) != delivery_key(second)
    assert len(delivery_key(first)) == 32 and base64.b64encode(delivery_key(first))


