"""Model catalog (FT + AQ merged), load and unload."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from bridge.model_store import QUANTIZATIONS, ModelInfo
from local_api import audit
from local_api.compute import compute
from local_api.docs import spec
from local_api.events import bus
from local_api.identity import login_required
from local_api.validation import json_body, obj

bp = Blueprint("models", __name__, url_prefix="/models")

LOAD = obj(
    {
        "model_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "parameters": obj(
            {
                "device": {"type": "string", "enum": ["auto", "cpu", "cuda"]},
                "quantization": {"type": "string", "enum": list(QUANTIZATIONS)},
            }
        ),
    },
    ("model_id",),
)
UNLOAD = obj({"model_id": {"type": "string", "minLength": 1, "maxLength": 128}}, ("model_id",))


def describe(info: ModelInfo, loaded: set[str]) -> dict[str, Any]:
    """One model in both documents' vocabulary: FT's status/size/family, AQ's type/framework."""
    params = dict(info.parameters)
    status = "loaded" if info.id in loaded else info.status
    return {
        "id": info.id,
        "name": info.name,
        "size": info.size,
        "family": info.family,
        "type": info.type,
        "status": status,
        "parameters": {
            **params,
            "size": info.size,
            "quantization": ",".join(info.quantization),
            "framework": info.framework,
        },
        "quantization_options": list(info.quantization),
        "source": info.source,
        "bytes": info.bytes,
    }


@bp.get("")
@spec("Models available here and on attached workers")
@login_required
def list_models() -> dict[str, Any]:
    c = compute()
    loaded = set(c.local.loaded_models()) if c.local is not None else set()
    models = [describe(m, loaded) for m in c.store.list()]
    known = {m["id"] for m in models}
    for backend in c.router.backends():
        for model_id in backend.get("models") or []:
            if model_id not in known:
                known.add(model_id)
                models.append({"id": model_id, "name": model_id, "size": None, "family": None,
                               "type": "chat", "status": "remote",
                               "parameters": {"framework": backend.get("kind")},
                               "backend": backend.get("name")})
    return {"models": models}


@bp.post("/load")
@spec("Load a model into memory (device, quantization)", body=LOAD)
@login_required
def load() -> dict[str, Any]:
    body = json_body(LOAD)
    params = body.get("parameters") or {}
    c = compute()
    model_id = body["model_id"]
    c.require_model(model_id)
    device = params.get("device", "auto")
    quantization = params.get("quantization", "none")
    bus().publish("model_status", {"model_id": model_id, "status": "loading", "progress": 0.0})
    try:
        seconds = c.local.load(model_id, device=device, quantization=quantization)
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
