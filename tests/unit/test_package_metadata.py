"""The SFDX package in ``salesforce/`` against what Salesforce requires and what the bridge writes.

Every XML file must be well-formed, in the metadata namespace, of the type its suffix and folder
say, with the elements Salesforce requires for that type, its elements in the order Salesforce
itself writes them (alphabetical, ``fullName`` first). The custom objects and fields must match
``bridge.salesforce.objects`` exactly, in both directions: a field added on one side only fails
here with a message naming it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bridge.salesforce.objects import BRIDGE_OBJECTS, SYNC_ERROR, FieldSpec, ObjectSpec
from sandbox.salesforce.schema import CONTACT

PACKAGE = Path(__file__).resolve().parents[2] / "salesforce"
SOURCE = PACKAGE / "force-app" / "main" / "default"
NS = "http://soap.sforce.com/2006/04/metadata"
Q = f"{{{NS}}}"

# file suffix -> (metadata type, folder under force-app/main/default)
TYPES = {
    ".object-meta.xml": ("CustomObject", "objects"),
    ".field-meta.xml": ("CustomField", "objects"),
    ".tab-meta.xml": ("CustomTab", "tabs"),
    ".permissionset-meta.xml": ("PermissionSet", "permissionsets"),
    ".reportType-meta.xml": ("ReportType", "reportTypes"),
    ".report-meta.xml": ("Report", "reports"),
    ".reportFolder-meta.xml": ("ReportFolder", "reports"),
    ".platformEventChannelMember-meta.xml": (
        "PlatformEventChannelMember",
        "platformEventChannelMembers",
    ),
}
REQUIRED = {
    "CustomObject": ("label", "pluralLabel", "nameField", "deploymentStatus", "sharingModel"),
    "CustomField": ("fullName", "label", "type"),
    "CustomTab": ("customObject", "label", "motif", "url", "urlEncodingKey"),  # a Web tab
    "PermissionSet": ("label",),
    "ReportType": ("baseObject", "category", "deployed", "label", "sections"),
    "Report": ("name", "format", "reportType"),
    "ReportFolder": ("name",),
    "PlatformEventChannelMember": ("eventChannel", "selectedEntity"),
}
# what each CustomField type needs on top of fullName, label and type
REQUIRED_BY_FIELD_TYPE = {
    "Text": ("length",),
    "TextArea": (),
    "LongTextArea": ("length", "visibleLines"),
    "Number": ("precision", "scale"),
    "Checkbox": ("defaultValue",),
    "Lookup": ("referenceTo", "relationshipName", "deleteConstraint"),
    "Picklist": ("valueSet",),
    "DateTime": (),
    "Date": (),
    "Email": (),
    "Phone": (),
    "Url": (),
}
# the describe type of objects.py -> the metadata field type
FIELD_TYPES = {
    "string": "Text",
    "picklist": "Picklist",
    "reference": "Lookup",
    "datetime": "DateTime",
    "date": "Date",
    "double": "Number",
    "int": "Number",
    "boolean": "Checkbox",
    "email": "Email",
    "phone": "Phone",
    "url": "Url",
}


def metadata_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*") if p.is_file())


def parse(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def local(element: ET.Element) -> str:
    return element.tag.removeprefix(Q)


def text(element: ET.Element, name: str) -> str | None:
    found = element.find(Q + name)
    return None if found is None else (found.text or "")


def children(element: ET.Element, name: str) -> list[ET.Element]:
    return element.findall(Q + name)


def suffix_of(path: Path) -> str:
    return next(s for s in TYPES if path.name.endswith(s))


def metadata_type(field: FieldSpec) -> str:
    if field.type == "textarea":
        return "LongTextArea" if field.length > 255 else "TextArea"
    return FIELD_TYPES[field.type]


def object_folder(spec: ObjectSpec, source: Path = SOURCE) -> Path:
    return source / "objects" / spec.name


# --- the comparison with objects.py, as a function so it can be shown to catch drift ------


def mismatches(spec: ObjectSpec, source: Path = SOURCE) -> list[str]:
    """Every difference between ``spec`` and the package's metadata of that object."""
    folder = object_folder(spec, source)
    object_file = folder / f"{spec.name}.object-meta.xml"
    if not object_file.exists():
        return [f"{spec.name}: no {object_file.name}"]
    problems: list[str] = []
    root = parse(object_file)
    if text(root, "label") != spec.label:
        problems.append(f"{spec.name}: label {text(root, 'label')!r} != {spec.label!r}")
    if text(root, "pluralLabel") != spec.label_plural:
        problems.append(f"{spec.name}: pluralLabel {text(root, 'pluralLabel')!r}")
    name_spec = spec.field("Name")
    name_field = root.find(Q + "nameField")
    if name_spec is None or name_field is None:
        problems.append(f"{spec.name}: the Name field must exist on both sides")
    else:
        wanted = "AutoNumber" if name_spec.auto_number else "Text"
        if text(name_field, "type") != wanted:
            problems.append(f"{spec.name}.Name: type {text(name_field, 'type')} != {wanted}")
        if text(name_field, "label") != name_spec.display_label:
            problems.append(f"{spec.name}.Name: label {text(name_field, 'label')!r}")
    custom = {f.name: f for f in spec.fields if f.custom}
    files = {p.name.removesuffix(".field-meta.xml"): p for p in (folder / "fields").glob("*.xml")}
    for name in sorted(custom.keys() - files.keys()):
        problems.append(f"{spec.name}.{name}: in objects.py but no fields/{name}.field-meta.xml")
    for name in sorted(files.keys() - custom.keys()):
        problems.append(f"{spec.name}.{name}: in the package but not in objects.py")
    for name in sorted(custom.keys() & files.keys()):
        problems += [
            f"{spec.name}.{name}: {p}" for p in field_mismatches(custom[name], files[name])
        ]
    return problems


