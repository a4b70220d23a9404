"""The bridge's own Salesforce custom objects, defined once.

The sandbox builds its describe and validation from these definitions, and a test checks the
SFDX metadata in ``salesforce/`` against them, so the names, types and lengths here are the
contract between the bridge and the package it deploys into an org.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

from bridge.vocabulary import CATEGORIES, ONE_WAY, OPERATIONS

FieldType = Literal[
    "id",
    "string",
    "textarea",
    "email",
    "phone",
    "url",
    "picklist",
    "multipicklist",
    "boolean",
    "date",
    "datetime",
    "double",
    "int",
    "reference",
    "address",
]


@dataclass(frozen=True)
class FieldSpec:
    """One field of an sObject, with the properties describe reports and validation needs."""

    name: str
    type: FieldType
    label: str = ""
    length: int = 0  # characters for text types, 0 otherwise
    precision: int = 0  # digits for numbers
    scale: int = 0
    required: bool = False  # nillable false and no default: REQUIRED_FIELD_MISSING when absent
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    compound: str | None = None  # compoundFieldName, e.g. "Name" or "MailingAddress"
    picklist: tuple[str, ...] = ()
    default: object = None  # value given on create when the field is absent
    name_field: bool = False
    auto_number: bool = False

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    @property
    def display_label(self) -> str:
        return self.label or self.name.removesuffix("__c").replace("_", " ")


@dataclass(frozen=True)
class ObjectSpec:
    """One sObject: API name, key prefix and fields (system fields included)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: tuple[FieldSpec, ...] = field(default=())

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def field(self, name: str) -> FieldSpec | None:
        """The field called ``name``, matched case-insensitively as Salesforce does."""
        wanted = name.lower()
        for spec in self.fields:
            if spec.name.lower() == wanted:
                return spec
        return None


def system_fields(owner: bool = True) -> tuple[FieldSpec, ...]:
    """The read-only fields every sObject has."""
    ro = functools.partial(FieldSpec, createable=False, updateable=False)
    fields = [
        ro("Id", "id", "Record ID", length=18),
        ro("IsDeleted", "boolean", "Deleted"),
    ]
    if owner:
        fields.append(
            FieldSpec(
                "OwnerId",
                "reference",
                "Owner ID",
                length=18,
                reference_to=("User",),
                relationship_name="Owner",
            )
        )
    fields += [
        ro("CreatedDate", "datetime", "Created Date"),
        ro("CreatedById", "reference", "Created By ID", length=18, reference_to=("User",)),
        ro("LastModifiedDate", "datetime", "Last Modified Date"),
        ro("LastModifiedById", "reference", "Last Modified By ID", length=18, reference_to=("User",)),
        ro("SystemModstamp", "datetime", "System Modstamp"),
    ]
    return tuple(fields)


SYNC_ERROR = "Copernica_Sync_Error__c"
EMAILING = "Copernica_Emailing__c"

ERROR_CATEGORIES = CATEGORIES  # the picklist is the bridge's error taxonomy

SYNC_ERROR_OBJECT = ObjectSpec(
    name=SYNC_ERROR,
    label="Copernica Sync Error",
    label_plural="Copernica Sync Errors",
    key_prefix="a0E",
    fields=system_fields()
    + (
        FieldSpec(
            "Name",
            "string",
            "Error Number",
            length=80,
            createable=False,
            updateable=False,
            name_field=True,
            auto_number=True,
        ),
        FieldSpec("Category__c", "picklist", "Category", length=255, picklist=ERROR_CATEGORIES),
        FieldSpec(
            "Operation__c",
            "picklist",
            "Operation",
            length=255,
            picklist=OPERATIONS,
        ),
        FieldSpec(
            "Direction__c", "picklist", "Direction", length=255, picklist=ONE_WAY
        ),
        FieldSpec("Record_Id__c", "string", "Record Id", length=255),
        FieldSpec(
            "Contact__c",
            "reference",
            "Contact",
            length=18,
            reference_to=("Contact",),
            relationship_name="Contact__r",
        ),
        FieldSpec("Message__c", "string", "Message", length=255),
        FieldSpec("Details__c", "textarea", "Details", length=32768),
        FieldSpec("Occurred_At__c", "datetime", "Occurred At"),
        FieldSpec(
            "Status__c",
            "picklist",
            "Status",
            length=255,
            picklist=("open", "resolved", "ignored"),
            default="open",
        ),
    ),
)

EMAILING_OBJECT = ObjectSpec(
    name=EMAILING,
    label="Copernica Emailing",
    label_plural="Copernica Emailings",
    key_prefix="a0F",
    fields=system_fields()
    + (
        FieldSpec(
            "Emailing_Id__c",
            "string",
            "Emailing Id",
            length=50,
            external_id=True,
            unique=True,
        ),
        FieldSpec("Name", "string", "Emailing Name", length=80, name_field=True),
        FieldSpec("Target__c", "string", "Target", length=255),
        FieldSpec("Sent_At__c", "datetime", "Sent At"),
    )
    + tuple(
        FieldSpec(name, "double", name.removesuffix("__c"), precision=18, scale=0)
        for name in (
            "Destinations__c",
            "Deliveries__c",
            "Impressions__c",
            "Clicks__c",
            "Errors__c",
            "Unsubscribes__c",
        )
    ),
)

BRIDGE_OBJECTS: tuple[ObjectSpec, ...] = (SYNC_ERROR_OBJECT, EMAILING_OBJECT)
