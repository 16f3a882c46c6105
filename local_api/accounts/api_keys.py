"""API key routes: create (secret shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from bridge.errors import NotFound
from local_api.accounts import api_key_store, audit, request_signing
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.timeutil import iso, utcnow
from local_api.validation import json_body, obj

bp = Blueprint("api_keys", __name__, url_prefix="/auth/api-keys")

CREATE = obj({"name": {"type": "string", "minLength": 1, "maxLength": 100}})


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": f"{api_key_store.PREFIX}{row['prefix']}",
        "created_at": iso(row["created_at"]),
        "last_used_at": iso(row.get("last_used_at")),
        "revoked": row.get("revoked_at") is not None,
    }


@bp.post("")
@spec("Create an API key; the secret is in this answer only", body=CREATE, status=201)
@login_required
def create() -> tuple[dict[str, Any], int]:
    body = json_body(CREATE, optional=True)
    who = current_identity()
    assert who is not None
    row, key = api_key_store.create(who.user_id, body.get("name") or "default")
    request_signing.enroll(row["id"], key)  # the key can sign requests from now on
    audit.record("api_key_created", key_id=row["id"])
    return {**_public(row), "key": key}, 201


@bp.get("")
@spec("List your API keys (never their secrets)")
@login_required
def list_keys() -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    table = schema.api_keys
    with engine().connect() as conn:
        rows = conn.execute(
            select(table).where(table.c.user_id == who.user_id).order_by(table.c.created_at)
        ).mappings()
        return {"api_keys": [_public(r) for r in rows]}


@bp.delete("/<key_id>")
@spec("Revoke one of your API keys")
@login_required
def revoke(key_id: str) -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    table = schema.api_keys
    with engine().begin() as conn:
        # Another user's key is "not found": its existence is not theirs to learn.
        result = conn.execute(
            table.update()
            .where(
                table.c.id == key_id, table.c.user_id == who.user_id, table.c.revoked_at.is_(None)
            )
            .values(revoked_at=utcnow())
        )
    if result.rowcount != 1:
        raise NotFound("No such API key", details={"key_id": key_id[:64]})
    audit.record("api_key_revoked", key_id=key_id)
    return {"message": "API key revoked", "id": key_id}
