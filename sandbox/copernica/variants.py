"""The switchable variants of the Copernica sandbox: documented behaviour by default, and the
other shapes seen in Copernica's own code, third-party clients and older pages, one switch each."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

CreatedId = Literal["both", "x-created", "x-location", "none"]
SendPaths = Literal["documented", "new", "both"]
SignatureShape = Literal["documentation", "library"]
DigestToken = Literal["SHA-256", "sha-256", "sha256"]


@dataclass(frozen=True)
class Variants:
    """Where sources disagree about Copernica, the sandbox follows the documentation by default;
    each variant switches one point to another shape seen in the wild (``/_sandbox/variants``)."""

    emailing_data_wrapper: bool = True  # GET …/emailing/$id answers {"data": {…}} (documented)
    created_id: CreatedId = "both"  # which of X-Created / X-location a create answers
    created_id_kinds: tuple[str, ...] = ()  # kinds created_id applies to ("profile", …); () all
    profileids_paged: bool = True  # profileids pages like every list (default limit 100)
    profileids_cap: int = 1000  # the most ids one profileids page holds
    send_paths: SendPaths = "documented"  # POST ms/emailing + publisher/emailing only
    signature_shape: SignatureShape = "documentation"  # the documentation's example header
    digest_token: DigestToken = "SHA-256"
    copernica_id: str = "account-{id}"  # X-Copernica-ID; also account_{id}, environment_{id}
    redirect_gets: int = 0  # the next N REST GETs answer a redirect to the same URL
    redirect_status: int = 301
    redirect_to: str = ""  # origin of those redirects ("": the sandbox itself)


def switched(current: Variants, changes: dict[str, Any]) -> Variants:
    """``current`` with ``changes`` applied; ``ValueError`` names a bad name or value."""
    fields = {f.name: f for f in dataclasses.fields(Variants)}
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"unknown variants: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        choices = {
            "created_id": get_args(CreatedId),
            "send_paths": get_args(SendPaths),
            "signature_shape": get_args(SignatureShape),
            "digest_token": get_args(DigestToken),
        }.get(name)
        if choices is not None and value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}")
        if name in ("emailing_data_wrapper", "profileids_paged"):
            value = bool(value)
        elif name in ("profileids_cap", "redirect_gets", "redirect_status"):
            value = int(value)
        elif name == "created_id_kinds":
            value = tuple(str(kind) for kind in value or ())
        elif name in ("copernica_id", "redirect_to"):
            value = str(value)
        values[name] = value
    if values.get("redirect_status", current.redirect_status) not in (301, 302, 303, 307, 308):
        raise ValueError("redirect_status must be a redirect (301, 302, 303, 307 or 308)")
    if "{id}" not in values.get("copernica_id", current.copernica_id):
        raise ValueError("copernica_id must contain {id}")
    return dataclasses.replace(current, **values)
