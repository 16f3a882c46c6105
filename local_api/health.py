"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import text

from local_api.db import engine
from local_api.docs import spec

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@spec("Liveness: the process answers", auth="none")
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/readyz")
@spec("Readiness: the database answers", auth="none")
def readyz() -> tuple[dict[str, Any], int]:
    try:
        with engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        database = True
    except Exception:
        database = False
    return {"status": "ready" if database else "not_ready", "database": database}, (
        200 if database else 503
    )
