"""Ollama's model endpoints over the service's catalog: /tags, /show, /ps, /pull.

``/pull`` starts (or follows) a download job of local_api/models/downloads.py from the
built-in registry, as ``ollama pull`` fetches from Ollama's registry, or of one quantization
of a GGUF repo for an ``hf.co/owner/repo:quant`` name (hf.py), and streams its progress as
Ollama's lines until ``{"status": "success"}`` (the shapes of the client's
``ollama._types.ProgressResponse``: ``status``, ``digest``, ``total``, ``completed``; the
statuses of Ollama's server, server/images.go PullModel: "pulling manifest", "pulling ...",
"verifying sha256 digest", "writing manifest", "success"); ``"stream": false`` waits and
answers that last object. A client that leaves stops following, not the download.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, stream_with_context

from bridge import errors
from bridge.downloads import ggufs
from bridge.downloads.jobs import ACTIVE, Job
from bridge.downloads.manager import is_stored
from bridge.downloads.sources import NOT_FOUND, DownloadError
from bridge.models.store import ModelInfo
from bridge.structured import CONSTRAINING_ENGINES
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.generation.compute import compute
from local_api.models import downloads
from local_api.ollama import errors as ollama_errors
from local_api.ollama import hf, shapes
from local_api.validation import json_body

bp = Blueprint("ollama_models", __name__, url_prefix="/api")
POLL = 0.1  # seconds between two looks at a followed download
FOREVER = 292 * 365 * 86400  # Ollama's "forever" is Go's largest Duration, ~292 years


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
    return _json(shapes.show(info, capabilities(info)))


def require_tools(model: str, name: str) -> None:
    """Ollama's 400 ``<name> does not support tools`` for a model whose /show lists no
    ``tools`` (server/routes.go ChatHandler)."""
    c = compute()
    c.require_model(model)
    info = c.store.get(model) if c.store.has(model) else _bare(model)
    if "tools" not in capabilities(info):
        raise errors.ValidationError(f"{name} does not support tools",
                                     details={"field": "tools"})  # fmt: skip


def capabilities(info: ModelInfo) -> list[str]:
    """Ollama's /show ``capabilities``: ``["embedding"]`` for an embedding model; a chat model's
    ``["completion"]``, plus ``"tools"`` when the engine that serves it here constrains decoding
    (tools are done on a JSON-schema constraint). Its engine: the one it is loaded on, else
    llama.cpp for a GGUF (unless the service runs transformers only), else transformers. A
    model only a worker serves: ``["completion"]`` (its engine is the worker's)."""
    if info.type == "embedding":
        return ["embedding"]
    local = compute().local
    engine = local.engine_of(info.id) if hasattr(local, "engine_of") else None
    if engine is None:
        gguf = info.format == "gguf" and not getattr(local, "llama_cpp_missing", None)
        forced = getattr(local, "engine", "auto") == "transformers"
        engine = "llama.cpp" if gguf and not forced else "transformers"
    return ["completion", "tools"] if engine in CONSTRAINING_ENGINES else ["completion"]


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
        expires = (info.last_used or time.time()) + keep
        if hasattr(c.local, "expires_at"):  # a request's keep_alive; None: kept until unloaded
            expires = c.local.expires_at(model) or time.time() + FOREVER
        context = getattr(c.local, "context_of", lambda _m: None)(model)
        out.append({**shapes.running(info, expires), "context_length": context})
    return _json({"models": out})


@bp.post("/pull")
@spec("Ollama: download a registry model or hf.co/owner/repo:quant (NDJSON progress "
      "unless stream is false)",
      body=shapes.PULL)
@login_required
def pull() -> Response:
    body = json_body(shapes.PULL)
    name = shapes.name_of(body)
    if hf.is_hf(name):  # a GGUF repo's quantization, as Ollama pulls hf.co names
        wanted = hf.parse(name)
        model, label = wanted.model_id, wanted.name
        try:
            job = _start(model, _hf_request(wanted))
        except errors.ValidationError as exc:
            raise _no_such_quant(wanted, exc) from exc
    else:  # a registry id (refusals: unknown id, forbidden) before any byte
        model = label = downloads.check_model_id(shapes.model_id(name))
        job = _start(model, {"model_id": model, "source": "registry"})
    if body.get("stream") is False:
        *_, last = _progress(label, model, job)  # waits for the end (errors: real status)
        return _json(last)

    def lines() -> Iterator[str]:
        try:
            for line in _progress(label, model, job):
                yield json.dumps(line) + "\n"
        except errors.BridgeError as exc:
            yield json.dumps(ollama_errors.error_body(exc)) + "\n"

    response = Response(stream_with_context(lines()), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-cache"
    return response


def _no_such_quant(wanted: hf.HfName, exc: errors.ValidationError) -> errors.ValidationError:
    """The choice of quantization refused, in Ollama's words (the repo's quantizations)."""
    found = exc.details.get("quantizations")
    if found is None:
        return exc
    which = f"no {wanted.quant} quantization" if wanted.quant else (
        f"no {ggufs.DEFAULT_QUANT} (the default) and {len(found)} quantizations")
    return errors.ValidationError(
        f"pull {wanted.name}: {wanted.repo_id} has {which}; available: {', '.join(found)} "
        f"(pull {wanted.host}/{wanted.repo_id}:{found[0] if found else 'Q4_K_M'})",
        details={"field": "model", "quantizations": found})


def _hf_request(wanted: hf.HfName) -> dict[str, Any]:
    """The download (local_api/models/downloads.py's DOWNLOAD) an hf.co name asks for."""
    request_ = {"model_id": wanted.model_id, "source": "huggingface", "repo_id": wanted.repo_id}
    return {**request_, "quantization": wanted.quant} if wanted.quant else request_


def _start(model: str, request_: dict[str, Any]) -> Job | None:
    """The job to follow: a running one, a new download, or None when stored."""
    if is_stored(compute().store, model):
        return None
    running = downloads.latest(model)
    if running is not None and running.status in ACTIVE:
        return running
    who = current_identity()
    assert who is not None
    try:
        return downloads.submit(who, model, request_)
    except DownloadError as exc:
        if exc.error_type == NOT_FOUND:  # the repo (or revision) is not on the Hub: 404
            raise errors.ModelNotFound(f"pull model manifest: {exc.message}") from exc
        raise


def _progress(label: str, model: str, job: Job | None) -> Iterator[dict[str, Any]]:
    """Ollama's progress objects for ``job`` until it ends (DownloadFailed if it fails);
    after a download, Ollama's closing steps (server/images.go PullModel)."""
    yield {"status": "pulling manifest"}
    stop, seen = compute().stop, None
    while job is not None and job.status != "completed":
        if job.status not in ACTIVE:
            reason = job.error_message or f"download {job.status}"
            raise errors.DownloadFailed(f"pull {label}: {reason}")
        now = (job.status, job.bytes_done, job.bytes_total)
        if now != seen and job.status == "downloading":
            seen = now
            step = {"status": f"pulling {label}", "digest": _digest(job),
                    "completed": job.bytes_done}
            yield step if job.bytes_total is None else {**step, "total": job.bytes_total}
        if stop.wait(POLL):
            raise errors.BackendUnavailable("the service is shutting down")
        job = downloads.latest(model) or job
    if job is not None:
        yield {"status": "verifying sha256 digest"}  # the download checked every file's
        yield {"status": "writing manifest"}
    yield {"status": "success"}


def _digest(job: Job) -> str:
    """Ollama's ``digest`` (``sha256:<hex>`` of the blob): the file's, when the job fetches one
    file whose sha256 the source vouches for (a Hub LFS file), else the job's id."""
    files = job.plan.files if job.plan is not None else []
    return f"sha256:{files[0].sha256}" if len(files) == 1 and files[0].sha256 else job.id