def field_mismatches(field: FieldSpec, path: Path) -> list[str]:
    root = parse(path)
    problems = []
    kind = metadata_type(field)
    if text(root, "fullName") != field.name:
        problems.append(f"fullName {text(root, 'fullName')!r}")
    if text(root, "type") != kind:
        problems.append(f"type {text(root, 'type')} != {kind}")
    if text(root, "label") != field.display_label:
        problems.append(f"label {text(root, 'label')!r} != {field.display_label!r}")
    if (text(root, "required") == "true") != field.required:
        problems.append("required differs")
    if (text(root, "externalId") == "true") != field.external_id:
        problems.append("externalId differs")
    if (text(root, "unique") == "true") != field.unique:
        problems.append("unique differs")
    if kind in ("Text", "LongTextArea") and text(root, "length") != str(field.length):
        problems.append(f"length {text(root, 'length')} != {field.length}")
    if kind == "Number" and (
        text(root, "precision") != str(field.precision) or text(root, "scale") != str(field.scale)
    ):
        problems.append("precision/scale differ")
    if kind == "Lookup":
        if [e.text for e in children(root, "referenceTo")] != list(field.reference_to):
            problems.append("referenceTo differs")
        # a custom lookup's relationship from the child is always <field>__r
        if field.relationship_name != field.name.removesuffix("__c") + "__r":
            problems.append(f"relationship {field.relationship_name} is not <field>__r")
    if kind == "Picklist":
        values = root.findall(f"{Q}valueSet/{Q}valueSetDefinition/{Q}value")
        names = [text(v, "fullName") for v in values]
        if names != list(field.picklist):
            problems.append(f"picklist values {names} != {list(field.picklist)}")
        defaults = [text(v, "fullName") for v in values if text(v, "default") == "true"]
        if defaults != ([field.default] if field.default is not None else []):
            problems.append(f"picklist default {defaults} != {field.default!r}")
    return problems


# --- every file ---------------------------------------------------------------------------


def test_the_project_file_points_at_the_source() -> None:
    project = json.loads((PACKAGE / "sfdx-project.json").read_text())
    directories = project["packageDirectories"]
    assert any(d.get("default") for d in directories)
    for directory in directories:
        assert (PACKAGE / directory["path"] / "main" / "default").is_dir()
    major, minor = project["sourceApiVersion"].split(".")
    assert int(major) >= 45 and minor.isdigit()  # CDC needs API 44+


def test_every_file_is_known_well_formed_metadata() -> None:
    files = metadata_files()
    assert len(files) > 20
    for path in files:
        suffix = suffix_of(path)
        kind, folder = TYPES[suffix]
        assert path.relative_to(SOURCE).parts[0] == folder, path
        root = parse(path)  # raises on malformed XML
        assert root.tag == Q + kind, f"{path.name}: root {root.tag}"
        for element in root.iter():
            assert element.tag.startswith(Q), f"{path.name}: {element.tag} outside {NS}"
        for name in REQUIRED[kind]:
            assert root.find(Q + name) is not None, f"{path.name}: <{name}> is required"


