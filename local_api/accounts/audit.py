"""Security events, recorded in the database and readable by admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request
from sqlalchemy import func, select

from local_api.accounts.identity import admin_required
from local_api.docs import spec
from local_api.errors import request_id
from local_api.storage import schema
from local_api.storage.db import engine
from local_api.timeutil import iso, utcnow
from local_api.validation import int_arg

bp = Blueprint("audit", __name__)


def record(
    event: str,
    outcome: str = "success",
    *,
    user_id: int | None = None,
    **details: Any,
) -> None:
    """Write one audit row (user defaults to the caller, address to the client's)."""
    if user_id is None and g.get("identity") is not None:
        user_id = g.identity.user_id
    with engine().begin() as conn:
        conn.execute(
            schema.audit_log.insert().values(
                at=utcnow(),
                event=event,
                outcome=outcome,
                user_id=user_id,
                address=request.remote_addr,
                request_id=request_id(),
                details=details,
            )
        )


@bp.get("/audit")
@spec("List security events (admin)", auth="admin", query=("limit", "offset", "event", "user_id"))
@admin_required
def list_events() -> dict[str, Any]:
    limit = int_arg("limit", 100, 1, 1000)
    offset = int_arg("offset", 0, 0, 10**9)
    table = schema.audit_log
    query = select(table).order_by(table.c.id.desc())
    count = select(func.count()).select_from(table)
    if event := request.args.get("event"):
        query, count = query.where(table.c.event == event), count.where(table.c.event == event)
    if "user_id" in request.args:
        uid = int_arg("user_id", 0, 0, 2**62)
        query, count = query.where(table.c.user_id == uid), count.where(table.c.user_id == uid)
    with engine().connect() as conn:
        rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        total = conn.execute(count).scalar_one()
    events = [
        {
            "id": r["id"],
            "timestamp": iso(r["at"]),
            "event": r["event"],
            "outcome": r["outcome"],
            "user_id": r["user_id"],
            "address": r["address"],
            "request_id": r["request_id"],
            "details": r["details"],
        }
        for r in rows
    ]
    return {"events": events, "total": total, "limit": limit, "offset": offset}
