"""Model downloads: POST /models/download, GET /models/{id}/status, DELETE /models/{id}/download.

The engine is ``bridge.downloads.manager``; this module keeps its jobs in
``download_jobs`` (and what a restart needs in ``download_plans``), pushes
``model_status`` events, and resumes active jobs when the app starts.
Anyone signed in may download from the registry, a Hugging Face repo or a URL into the
shared store (like ``ollama pull``), within limits that keep one user from harming the
others: registry ids (the default model among them) come only from their
registry source, URLs only from public addresses, a path on this machine and any other
source for those ids are for admins, and a stored model is never replaced by a download.
Cancelling is for the user who started the job, or an admin. URL credentials and signed
queries are stored sealed with the app's SecretBox, never in clear.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint, Flask, current_app
from flask.blueprints import BlueprintSetupState

from bridge.downloads.jobs import (
    ACTIVE,
    Job,
    human_rate,
    new_job_id,
)
from bridge.downloads.manager import Downloader, is_stored
from bridge.downloads.policy import check_public, check_user_request
from bridge.downloads.registry import REGISTRY
from bridge.downloads.sources import DownloadError, source_from_request
from bridge.errors import Conflict, Forbidden, ModelNotFound, NotFound, ValidationError
from bridge.models.store import BUILTIN
from local_api.accounts import audit
from local_api.accounts.identity import Identity, current_identity, login_required
from local_api.docs import spec
from local_api.generation.compute import compute
from local_api.models import download_leases as leases
from local_api.models import job_store
from local_api.storage import crypto, schema
from local_api.storage.db import engine
from local_api.timeutil import duration, iso
from local_api.validation import int_arg, json_body, obj

bp = Blueprint("downloads", __name__, url_prefix="/models")

MODEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_text = {"type": "string", "minLength": 1, "maxLength": 200}
DOWNLOAD = obj(
    {
        "model_id": {"type": "string", "pattern": MODEL_ID_PATTERN},
        "source": {"type": "string", "enum": ["registry", "huggingface", "hf", "url", "path"]},
        "repo_id": _text,
        "revision": {"type": "string", "minLength": 1, "maxLength": 255},
        "include": {"type": "array", "items": _text, "maxItems": 32},
        "file": {"type": "string", "minLength": 1, "maxLength": 255},  # a GGUF repo's file
        "quantization": {"type": "string", "minLength": 1, "maxLength": 32},  # or its tag
        "url": {"type": "string", "minLength": 1, "maxLength": 4096},
        "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "path": {"type": "string", "minLength": 1, "maxLength": 4096},
        "name": _text,
        "family": {"type": "string", "maxLength": 64},
        "size": {"type": "string", "maxLength": 32},
    }
)


def check_model_id(model_id: str) -> str:
    """A model id from a URL: letters, digits, . _ - (no path tricks)."""
    if not re.match(MODEL_ID_PATTERN, model_id):
        raise ValidationError("model id may hold letters, digits, '.', '_' and '-' only",
                              details={"field": "model_id"})
    return model_id


def downloader() -> Downloader:
    return current_app.extensions["downloads"]  # type: ignore[no-any-return]


def latest(model_id: str) -> Job | None:
    """The newest job for ``model_id`` (live numbers when it runs in this process)."""
    live = downloader().running(model_id)
    if live is not None:
        return live
    jobs = schema.download_jobs
    query = job_store.query().where(jobs.c.model_id == model_id).order_by(jobs.c.created_at.desc())
    with engine().connect() as conn:
        row = conn.execute(query.limit(1)).mappings().first()
    return job_store.job_from_row(row, crypto.box()) if row else None


@bp.post("/download")
@spec("Download a model (registry id, Hugging Face repo, http(s) URL or local path)",
      body=DOWNLOAD, status=202)
@login_required
def start() -> tuple[dict[str, Any], int]:
    body = json_body(DOWNLOAD)
    who = current_identity()
    assert who is not None
    return job_store.describe(submit(who, body.get("model_id") or _derived_id(body), body)), 202


def submit(who: Identity, model_id: str, body: dict[str, Any]) -> Job:
    """Start downloading ``model_id`` as ``body`` (DOWNLOAD) says, within the module's rules
    (also Ollama's /pull: ``{"model_id": id, "source": "registry"}``)."""
    if not who.is_admin:
        check_user_request(model_id, body)  # before the source's fields are even read
    source = source_from_request(model_id, body, public_only=not who.is_admin)
    if source.public_only:
        check_public(source)
    if is_stored(compute().store, model_id):
        raise Conflict(f"Model {model_id!r} is already stored; DELETE /models/{model_id} first",
                       details={"model_id": model_id})
    running = latest(model_id)
    if running is not None and running.status in ACTIVE:
        raise Conflict(f"Model {model_id!r} is already downloading",
                       details={"model_id": model_id, "job_id": running.id})
    job = Job(new_job_id(), model_id, source, who.user_id)
    try:
        downloader().submit(job)
    except DownloadError as exc:
        exc.details.update(model_id=model_id, job_id=job.id)
        audit.record("model_download", "failure", model_id=model_id, source=source.kind,
                     location=source.display(), error_type=exc.error_type)
        raise
    audit.record("model_download", model_id=model_id, source=source.kind,
                 location=source.display(), job_id=job.id)
    return job


def _derived_id(body: dict[str, Any]) -> str:
    repo = str(body.get("repo_id") or "")
    derived = re.sub(r"[^a-z0-9._-]", "-", repo.split("/")[-1].lower()).strip(".-_")
    if not derived:
        raise ValidationError("model_id is required", details={"field": "model_id"})
    return check_model_id(derived[:128])


@bp.get("/<model_id>/status")
@spec("Download status of a model: status, progress, eta (ISO 8601), speed")
@login_required
def status(model_id: str) -> dict[str, Any]:
    check_model_id(model_id)
    store = compute().store
    job = latest(model_id)
    if job is not None and not (job.status == "completed" and not store.is_complete(model_id)):
        return job_store.describe(job)
    blank = {"model_id": model_id, "job_id": None, "eta": job_store.ETA_UNKNOWN,
             "eta_seconds": None, "speed": human_rate(None), "speed_bps": None, "source": None}
    if store.is_complete(model_id) or model_id in BUILTIN:  # built-ins ship in a package
        size = store.get(model_id).bytes
        return {**blank, "status": "ready", "progress": 1.0, "eta": duration(0),
                "eta_seconds": 0, "bytes_done": size, "bytes_total": size}
    if model_id in REGISTRY:
        return {**blank, "status": "downloadable", "progress": 0.0, "bytes_done": 0,
                "bytes_total": None}
    raise ModelNotFound(details={"model_id": model_id})


@bp.delete("/<model_id>/download")
@spec("Cancel a model's download (its partial files are deleted)")
@login_required
def cancel(model_id: str) -> dict[str, Any]:
    check_model_id(model_id)
    who = current_identity()
    assert who is not None
    job = latest(model_id)
    if job is None or job.status not in ACTIVE:
        raise NotFound(f"No download of {model_id!r} is in progress",
                       details={"model_id": model_id})
    if not who.is_admin and job.user_id != who.user_id:
        raise Forbidden("Only the user who started a download, or an admin, may cancel it")
    if not downloader().cancel(job.id):  # left active by a crash or another instance
        downloader().discard(job.id)
        job.status, job.speed_bps = "cancelled", None
        downloader().save(job)
    audit.record("model_download_cancel", model_id=model_id, job_id=job.id)
    return job_store.describe(latest(model_id) or job)


@bp.get("/downloads")
@spec("Recent download jobs (yours; an admin sees everyone's)", query=("limit",))
@login_required
def list_jobs() -> dict[str, Any]:
    who = current_identity()
    assert who is not None
    jobs = schema.download_jobs
    query = job_store.query().order_by(jobs.c.created_at.desc()).limit(int_arg("limit", 50, 1, 500))
    if not who.is_admin:
        query = query.where(jobs.c.user_id == who.user_id)
    with engine().connect() as conn:
        rows = conn.execute(query).mappings().all()
    box = crypto.box()
    return {"downloads": [{**job_store.describe(job_store.job_from_row(r, box)),
                           "created_at": iso(r["created_at"]),
                           "updated_at": iso(r["updated_at"])} for r in rows]}


def _init(state: BlueprintSetupState) -> None:
    """Build the app's Downloader and resume the jobs a previous run left active."""
    app = state.app
    assert isinstance(app, Flask)  # Flask types the setup state's app as its sans-IO base
    settings, db = app.config["SETTINGS"], app.extensions["db"]
    c = app.extensions["compute"]
    box = app.extensions["secret_box"]  # captured: jobs save from their own threads
    owner = leases.owner_id(settings)
    save = functools.partial(job_store.save, db, app.extensions["events"], box, owner)
    loader = Downloader(c.store, save, hf_endpoint=settings.hf_endpoint or None,
                        timeout=settings.download_timeout, retries=settings.download_retries,
                        stop=c.stop)
    app.extensions["downloads"] = loader
    def active() -> list[Job]:
        with db.connect() as conn:
            rows = conn.execute(job_store.query().where(schema.download_jobs.c.status.in_(ACTIVE)))
            return [job_store.job_from_row(r, box) for r in rows.mappings().all()]

    jobs = active()
    loader.clean_orphans({j.id for j in jobs})
    for job in jobs:  # ours from a previous run, or lapsed: another instance's stay its own
        if leases.claim(db, job.id, owner):
            loader.resume(job)
    keeper = leases.LeaseKeeper(db, owner, loader.running_ids, active, loader.resume)
    app.extensions["download_leases"] = keeper
    keeper.start()


bp.record_once(_init)


def close(app: Flask, timeout: float = 10.0) -> None:
    """Stop the app's downloads as a shutdown does (their partial files stay for resume)."""
    keeper = app.extensions.get("download_leases")
    if keeper is not None:
        keeper.close()
    loader = app.extensions.get("downloads")
    if loader is not None:
        loader.close(timeout)
