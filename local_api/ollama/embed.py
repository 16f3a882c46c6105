"""Ollama's embedding endpoints: ``/api/embed`` and the older ``/api/embeddings``.

Shapes from Ollama's docs/api.md and its client (``ollama._types.EmbedResponse``,
``EmbeddingsResponse``): ``/api/embed`` takes ``input`` (a string or a list), ``truncate``
(default true) and ``dimensions``, and answers ``{model, embeddings, total_duration,
load_duration, prompt_eval_count}``; ``/api/embeddings`` takes ``prompt`` and answers
``{embedding}``. An empty input answers no vectors, as Ollama's server does (it loads the
model). A model that only generates gets Ollama's own words, ``this model does not support
embeddings`` (its runner's answer, runner/ollamarunner ``embeddings``), with a 400: Ollama
sends 501, but the request, not the server, is at fault, and the other surfaces say 400.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from bridge import errors
from bridge.embeddings import EmbedRequest
from local_api.accounts.identity import login_required
from local_api.docs import spec
from local_api.generation import embeddings
from local_api.ollama import keep_alive, shapes
from local_api.validation import json_body

bp = Blueprint("ollama_embed", __name__, url_prefix="/api")


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


def _refusal(exc: errors.ModelTypeMismatch) -> errors.ModelTypeMismatch:
    """A model that only generates (here or on a worker): Ollama's words (above)."""
    refused = errors.ModelTypeMismatch("this model does not support embeddings",
                                       details={"field": "model"})  # fmt: skip
    refused.__cause__ = exc
    return refused


def _run(body: dict[str, Any], texts: tuple[str, ...]) -> dict[str, Any]:
    model = shapes.model_id(body["model"])
    keep_alive.seconds(body.get("keep_alive"))
    try:
        answer = embeddings.embed(
            EmbedRequest(model, texts, body.get("dimensions"), body.get("truncate", True)),
            names={"dimensions": "dimensions"})  # fmt: skip
    except errors.ModelTypeMismatch as exc:
        raise _refusal(exc) from exc
    keep_alive.apply(model, body.get("keep_alive"))
    return answer


@bp.post("/embed")
@spec("Ollama: embeddings of a string or a list (input, truncate, dimensions)",
      body=shapes.EMBED)
@login_required
def embed() -> Response:
    body = json_body(shapes.EMBED)
    given = body.get("input", "")
    if given == "" or given == []:
        try:
            embeddings.require_kind(shapes.model_id(body["model"]), "embedding")
        except errors.ModelTypeMismatch as exc:
            raise _refusal(exc) from exc
        return _json({"model": body["model"], "embeddings": []})
    answer = _run(body, embeddings.inputs_of(given, "input"))
    nanos = int(answer["elapsed"] * 1e9)
    return _json({"model": body["model"], "embeddings": answer["embeddings"],
                  "total_duration": nanos, "load_duration": 0,
                  "prompt_eval_count": answer["usage"]["prompt_tokens"]})  # fmt: skip


@bp.post("/embeddings")
@spec("Ollama: the older embeddings endpoint (prompt: one string; answers embedding)",
      body=shapes.EMBED)
@login_required
def embeddings_() -> Response:
    body = json_body(shapes.EMBED)
    if not body.get("prompt"):
        return _json({"embedding": []})
    answer = _run(body, (str(body["prompt"]),))
    return _json({"embedding": answer["embeddings"][0]})
