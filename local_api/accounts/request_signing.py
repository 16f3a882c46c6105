"""Signed requests for API clients: the worker's HMAC scheme (bridge.signing), keyed per API key.

A client signs with a key derived from its API key, so it needs nothing else::

    signing_key = hex(HMAC-SHA256(key=<whole API key "cb_...">, msg=b"bridge-request-signing-v1"))

and sends ``X-Bridge-Key-Id`` (the key's ``id``), ``X-Bridge-Timestamp``, ``X-Bridge-Nonce`` and
``X-Bridge-Signature`` instead of ``Authorization``: the API key itself never crosses the wire.

Why derived and stored sealed: the database keeps only a SHA-256 of each API key. Keying the
HMAC with that hash would let anyone holding a copy of the database (a backup) sign requests.
Instead the server stores the derived key encrypted with ``crypto.box()`` (table
``api_key_signing``), learning it whenever the API key is presented as a bearer credential,
so signing needs both the database and the secret key file. A key created before this
scheme is enabled for signing by its first bearer use.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import Flask, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bridge.errors import Unauthorized
from bridge.signing import NONCE_HEADER, SIGNATURE_HEADER, Verifier, path_from_environ
from local_api.storage import schema, shared_state
from local_api.storage.crypto import box
from local_api.storage.db import engine
from local_api.timeutil import utcnow

LABEL = b"bridge-request-signing-v1"
MAX_SKEW = 300  # seconds a signed request stays valid (and its nonce is remembered)


def derive(api_key: str) -> str:
    """The signing key of an API key (hex); clients compute the same."""
    return hmac.new(api_key.encode(), LABEL, hashlib.sha256).hexdigest()


def present() -> bool:
    """Whether the request carries a signature (then it must verify)."""
    return SIGNATURE_HEADER in request.headers


def enroll(key_id: str, api_key: str) -> None:
    """Remember ``api_key``'s signing key (sealed), once; later calls cost a set lookup."""
    known: set[str] = current_app.extensions["signing_enrolled"]
    if key_id in known:
        return
    table = schema.api_key_signing
    with engine().begin() as conn:
        found = conn.execute(select(table.c.key_id).where(table.c.key_id == key_id)).first()
        if found is None:
            try:
                conn.execute(table.insert().values(
                    key_id=key_id, secret_enc=box().encrypt(derive(api_key)), created_at=utcnow()
                ))
            except IntegrityError:  # enrolled by a concurrent request
                pass
    known.add(key_id)


def _lookup(key_id: str | None) -> str | None:
    if not key_id or len(key_id) > 64:
        return None
    table = schema.api_key_signing
    with engine().connect() as conn:
        row = conn.execute(select(table.c.secret_enc).where(table.c.key_id == key_id)).first()
    return box().decrypt(row[0]) if row is not None else None


def verify() -> dict[str, Any]:
    """Check the signature (fresh timestamp, unused nonce); the live API key row it names."""
    verifier: Verifier = current_app.extensions["request_verifier"]
    body = request.get_data(cache=True)
    key_id = verifier.verify(request.method, path_from_environ(request.environ), request.headers,
                             body)
    # the verifier remembers nonces in this process; Redis makes them once across instances
    if not shared_state.first_use(str(key_id), request.headers[NONCE_HEADER], 2 * MAX_SKEW):
        raise Unauthorized("Replayed request (nonce already used)")
    table = schema.api_keys
    with engine().connect() as conn:
        row = conn.execute(select(table).where(table.c.id == key_id)).mappings().first()
    if row is None:
        raise Unauthorized("Invalid request signature")
    if row["revoked_at"] is not None:
        raise Unauthorized("This API key has been revoked")
    return dict(row)


def init_app(app: Flask) -> None:
    app.extensions["request_verifier"] = Verifier(_lookup, max_skew=MAX_SKEW)
    app.extensions["signing_enrolled"] = set()
