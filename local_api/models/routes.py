"""Model catalog (FT + AQ merged), load and unload."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app

from bridge.downloads.registry import REGISTRY
from bridge.errors import Conflict, Forbidden, ModelNotFound
from bridge.models.store import MANIFEST, QUANTIZATIONS, ModelInfo
from bridge.params import NUM_CTX_MAX
from local_api.accounts import audit
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.events import bus
from local_api.generation.compute import compute
from local_api.models import downloads, job_store
from local_api.validation import json_body, obj

bp = Blueprint("models", __name__, url_prefix="/models")

LOAD = obj(
    {
        "model_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "parameters": obj(
            {
                "device": {"type": "string", "enum": ["auto", "cpu", "cuda"]},
                "quantization": {"type": "string", "enum": list(QUANTIZATIONS)},
                "engine": {"type": "string", "enum": ["auto", "llama.cpp", "transformers"]},
                # llama.cpp slots decoding at once for this model (BRIDGE_NUM_PARALLEL's default)
                "num_parallel": {"type": "integer", "minimum": 1, "maximum": 64},
                # tokens of context per request (Ollama's num_ctx; BRIDGE_CONTEXT_LENGTH's
                # default), capped by the model's training context
                "num_ctx": {"type": "integer", "minimum": 1, "maximum": NUM_CTX_MAX},
            }
        ),
    },
    ("model_id",),
)
UNLOAD = obj({"model_id": {"type": "string", "minLength": 1, "maxLength": 128}}, ("model_id",))


def describe(info: ModelInfo, loaded: set[str], engines: dict[str, str] | None = None,
             ) -> dict[str, Any]:  # fmt: skip
    """One model in both documents' vocabulary: FT's status/size/family, AQ's type/framework;
    ``engine``: the local engine serving it while loaded (llama.cpp, transformers); ``format``
    safetensors or gguf, and a GGUF's ``quantization`` (Q4_K_M, ...)."""
    params = dict(info.parameters)
    status = "loaded" if info.id in loaded else info.status
    return {
        "engine": (engines or {}).get(info.id),
        "id": info.id,
        "name": info.name,
        "size": info.size,
        "family": info.family,
        "type": info.type,
        "status": status,
        "format": info.format,
        "quantization": info.gguf_type or None,
        "parameters": {
            **params,
            "size": info.size,
            "quantization": info.gguf_type or ",".join(info.quantization),
            "framework": info.framework,
        },
        "quantization_options": list(info.quantization),
        "source": info.source,
        "bytes": info.bytes,
        **({"dimensions": info.dimensions, "pooling": info.pooling}
           if info.type == "embedding" else {}),
    }


@bp.get("")
@spec("Models available here and on attached workers")
@login_required
def list_models() -> dict[str, Any]:
    c = compute()
    loaded = set(c.local.loaded_models()) if c.local is not None else set()
    info = getattr(c.local, "runtime_info", None) or {}
    models = [describe(m, loaded, info.get("engines")) for m in c.store.list()]
    known = {m["id"] for m in models}
    for backend in c.router.backends():
        for model_id in backend.get("models") or []:
            if model_id not in known:
                known.add(model_id)
                models.append({"id": model_id, "name": model_id, "size": None, "family": None,
                               "type": "chat", "status": "remote",
                               "parameters": {"framework": backend.get("kind")},
                               "backend": backend.get("name")})
    for model_id, entry in REGISTRY.items():  # known to the registry, not stored yet
        if model_id not in known:
            models.append({"id": model_id, "name": entry.name, "size": entry.size,
                           "family": entry.family, "type": "chat", "status": "downloadable",
                           "parameters": {"size": entry.size, "framework": "transformers"},
                           "source": f"hf:{entry.repo_id}"})
    return {"models": models}


def _removing() -> tuple[threading.Lock, set[str]]:
    """Ids being removed right now (and the lock for them): their loads are refused."""
    pair = current_app.extensions.setdefault("models_removing", (threading.Lock(), set()))
    return pair  # type: ignore[no-any-return]


