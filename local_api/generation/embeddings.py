"""The one embedding pipeline every surface goes through (OpenAI /v1/embeddings, Ollama's
/api/embed and /api/embeddings, the native /api/v1/embeddings).

A surface decodes its dialect into an ``EmbedRequest`` and calls ``embed``; in between, once:
validate -> resolve the model (and its kind) -> route (router.embed) -> metrics. Rate limits
apply to every route of the app (local_api.limits), these included.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.config import EMBEDDING_MODEL_ID
from bridge.embeddings import MAX_INPUTS, EmbedRequest
from bridge.errors import ModelTypeMismatch, ValidationError
from local_api.generation.compute import compute
from local_api.system.metrics import observe_embeddings

DEFAULT_MODEL = EMBEDDING_MODEL_ID


def require_kind(model: str, kind: str) -> None:
    """ModelTypeMismatch (400) when the catalog says ``model`` is not of ``kind`` ("chat":
    generates text, "embedding": embeds). Models only a worker knows are not checked here."""
    store = compute().store
    if not store.has(model):
        return
    found = store.get(model).type
    if kind == "embedding" and found != "embedding":
        raise ModelTypeMismatch(
            f"Model {model!r} generates text and does not embed; use an embedding model "
            f"such as {EMBEDDING_MODEL_ID!r}", details={"model": model, "type": found})
    if kind == "chat" and found == "embedding":
        raise ModelTypeMismatch(
            f"Model {model!r} is an embedding model: it answers embeddings (/v1/embeddings, "
            "/ollama/api/embed, /api/v1/embeddings), not chat or completions",
            details={"model": model, "type": found})


def inputs_of(value: Any, field: str) -> tuple[str, ...]:
    """A string or a list of strings (1 to MAX_INPUTS, each non-empty) as a tuple."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValidationError(f"{field} must be a string or a list of strings",
                              details={"field": field})  # fmt: skip
    if not 1 <= len(items) <= MAX_INPUTS:
        raise ValidationError(f"{field} must hold 1 to {MAX_INPUTS} texts",
                              details={"field": field, "max": MAX_INPUTS})  # fmt: skip
    for index, item in enumerate(items):
        if not item:
            raise ValidationError(f"{field}[{index}] is empty; send text to embed",
                                  details={"field": f"{field}.{index}"})  # fmt: skip
    return tuple(items)


def embed(request: EmbedRequest, *, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Route one embedding request; the answer every surface encodes:
    ``{embeddings: [[float]], model, usage: {prompt_tokens, total_tokens}, backend, engine,
    dimensions, elapsed}``. Raises ValidationError, ModelNotFound, ModelTypeMismatch,
    ContextLengthExceeded, BackendUnavailable."""
    names = names or {}
    compute().require_model(request.model)
    require_kind(request.model, "embedding")
    store = compute().store
    native = store.get(request.model).dimensions if store.has(request.model) else 0
    if request.dimensions is not None:
        field = names.get("dimensions", "dimensions")
        if request.dimensions < 1:
            raise ValidationError(f"{field} must be at least 1", details={"field": field})
        if native and request.dimensions != native:
            raise ValidationError(
                f"Model {request.model!r} gives {native}-dimensional embeddings and cannot "
                f"shorten them (it was not trained to); omit {field} or send {native}",
                details={"field": field, "dimensions": native})  # fmt: skip
    started = time.perf_counter()
    result = compute().router.embed(request)
    observe_embeddings(result.backend, result.prompt_tokens)
    return {"embeddings": result.vectors, "model": request.model,
            "usage": {"prompt_tokens": result.prompt_tokens,
                      "total_tokens": result.prompt_tokens},
            "backend": result.backend, "engine": result.engine,
            "dimensions": len(result.vectors[0]) if result.vectors else native,
            "elapsed": time.perf_counter() - started}  # fmt: skip
