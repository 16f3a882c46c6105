"""Liveness (/healthz: the process answers) and readiness (/readyz: it can serve a request)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text

from local_api.docs import spec
from local_api.storage.db import engine

bp = Blueprint("health", __name__)
log = logging.getLogger("compute_bridge.health")


@bp.get("/healthz")
@spec("Liveness: the process answers", auth="none")
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


def _database() -> bool:
    try:
        with engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # any failure means "not ready", never a 500
        log.warning("readiness: database does not answer: %s", exc)
        return False


def _backends() -> list[dict[str, Any]]:
    compute = current_app.extensions.get("compute")
    if compute is None:
        return []
    try:
        entries = compute.router.backends()
    except Exception as exc:
        log.warning("readiness: cannot list backends: %s", exc)
        return []
    return [
        {"name": b["name"], "kind": b.get("kind"), "healthy": bool(b.get("healthy"))}
        for b in entries
    ]


@bp.get("/readyz")
@spec("Readiness: the database answers and a backend can generate", auth="none")
def readyz() -> tuple[dict[str, Any], int]:
    database = _database()
    backends = _backends()
    can_generate = any(b["healthy"] for b in backends)
    ready = database and can_generate
    body = {
        "status": "ready" if ready else "not_ready",
        "database": database,
        "can_generate": can_generate,
        "backends": backends,
    }
    return body, 200 if ready else 503
