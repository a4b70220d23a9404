"""Copernica sandbox: an in-memory emulator of the Copernica REST API (v3 and v4) and its webhooks.

It follows Copernica's REST API documentation. Start with
``bridge sandbox copernica --port 8802``; the one API token is ``sandbox-token`` (configurable) and
one empty database (``Sandbox``: no fields, no profiles) exists at start, plus one drag-and-drop
template and one Publisher template with one document so emailings can be sent at once.

Wire
----
- ``/v3/...``: every call carries ``?access_token=<API token>``.
- ``/v4/...``: ``POST /authenticate`` (also ``POST /``, standing in for
  ``https://authenticate.copernica.com``) with form body ``access_token=...`` (a query parameter or
  a JSON body work too) answers the bare JWT as ``text/plain``; then ``Authorization: Bearer``.
- Success: GET 200 + JSON (Content-Type exactly ``application/json``); POST 201, no body,
  ``X-Created: <id>`` and ``X-location``; PUT 204 (201 + ``X-Created`` when an upsert created);
  DELETE 204 + ``X-Deleted: <type> <id>``. Every refusal is 400 (v4 credentials: see below) ``{"error":{"message":...}}`` with
  Copernica's observed messages (``Invalid method``, ``No database with supplied ID``,
  ``No entity with supplied ID``, ``This profile has already been removed``,
  ``Invalid data provided``, ``URL parameter fields is required``, ...).
- Lists use the wrapper ``{start, limit, count, total, data}`` (ints); ``limit`` defaults to 100 and
  is capped at 1000; ``total=false`` drops ``total``; negative start/limit give an empty page. Ids
  are strings in JSON. Field values are strings, coerced by field type like PHP does.

Choices where Copernica's documentation is silent
-------------------------------------------------
- v4 with a missing, invalid or expired JWT: **401**, ``WWW-Authenticate: Bearer
  error="invalid_token"`` and ``{"error":{"message":"Invalid access token"}}``. v4 does not accept
  ``?access_token=``. v3 with a bad token: 400 ``Invalid access token`` (documented).
  ``/authenticate`` with a bad API token: 400 ``Invalid access token``.
- JWT claims: ``iat``, ``exp`` (lifetime ``jwt_lifetime``, 24 h), HS256 with a per-process secret.
- Timestamps are shown in ``timezone`` (Europe/Amsterdam). ``modified`` conditions are read in that
  zone and compared as instants; ``orderby=modified`` sorts by an internal change sequence, so
  ordering is exact even within one second or across a DST fold.
- Text comparisons in ``fields[]`` are case-insensitive (MySQL collation), ``=~``/``!~`` are
  LIKE with ``%`` and ``_``. Numeric fields and ``id`` compare as numbers.
- ``profileids`` pages like every list (``start``, ``limit`` 100 by default); ``start`` is an
  offset into the ids in ascending order.
- An upsert (``PUT database/$db/profiles``) that creates uses only the body; the selector's values
  are not copied into the new profile. ``async`` is ignored (always synchronous).
- Bulk delete answers 204 with one ``X-Deleted: profile <id>`` header per removed profile;
  unknown or already removed ids are skipped.
- ``DELETE profile/$id`` empties the fields, sets ``removed``; the ``delete`` webhook carries the
  field values from *before* the delete. ``completely=true`` forgets the profile entirely.
- A write that changes no stored value does not move ``modified`` and fires no webhook
  (``webhook_on_noop_update`` switches the webhook on). Updates of removed profiles fire nothing.
- Unknown interest names are ignored; interests are created with ``POST database/$db/interests``.
- Fields named ``id`` or ``code`` are refused (400), as the Copernica UI refuses them; database
  names are unique (case-insensitive).
- ``DELETE database/$id`` answers 400 ``Invalid method`` (not a documented call).
- v4 accepts both ``ms/``/``publisher/`` and ``draganddrop/``/``html/``; v3 only the old names.
- ``POST ms/emailing`` / ``POST publisher/emailing`` (the documented sends) answer 201 +
  ``X-Created``; ``POST draganddrop/emailing`` / ``html/emailing`` answer 400 ``Invalid method``
  (no page documents them). ``GET …/emailing/$id`` answers the emailing inside ``data``. Target
  types ``database``, ``view`` and ``profile`` (others: 400 ``Invalid target type``). Destinations are the
  target's live profiles with a non-empty field of type ``email``. Statistics are generated from
  ``statistics_seed`` and the emailing id (the same emailing always shows the same numbers).
- Selections nest: ``database/$db/views`` lists the top-level ones, ``view/$id/views`` the ones
  nested in a selection (``parent-type`` ``view``, ``has-children``); a nested selection narrows
  the one around it.
- Webhooks: ``callers`` values are ``rest`` (REST API writes), ``ms`` (a user in the Marketing
  Suite, the default for control-API edits), ``publisher`` and ``import``; omitted = all.
  ``X-Copernica-ID`` is ``account-<id>``. ``keyId`` is ``<key_selector>._domainkey.copernica.com``.
  The ``Signature`` header is written as in the documentation's example: header names as written
  there, no comma before ``signature=``; ``Digest`` is ``SHA-256=<base64>``.
  Any 2xx acknowledges; anything else (or no answer within ``webhook_timeout``) is retried after
  ``webhook_retry_base`` seconds, doubling, up to ``webhook_max_attempts`` attempts, then recorded
  in the feedback-loop errors. Deliveries to one webhook are sequential (a retry holds the queue),
  so order is kept unless the ``reorder`` fault is on; ``webhook_concurrency`` above 1 (CLI
  ``--webhook-concurrency``) lets that many go out at once, in any order. ``interests`` are sent as ``interests[]=name``.
- ``legacy_statuses=True`` models what was observed on the v2 API instead of the documented codes:
  every successful PUT answers 303 See Other with ``Location`` (the new profile after an upsert
  that created one, else the requested URL without the version), DELETE answers 200.
- No collections, subprofiles, imports, logfiles, OAuth or scheduled emailings (400 Invalid method).

Control API (``/_sandbox/``, no credentials, JSON bodies)
---------------------------------------------------------
- ``POST /_sandbox/accounts`` ``{"name"?: ...}``: 201 with a new account's ``account_id``,
  ``access_token`` (its API token: v3 ``access_token``, v4 ``/authenticate``), ``database_id`` and
  ``database_name`` (its one empty database). REST calls with its token or JWTs act on its own
  databases, profiles, content, webhooks (``X-Copernica-ID`` names it) and call counters; entity
  ids never repeat across accounts; the webhook signing key is shared (see ``accounts``).
- Every other control call acts on the default account (the settings' token), or on another one
  with ``?account=<account id>`` (unknown: 400 ``No account with supplied ID``).
- ``GET /_sandbox/``: this text.  ``POST /_sandbox/reset``: back to the start state (same token/key).
- ``GET /_sandbox/stats``: ``api_calls``, ``rest_writes`` (successful REST POST/PUT/DELETE),
  webhook counters.  ``GET /_sandbox/rest-writes``: the count and the last 1000 writes.
- ``GET /_sandbox/databases/{db}/profiles[?since_seq=N]``: every profile, removed ones too, with
  ``seq`` (monotonic change sequence) and ``modified_utc``.
- Acting as a Copernica user (fires webhooks, is not a REST call, caller ``ms`` unless ``caller``
  says otherwise): ``POST /_sandbox/databases/{db}/profiles`` ``{"fields": {...}}``,
  ``PUT /_sandbox/profiles/{id}`` ``{"fields": {...}}``, ``DELETE /_sandbox/profiles/{id}``.
- Content: ``POST /_sandbox/databases/{db}/views`` ``{"name", "rules": ["Field==x", ...],
  "parent"?: view id}``,
  ``POST /_sandbox/ms/templates`` ``{"name", "subject", "from_name", "from_email"}``,
  ``POST /_sandbox/publisher/documents`` ``{"name", "subject", "from_address", "template"}``.
- REST faults: ``POST /_sandbox/faults`` ``{"status": 429|500|502|503|504, "count": n,
  "retry_after": s, "latency": s, "method"?: "POST"}`` (``method``: only calls of that verb) (500/502/503/504 answer the HTML "Loadbalancer Error" page,
  503 with ``Retry-After``; 429 a JSON error with ``Retry-After``); ``DELETE /_sandbox/faults``. ``POST /_sandbox/tokens/expire``: every
  JWT issued so far stops working.
- Webhooks: ``GET /_sandbox/webhooks``; ``POST /_sandbox/webhooks/faults`` ``{"fail": n,
  "duplicate": n, "reorder": n}``; ``GET /_sandbox/webhooks/deliveries`` (every attempt, with
  latency); ``GET /_sandbox/webhooks/feedback-loop-errors``; ``POST /_sandbox/webhooks/drain``.
- Variants (``sandbox.copernica.variants.Variants``; documented behaviour by default):
  ``GET /_sandbox/variants``; ``POST /_sandbox/variants`` with any of ``emailing_data_wrapper``
  (bool), ``created_id`` (``both``/``x-created``/``x-location``/``none``) and ``created_id_kinds``
  (e.g. ``["profile", "emailing"]``; empty: every kind), ``profileids_paged`` (bool) and
  ``profileids_cap`` (ids per page at most), ``send_paths`` (``documented``/``new``/``both``),
  ``signature_shape`` (``documentation``/``library``), ``digest_token``
  (``SHA-256``/``sha-256``/``sha256``), ``copernica_id`` (``account-{id}``, ``account_{id}``,
  ``environment_{id}``), ``redirect_gets`` (the next N REST GETs answer ``redirect_status``, 301 by
  default, to the same path at ``redirect_to``, the sandbox itself when empty).
- ``POST /_sandbox/databases/{db}/profiles/seed`` ``{"profiles": [{"fields": {...}, "removed"?:
  true}]}``: profiles as if they had always been there (no webhook, no REST call counted).
- ``GET /_sandbox/webhook-key``: the public key (PEM, ``X-Key-Id`` header);
  ``GET /_sandbox/webhook-key/dkim``: the same key as the DNS TXT value Copernica publishes.
- ``POST /_sandbox/landings`` ``{"field": "Title", "prefix": ""}`` — start recording when changes
  carrying that field's value (with that prefix) were stored; ``GET /_sandbox/landings?after=n``
  answers the entries from the n-th on (``at``: the machine's monotonic clock; ``value``,
  ``caller``: a user or the bridge; the record), ``next``, and the API calls so far. A reset stops
  the recording. The benchmark times the bridge with it.
"""

from __future__ import annotations

from sandbox.copernica.app import create_app
from sandbox.copernica.runtime import SANDBOX, Sandbox, SandboxSettings

__all__ = ["SANDBOX", "Sandbox", "SandboxSettings", "create_app"]
