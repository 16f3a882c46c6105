"""POST /api/v1/embeddings, the native API's embeddings (the SDKs' ``embeddings.create``).

Body: ``{input: str | [str], model?: str (default all-minilm-l6-v2), dimensions?: int,
truncate?: bool (default true)}``. Answer: ``{embeddings: [[float]], model, dimensions,
usage: {prompt_tokens, total_tokens}, backend, engine, metrics: {response_time}}``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from bridge.embeddings import MAX_INPUTS, EmbedRequest
from local_api.accounts.identity import login_required
from local_api.docs import spec
from local_api.generation import embeddings, pipeline
from local_api.timeutil import duration
from local_api.validation import json_body, obj

bp = Blueprint("embeddings", __name__)
BODY = obj({
    "input": {"anyOf": [{"type": "string"},
                        {"type": "array", "items": {"type": "string"}, "maxItems": MAX_INPUTS}]},
    "model": pipeline.MODEL_ID,
    "dimensions": {"type": "integer", "minimum": 1},
    "truncate": {"type": "boolean"},
}, ("input",))  # fmt: skip


@bp.post("/embeddings")
@spec("Embeddings of a text or a list of texts (an embedding model; default all-minilm-l6-v2)",
      body=BODY)
@login_required
def create() -> ResponseReturnValue:
    body = json_body(BODY)
    request_ = EmbedRequest(body.get("model") or embeddings.DEFAULT_MODEL,
                            embeddings.inputs_of(body["input"], "input"),
                            body.get("dimensions"), body.get("truncate", True))  # fmt: skip
    answer = embeddings.embed(request_)
    elapsed = answer.pop("elapsed")
    return jsonify({**answer, "metrics": {"response_time": duration(round(elapsed, 3))}})
