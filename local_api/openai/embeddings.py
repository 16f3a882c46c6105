"""OpenAI's ``POST /v1/embeddings`` over the one embedding pipeline.

Shapes from OpenAI's API reference and its Python client (``openai.types.
CreateEmbeddingResponse``): ``input`` a string or a list of strings, ``model``,
``dimensions``, ``encoding_format`` ``float`` (default) or ``base64`` (the little-endian
float32 bytes of each vector, base64-encoded: the client decodes them with
``np.frombuffer(base64.b64decode(...), dtype="float32")`` and asks for base64 by default),
``user``. The answer: ``{object: "list", data: [{object: "embedding", index, embedding}],
model, usage: {prompt_tokens, total_tokens}}``. Token-id inputs (lists of integers) are
refused with a 400: token ids are the model's own, and an OpenAI client's are tiktoken's.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from flask import Blueprint, Response

from bridge import errors
from bridge.embeddings import EmbedRequest
from local_api.accounts.identity import login_required
from local_api.docs import spec
from local_api.generation import embeddings
from local_api.openai import shapes
from local_api.validation import json_body, obj

bp = Blueprint("openai_embeddings", __name__)

BODY = obj({
    "input": {"type": ["string", "array"]},
    "model": {"type": "string", "minLength": 1, "maxLength": 128},
    "dimensions": {"type": "integer"},
    "encoding_format": {"enum": ["float", "base64"]},
    "user": {"type": "string"},
}, ("input", "model"))  # fmt: skip


def encode_base64(vector: list[float]) -> str:
    """A vector as OpenAI's base64: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _texts(given: Any) -> tuple[str, ...]:
    if isinstance(given, list) and given and all(
            isinstance(i, int) or isinstance(i, list) for i in given):
        raise errors.ValidationError(
            "input holds token ids; this server embeds text only (send strings; LangChain's "
            "OpenAIEmbeddings needs check_embedding_ctx_length=False)",
            details={"field": "input"})  # fmt: skip
    return embeddings.inputs_of(given, "input")


@bp.post("/embeddings")
@spec("OpenAI: embeddings of a string or a list (dimensions, encoding_format float|base64)",
      body=BODY)
@login_required
def create() -> Response:
    body = json_body()
    shapes.validate(body, BODY)
    texts = _texts(body["input"])
    request_ = EmbedRequest(body["model"], texts, body.get("dimensions"))
    answer = embeddings.embed(request_)
    as_text = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i,
             "embedding": encode_base64(v) if as_text else v}
            for i, v in enumerate(answer["embeddings"])]  # fmt: skip
    response = Response(json.dumps({"object": "list", "data": data, "model": answer["model"],
                                    "usage": answer["usage"]}), mimetype="application/json")
    response.headers["X-Bridge-Backend"] = answer["backend"]
    return response