def test_elements_are_in_the_order_salesforce_writes_them() -> None:
    for path in metadata_files():
        for element in parse(path).iter():
            names = [local(c) for c in element]
            rest = [n for n in names if n != "fullName"]
            assert names[: len(names) - len(rest)] == ["fullName"] * (len(names) - len(rest))
            assert rest == sorted(rest), f"{path.name} <{local(element)}>: {rest}"


def test_every_field_has_what_its_type_needs() -> None:
    for path in SOURCE.glob("objects/*/fields/*.field-meta.xml"):
        root = parse(path)
        kind = text(root, "type") or ""
        assert kind in REQUIRED_BY_FIELD_TYPE, f"{path.name}: type {kind}"
        for name in REQUIRED_BY_FIELD_TYPE[kind]:
            assert root.find(Q + name) is not None, f"{path.name}: {kind} needs <{name}>"
        assert path.name == f"{text(root, 'fullName')}.field-meta.xml"
        if kind == "Picklist":
            values = root.findall(f"{Q}valueSet/{Q}valueSetDefinition/{Q}value")
            assert values and all(text(v, "fullName") and text(v, "label") for v in values)


def test_custom_objects_need_a_name_field_that_can_exist() -> None:
    for path in SOURCE.glob("objects/*/*.object-meta.xml"):
        root = parse(path)
        name_field = root.find(Q + "nameField")
        assert name_field is not None
        if text(name_field, "type") == "AutoNumber":
            assert "{0" in (text(name_field, "displayFormat") or ""), path.name
        assert text(root, "deploymentStatus") == "Deployed"
        assert text(root, "enableReports") == "true", "the report type needs reports enabled"


# --- the objects against objects.py -------------------------------------------------------


def test_the_package_has_exactly_the_bridge_objects() -> None:
    folders = {p.name for p in (SOURCE / "objects").iterdir() if p.is_dir()}
    assert folders == {spec.name for spec in BRIDGE_OBJECTS}


@pytest.mark.parametrize("spec", BRIDGE_OBJECTS, ids=lambda s: s.name)
def test_objects_and_fields_match_what_the_bridge_writes(spec: ObjectSpec) -> None:
    assert mismatches(spec) == []


def test_a_field_added_to_objects_py_only_is_caught() -> None:
    spec = BRIDGE_OBJECTS[0]
    grown = dataclasses.replace(
        spec, fields=(*spec.fields, FieldSpec("Retries__c", "double", precision=18))
    )
    assert mismatches(grown) == [
        f"{spec.name}.Retries__c: in objects.py but no fields/Retries__c.field-meta.xml"
    ]


def test_a_field_added_to_the_package_only_is_caught(tmp_path: Path) -> None:
    spec = BRIDGE_OBJECTS[1]
    copy = tmp_path / "default"
    shutil.copytree(SOURCE / "objects", copy / "objects")
    fields = object_folder(spec, copy) / "fields"
    shutil.copy(next(fields.glob("*.xml")), fields / "Extra__c.field-meta.xml")
    assert f"{spec.name}.Extra__c: in the package but not in objects.py" in mismatches(spec, copy)


def test_a_changed_field_is_caught() -> None:
    spec = BRIDGE_OBJECTS[0]
    changed = dataclasses.replace(
        spec,
        fields=tuple(
            dataclasses.replace(f, length=100) if f.name == "Message__c" else f for f in spec.fields
        ),
    )
    assert mismatches(changed) == [f"{spec.name}.Message__c: length 255 != 100"]


# --- permission sets, tab, report type and report -------------------------------------------


def known_fields() -> dict[str, FieldSpec]:
    every = {f"{s.name}.{f.name}": f for s in BRIDGE_OBJECTS for f in s.fields}
    every |= {f"Contact.{f.name}": f for f in CONTACT.fields}
    return every


