"""Download jobs as rows: saved with their lease and sealed plan (pushing ``model_status``),
read back, and described in FT's shape (status, progress, eta, speed)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from bridge.downloads.jobs import (
    Job,
    human_rate,
    plan_from_stored,
    source_from_stored,
    stored_plan,
    stored_request,
)
from local_api.events import EventBus
from local_api.models import download_leases as leases
from local_api.storage import schema
from local_api.storage.crypto import SecretBox
from local_api.storage.db import engine
from local_api.timeutil import duration, utcnow

# FT shows eta and speed as strings ("PT10M", "50MB/s"), never null; ISO 8601 has no
# duration for "not known yet", so eta says so in words and eta_seconds is null.
ETA_UNKNOWN = "unknown"


def describe(job: Job) -> dict[str, Any]:
    """FT's status/progress/eta/speed, plus bytes, the source and any error."""
    eta = job.eta_seconds
    plan_revision = job.plan.revision if job.plan else None
    answer: dict[str, Any] = {
        "model_id": job.model_id,
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "eta": duration(math.ceil(eta)) if eta is not None else ETA_UNKNOWN,
        "eta_seconds": math.ceil(eta) if eta is not None else None,
        "speed": human_rate(job.speed_bps),
        "speed_bps": job.speed_bps,
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "source": {"kind": job.source.kind, "location": job.source.display(),
                   "revision": plan_revision or job.source.revision},
    }
    if job.status == "failed":
        answer["error"] = {"code": "DOWNLOAD_FAILED", "error_type": job.error_type,
                           "message": job.error_message}
    return answer


def save(db: Engine, events: EventBus, box: SecretBox, owner: str, job: Job) -> None:
    """Upsert the job's row, lease and plan (URL secrets sealed), then push model_status."""
    now, jobs, plans = utcnow(), schema.download_jobs, schema.download_plans
    values = {**leases.lease_values(owner, job.status),
        "model_id": job.model_id, "source": job.source.kind, "location": job.source.display(),
        "user_id": job.user_id, "status": job.status, "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total, "speed_bps": job.speed_bps, "sha256": job.source.sha256,
        "error_type": job.error_type, "error_message": job.error_message, "updated_at": now,
    }
    plan = {"request": stored_request(job.source, box.encrypt),
            "plan": stored_plan(job.plan, box.encrypt) if job.plan else None}
    with db.begin() as conn:
        if conn.execute(update(jobs).where(jobs.c.id == job.id).values(**values)).rowcount:
            conn.execute(update(plans).where(plans.c.job_id == job.id).values(**plan))
        else:
            conn.execute(insert(jobs).values(id=job.id, created_at=now, **values))
            conn.execute(insert(plans).values(job_id=job.id, **plan))
    events.publish("model_status", {
        "model_id": job.model_id, "status": job.status, "progress": job.progress,
        "job_id": job.id, "bytes_done": job.bytes_done, "bytes_total": job.bytes_total,
        "speed": human_rate(job.speed_bps), "error_type": job.error_type,
    })


def job_from_row(row: Any, box: SecretBox) -> Job:
    plan = row["plan"]
    return Job(row["id"], row["model_id"], source_from_stored(row["request"], box.decrypt),
               row["user_id"], row["status"], row["bytes_done"], row["bytes_total"],
               row["speed_bps"], row["error_type"], row["error_message"],
               plan_from_stored(plan, box.decrypt) if plan else None)


def query() -> Any:
    jobs, plans = schema.download_jobs, schema.download_plans
    return select(jobs, plans.c.request, plans.c.plan).join(plans, plans.c.job_id == jobs.c.id)


def last_completed(model_id: str) -> tuple[int | None, datetime] | None:
    """Who started the newest completed download of ``model_id``, and when it finished."""
    jobs = schema.download_jobs
    query = (select(jobs.c.user_id, jobs.c.updated_at)
             .where(jobs.c.model_id == model_id, jobs.c.status == "completed")
             .order_by(jobs.c.created_at.desc()).limit(1))
    with engine().connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    finished = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    return row.user_id, finished
