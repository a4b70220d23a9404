"""A Salesforce org on localhost: SOAP/OAuth login, REST with a SOQL subset, sObject Collections,
Change Data Capture over CometD long-polling, and an admin API to seed data and inject faults.

Real clients (simple-salesforce, aiosfstream-ng, jsforce) work against it with only the base URL
changed. One user: ``admin@sandbox.example`` / ``sandbox-password`` + security token
``SANDBOXTOKEN``; OAuth client ``sandbox-client`` / ``sandbox-secret``; refresh token
``sandbox-refresh-token`` (all in ``SandboxSettings``).

By default it behaves like a new org of 2026: SOAP ``login()`` is refused (``INVALID_OPERATION``;
the ``soap_login`` variant allows it, up to API 64.0), and sObject Collections writes do not put
the ``Sforce-Call-Options`` client into ``changeOrigin`` (the ``collections_call_options``
variant does). OAuth client credentials, JWT bearer (with ``jwt_certificate_pem``), password and
refresh-token grants are always served.

Many orgs: ``POST /_sandbox/orgs`` ``{"name"?: …}`` answers 201 with a new, empty org's
``org_id``, ``username``, ``password``, ``security_token``, ``client_id``, ``client_secret`` and
``refresh_token``. Every login with those gives tokens of that org; REST, SOQL, Collections,
Composite and CometD calls with them act on that org alone, with its own records, CDC stream and
replay ids, sessions, faults, variants and API usage (``Sforce-Limit-Info``, ``/limits``); record
ids never repeat across orgs. The instance URL is the sandbox's own (the token selects the org).
The settings' credentials are the default org's (see ``orgs``).

Admin API (JSON in and out; errors as Salesforce error arrays). Every call acts on the default
org, or on another one with ``?org=<org id>`` (unknown: 404 ``NOT_FOUND``):

- ``GET /_sandbox/`` — credentials, record counts, API usage, streaming clients, latest replay id.
- ``POST /_sandbox/reset`` — empty the org: records, events, CometD clients, faults, usage
  (sessions stay valid).
- ``POST /_sandbox/records/{sobject}`` ``{"records": [{…}]}`` — seed records silently (no CDC
  event, no write count); may set ``CreatedDate``, ``LastModifiedDate``, ``SystemModstamp`` and
  ``IsDeleted``. Answers ``{"ids": […]}``.
- ``GET /_sandbox/contacts[?include_deleted=true]`` and ``GET /_sandbox/contacts/{id}`` — contacts
  as stored ("raw", without ``attributes``), for end-to-end comparisons.
- ``POST /_sandbox/contacts``, ``PATCH /_sandbox/contacts/{id}``, ``DELETE /_sandbox/contacts/{id}``,
  ``POST /_sandbox/contacts/{id}/undelete`` — changes "as a Salesforce user would" make them:
  same validation, CDC events with an empty ``changeOrigin``.
- ``POST /_sandbox/merge`` ``{"master": id, "losers": [id, id?], "fields": {…}}`` — merge
  contacts: UPDATE of the master, DELETE of each loser with ``MasterRecordId`` set.
- ``GET /_sandbox/writes`` — writes received per ``Sforce-Call-Options`` client id (``""`` = none).
- ``POST /_sandbox/sessions/expire`` — every session answers 401 ``INVALID_SESSION_ID`` after.
- ``POST /_sandbox/faults`` ``{"path": glob, "method"?, "status": 500|503|…|null, "latency": s,
  "times": n|null, "error_code"?}`` — make matching routes fail and/or slow;
  ``DELETE /_sandbox/faults`` clears them.
- ``GET /_sandbox/streaming``; ``POST /_sandbox/streaming/drop`` ``{"client_id"?}`` — forget
  CometD clients: their next (or held) connect answers ``403::Unknown client``.
- ``POST /_sandbox/cdc/gap`` ``{"record_ids": […], "change_type": "GAP_UPDATE", "entity"?}``,
  ``POST /_sandbox/cdc/overflow`` ``{"entity"?}`` — emit gap / GAP_OVERFLOW events.
- ``POST /_sandbox/cdc/purge`` ``{"up_to"?: replay id}`` — drop retained events (stored replay ids
  before them become invalid); ``GET /_sandbox/cdc/events`` lists what is retained.
- ``PATCH /_sandbox/limits`` ``{"used"?: n, "max"?: n}`` — set the daily API counter.
- ``GET /_sandbox/variants``; ``POST /_sandbox/variants`` ``{"soap_login"?: bool,
  "collections_call_options"?: bool, "jwt_certificate_pem"?: pem|null}`` — switch the variants.
- ``POST /_sandbox/landings`` ``{"field": "Title", "prefix": ""}`` — start recording when changes
  carrying that field's value (with that prefix) were stored; ``GET /_sandbox/landings?after=n``
  answers the entries from the n-th on (``at``: the machine's monotonic clock; ``value``,
  ``caller``: a user or the bridge; the record), ``next``, and the API calls so far. A reset stops
  the recording. The benchmark times the bridge with it.
"""

from __future__ import annotations

from .app import create_app
from .settings import SandboxSettings

__all__ = ["SandboxSettings", "create_app"]