def test_permission_sets_name_only_fields_and_objects_that_exist() -> None:
    fields = known_fields()
    objects = {s.name for s in BRIDGE_OBJECTS} | {"Contact", "Account"}
    tabs = {p.name.removesuffix(".tab-meta.xml") for p in (SOURCE / "tabs").glob("*.xml")}
    for path in (SOURCE / "permissionsets").glob("*.xml"):
        root = parse(path)
        for permission in children(root, "fieldPermissions"):
            name = text(permission, "field") or ""
            assert name in fields, f"{path.name}: unknown field {name}"
            spec = fields[name]
            assert not spec.required, f"{path.name}: {name} is required: no field permission"
            assert spec.custom or spec.updateable, f"{path.name}: {name} is a system field"
            if text(permission, "editable") == "true":
                assert text(permission, "readable") == "true"
                assert spec.updateable, f"{path.name}: {name} cannot be edited"
        for permission in children(root, "objectPermissions"):
            assert text(permission, "object") in objects
        for setting in children(root, "tabSettings"):
            assert text(setting, "tab") in tabs


def test_the_integration_user_gets_what_the_bridge_needs() -> None:
    root = parse(SOURCE / "permissionsets" / "Copernica_Bridge_Integration.permissionset-meta.xml")
    granted = {text(p, "name") for p in children(root, "userPermissions")}
    assert {"ApiEnabled", "ViewAllData", "ViewSetup"} <= granted  # REST, CDC on Contact, /limits
    objects = {text(p, "object"): p for p in children(root, "objectPermissions")}
    for spec in BRIDGE_OBJECTS:
        permission = objects[spec.name]
        for flag in ("allowCreate", "allowEdit", "allowRead", "allowDelete"):
            assert text(permission, flag) == "true", f"{spec.name}: {flag}"
    for flag in ("allowCreate", "allowEdit", "allowRead", "allowDelete"):
        assert text(objects["Contact"], flag) == "true"
    assert text(objects["Account"], "allowRead") == "true"  # Contact access depends on it
    editable = {
        text(p, "field")
        for p in children(root, "fieldPermissions")
        if text(p, "editable") == "true"
    }
    for spec in BRIDGE_OBJECTS:
        for field in spec.fields:
            if field.custom and not field.required:
                assert f"{spec.name}.{field.name}" in editable


def test_the_web_tab_points_at_the_bridge() -> None:
    root = parse(SOURCE / "tabs" / "Copernica.tab-meta.xml")
    assert text(root, "customObject") == "false"
    url = text(root, "url") or ""
    assert url.startswith("https://") and url.endswith("/sfcp")
    assert text(root, "urlEncodingKey") == "UTF-8"
    assert int(text(root, "frameHeight") or "0") > 0


def test_cdc_is_selected_for_contact() -> None:
    root = parse(
        SOURCE
        / "platformEventChannelMembers"
        / "ChangeEvents_ContactChangeEvent.platformEventChannelMember-meta.xml"
    )
    assert text(root, "eventChannel") == "ChangeEvents"
    assert text(root, "selectedEntity") == "ContactChangeEvent"


def test_report_type_and_report_use_fields_that_exist() -> None:
    error_spec = next(s for s in BRIDGE_OBJECTS if s.name == SYNC_ERROR)
    report_type_file = SOURCE / "reportTypes" / "Copernica_Sync_Errors.reportType-meta.xml"
    report_type = parse(report_type_file)
    assert text(report_type, "baseObject") == SYNC_ERROR
    offered = set()
    for column in report_type.iter(Q + "columns"):
        assert text(column, "table") == SYNC_ERROR
        name = text(column, "field") or ""
        assert error_spec.field(name) is not None, f"report type: unknown field {name}"
        offered.add(f"{SYNC_ERROR}${name}")
    reports = list((SOURCE / "reports").glob("*/*.report-meta.xml"))
    assert [r.name for r in reports] == ["Copernica_Sync_Errors.report-meta.xml"]
    for path in reports:
        folder = path.parent.name
        assert (path.parent.parent / f"{folder}.reportFolder-meta.xml").exists()
        report = parse(path)
        assert text(report, "name") == "Copernica sync errors"
        # a report names a custom report type by its file name plus __c
        assert text(report, "reportType") == report_type_file.name.split(".")[0] + "__c"
        used = [text(c, "field") for c in children(report, "columns")]
        used += [text(c, "column") for c in report.iter(Q + "criteriaItems")]
        used += [text(report, "sortColumn")]
        used += [e.text for e in report.iter(Q + "dateColumn")]
        for name in used:
            assert name in offered, f"{path.name}: {name} is not in the report type"
