"""Ollama's model endpoints over the service's catalog: /tags, /show, /ps, /pull, /embed.

``/pull`` starts (or follows) a download job of local_api/models/downloads.py from the
built-in registry, as ``ollama pull`` fetches from Ollama's registry, and streams its
progress as Ollama's lines (``status``, ``digest``, ``total``, ``completed``) until
``{"status": "success"}``; ``"stream": false`` waits and answers that one object. A client
that leaves stops following, not the download. No backend here computes embeddings, so
``/embed`` answers what Ollama answers for a model without the capability (400).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, stream_with_context

from bridge import errors
from bridge.downloads.jobs import ACTIVE, Job
from bridge.downloads.manager import is_stored
from bridge.models.store import ModelInfo
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.generation.compute import compute
from local_api.models import downloads
from local_api.ollama import errors as ollama_errors
from local_api.ollama import shapes
from local_api.validation import json_body

bp = Blueprint("ollama_models", __name__, url_prefix="/api")
POLL = 0.1  # seconds between two looks at a followed download


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


@bp.get("/tags")
@spec("Ollama: models stored here and served by attached workers")
@login_required
def tags() -> Response:
    c = compute()
    models = [shapes.tag(info) for info in c.store.list()]
    known = {m["model"] for m in models}
    for backend in c.router.backends():
        for model in backend.get("models") or []:
            if model not in known:
                known.add(model)
                models.append(shapes.remote_tag(model, backend.get("name")))
    return _json({"models": models})


@bp.post("/show")
@spec("Ollama: one model's details and default parameters", body=shapes.NAMED)
@login_required
def show() -> Response:
    name = shapes.name_of(json_body(shapes.NAMED))
    model = shapes.model_id(name)
    c = compute()
    info = c.store.get(model) if c.store.has(model) else None
    if info is None:
        c.require_model(model)  # served by an attached worker only: what is known of it
        info = _bare(model)
    return _json(shapes.show(info))


def _bare(model: str) -> ModelInfo:
    return ModelInfo(id=model, name=model, family="", size="", parameters={})


@bp.get("/ps")
@spec("Ollama: models loaded in memory here, and when keep_alive unloads them")
@login_required
def ps() -> Response:
    c = compute()
    keep = current_app.config["SETTINGS"].keep_alive
    loaded = c.local.loaded_models() if c.local is not None else []
    out = []
    for model in loaded:
        info = c.store.get(model) if c.store.has(model) else _bare(model)
        out.append(shapes.running(info, (info.last_used or time.time()) + keep))
    return _json({"models": out})


@bp.post("/pull")
@spec("Ollama: download a registry model (NDJSON progress unless stream is false)",
      body=shapes.PULL)
@login_required
def pull() -> Response:
    body = json_body(shapes.PULL)
    model = downloads.check_model_id(shapes.model_id(shapes.name_of(body)))
    job = _start(model)  # refusals (unknown id, forbidden) before any byte
    if body.get("stream") is False:
        *_, last = _progress(model, job)  # waits for the end (errors: their real status)
        return _json(last)

    def lines() -> Iterator[str]:
        try:
            for line in _progress(model, job):
                yield json.dumps(line) + "\n"
        except errors.BridgeError as exc:
            yield json.dumps(ollama_errors.error_body(exc)) + "\n"

    response = Response(stream_with_context(lines()), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _start(model: str) -> Job | None:
    """The job to follow: a running one, a new registry download, or None when stored."""
    if is_stored(compute().store, model):
        return None
    running = downloads.latest(model)
    if running is not None and running.status in ACTIVE:
        return running
    who = current_identity()
    assert who is not None
    return downloads.submit(who, model, {"model_id": model, "source": "registry"})


def _progress(model: str, job: Job | None) -> Iterator[dict[str, Any]]:
    """Ollama's progress objects for ``job`` until it ends (DownloadFailed if it fails)."""
    yield {"status": "pulling manifest"}
    stop, seen = compute().stop, None
    while job is not None and job.status != "completed":
        if job.status not in ACTIVE:
            reason = job.error_message or f"download {job.status}"
            raise errors.DownloadFailed(f"pull {model}: {reason}")
        now = (job.status, job.bytes_done, job.bytes_total)
        if now != seen and job.status == "downloading":
            seen = now
            step = {"status": f"pulling {model}", "digest": job.id, "completed": job.bytes_done}
            yield step if job.bytes_total is None else {**step, "total": job.bytes_total}
        if stop.wait(POLL):
            raise errors.BackendUnavailable("the service is shutting down")
        job = downloads.latest(model) or job
    yield {"status": "success"}


@bp.post("/embed")
@spec("Ollama: embeddings (no backend here computes them: 400, as Ollama answers)",
      body=shapes.EMBED)
@login_required
def embed() -> Response:
    return _no_embeddings()


@bp.post("/embeddings")
@spec("Ollama: embeddings, the older endpoint (400, as /embed)", body=shapes.EMBED)
@login_required
def embeddings() -> Response:
    return _no_embeddings()


def _no_embeddings() -> Response:
    body = json_body(shapes.EMBED)
    compute().require_model(shapes.model_id(body["model"]))  # unknown: 404 first
    raise errors.ValidationError(f'"{body["model"]}" does not support embeddings',
                                 details={"field": "model"})