def _downloaded_this_copy(info: ModelInfo, user_id: int) -> bool:
    """True when ``user_id`` started the newest completed download and it made these files."""
    last = job_store.last_completed(info.id)
    if last is None or last[0] != user_id or info.path is None:
        return False
    try:  # a copy stored after that download (converted, imported) is not theirs
        created = float(json.loads((info.path / MANIFEST).read_text())["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return last[1] >= datetime.fromtimestamp(created, UTC)


@bp.delete("/<model_id>")
@spec("Unload and remove a stored model's files (admin, or the user who downloaded it)")
@login_required
def remove(model_id: str) -> dict[str, Any]:
    downloads.check_model_id(model_id)
    who = current_identity()
    assert who is not None
    c = compute()
    info = c.store.get(model_id)
    if info.path is None:
        raise ModelNotFound(f"Model {model_id!r} has no files here", details={"model_id": model_id})
    if not who.is_admin and not _downloaded_this_copy(info, who.user_id):
        raise Forbidden("Only an admin, or the user who downloaded this copy of a model, may "
                        "remove it")
    lock, removing = _removing()
    with lock:
        if model_id in removing:
            raise Conflict(f"Model {model_id!r} is already being removed")
        removing.add(model_id)
    # Loads check the store's status: "available" (not "ready") makes them refuse until the
    # files are gone, so none can slip in between the unload and the removal.
    c.store.set_status(model_id, "available")
    try:
        if c.local is not None:  # always: it waits for a load in progress, then frees it
            c.local.unload(model_id)  # finishes its streams first, as POST /models/unload does
        c.store.remove(model_id)
    finally:
        c.store.set_status(model_id, None)
        removing.discard(model_id)
    bus().publish("model_status", {"model_id": model_id, "status": "removed", "progress": 0.0})
    audit.record("model_delete", model_id=model_id)
    return {"status": "deleted", "model_id": model_id}


@bp.post("/load")
@spec("Load a model into memory (device, quantization)", body=LOAD)
@login_required
def load() -> dict[str, Any]:
    body = json_body(LOAD)
    params = body.get("parameters") or {}
    c = compute()
    model_id = body["model_id"]
    if model_id in _removing()[1]:
        raise Conflict(f"Model {model_id!r} is being removed", details={"model_id": model_id})
    c.require_model(model_id)
    device = params.get("device", "auto")
    quantization = params.get("quantization", "none")
    engine = params.get("engine")
    bus().publish("model_status", {"model_id": model_id, "status": "loading", "progress": 0.0})
    try:
        extra = {k: v for k, v in (("engine", engine), ("parallel", params.get("num_parallel")),
                                    ("context", params.get("num_ctx"))) if v}
        seconds = c.local.load(model_id, device=device, quantization=quantization, **extra)
    except Exception:
        bus().publish("model_status", {"model_id": model_id, "status": "error", "progress": 0.0})
        raise
    bus().publish("model_status", {"model_id": model_id, "status": "loaded", "progress": 1.0})
    audit.record("model_load", model_id=model_id, device=device, quantization=quantization)
    return {
        "status": "loaded",
        "model_id": model_id,
        "load_time": round(seconds, 3),
        "device": device,
        "quantization": quantization,
        "engine": getattr(c.local, "engine_of", lambda _m: None)(model_id),
        "num_ctx": getattr(c.local, "context_of", lambda _m: None)(model_id),
    }


@bp.post("/unload")
@spec("Free a loaded model's memory", body=UNLOAD)
@login_required
def unload() -> dict[str, Any]:
    body = json_body(UNLOAD)
    c = compute()
    c.require_model(body["model_id"])
    c.local.unload(body["model_id"])
    bus().publish("model_status", {"model_id": body["model_id"], "status": "unloaded",
                                   "progress": 0.0})
    return {"status": "unloaded", "model_id": body["model_id"]}
