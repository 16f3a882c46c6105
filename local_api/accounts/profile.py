"""Profile and preferences (FT), and admin management of accounts and tiers."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from bridge.errors import NotFound, ValidationError
from local_api.accounts import audit, users
from local_api.accounts.identity import admin_required, current_identity, login_required
from local_api.docs import spec
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.validation import json_body, obj

bp = Blueprint("users", __name__)

PREFERENCES = obj(
    {
        "preferences": obj(
            {
                "theme": {"type": "string", "enum": ["light", "dark", "system"]},
                "default_model": {"type": ["string", "null"], "minLength": 1, "maxLength": 128},
                "other_preferences": {"type": "object", "maxProperties": 64},
            }
        )
    },
    ("preferences",),
)
ADMIN_UPDATE = obj(
    {
        "role": {"type": "string", "enum": list(users.ROLES)},
        "tier": {"type": "string", "enum": list(users.TIERS)},
        "rate_limit": {"type": ["string", "null"], "maxLength": 128},
        "disabled": {"type": "boolean"},
    },
    minProperties=1,
)
_MAX_PREFS_BYTES = 16 * 1024


@bp.get("/user/profile")
@spec("Your profile and preferences")
@login_required
def profile() -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    return {"user": users.public(users.get_user(who.user_id))}


@bp.put("/user/preferences")
@spec("Update your preferences (fields given are replaced)", body=PREFERENCES)
@login_required
def preferences() -> dict[str, Any]:
    import json

    body = json_body(PREFERENCES)
    who = current_identity()
    assert who is not None
    current = dict(users.get_user(who.user_id)["preferences"] or {})
    current.update(body["preferences"])
    if len(json.dumps(current)) > _MAX_PREFS_BYTES:
        raise ValidationError("preferences are limited to 16 KB", details={"field": "preferences"})
    with engine().begin() as conn:
        conn.execute(
            schema.users.update()
            .where(schema.users.c.id == who.user_id)
            .values(preferences=current)
        )
    audit.record("preferences_changed", fields=sorted(body["preferences"]))
    return {"message": "Preferences updated successfully", "preferences": current}


@bp.get("/admin/users")
@spec("List accounts (admin)", auth="admin")
@admin_required
def list_users() -> dict[str, Any]:
    with engine().connect() as conn:
        rows = conn.execute(select(schema.users).order_by(schema.users.c.id)).mappings().all()
    return {"users": [{**users.public(r), "disabled": r["disabled"]} for r in rows]}


@bp.patch("/admin/users/<int:user_id>")
@spec(
    "Change an account's role, tier, custom rate limit or disabled flag (admin)",
    auth="admin",
    body=ADMIN_UPDATE,
)
@admin_required
def update_user(user_id: int) -> dict[str, Any]:
    body = json_body(ADMIN_UPDATE)
    if body.get("rate_limit"):
        from limits import parse_many

        try:
            parse_many(body["rate_limit"])
        except ValueError:
            raise ValidationError(
                "rate_limit must look like '500/minute;5000/hour'", details={"field": "rate_limit"}
            ) from None
    with engine().begin() as conn:
        result = conn.execute(
            schema.users.update().where(schema.users.c.id == user_id).values(**body)
        )
    if result.rowcount != 1:
        raise NotFound("No such user", details={"user_id": user_id})
    audit.record("admin_user_updated", target_user_id=user_id, changes=body)
    row = users.get_user(user_id)
    return {"user": {**users.public(row), "disabled": row["disabled"]}}
