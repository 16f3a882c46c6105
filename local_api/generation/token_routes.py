"""POST /api/v1/tokenize and /api/v1/detokenize: a model's token ids for a text (or chat
messages rendered with its template), so a notebook can check a prompt against the context
before sending it.

Tokenize body: ``{model?: str (default: the default model), text?: str, messages?:
[{role, content}]}`` (text or messages). Answer: ``{model, tokens: [int], count, context}``
(``context``: the model's context window in tokens, what prompt plus ``max_tokens`` must fit).
Detokenize body: ``{model?, tokens: [int]}``; answer: ``{model, text}``. The model loads on
first use (on this machine: token ids are the local engine's).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from bridge import params
from bridge.errors import BridgeError, NotSupported, ValidationError
from local_api.accounts.identity import login_required
from local_api.docs import spec
from local_api.generation import pipeline
from local_api.generation.compute import compute
from local_api.validation import json_body, obj

bp = Blueprint("tokens", __name__)
_message = obj({"role": {"type": "string", "minLength": 1, "maxLength": 32},
                "content": {"type": "string", "maxLength": params.TEXT_MAX}},
               ("role", "content"))  # fmt: skip
TOKENIZE = obj({"model": pipeline.MODEL_ID,
                "text": {"type": "string", "maxLength": params.TEXT_MAX},
                "messages": {"type": "array", "items": _message, "minItems": 1,
                             "maxItems": 1000}})  # fmt: skip
DETOKENIZE = obj({"model": pipeline.MODEL_ID,
                  "tokens": {"type": "array", "maxItems": 100_000,
                             "items": {"type": "integer", "minimum": 0,
                                       "maximum": 2**31 - 1}}},
                 ("tokens",))  # fmt: skip


def _local(body: dict[str, Any]) -> tuple[Any, str]:
    model = body.get("model") or current_app.config["SETTINGS"].default_model
    c = compute()
    c.require_model(model)
    if c.local is None or not hasattr(c.local, "tokenize") or not c.store.has(model):
        raise NotSupported(f"Model {model!r} is not stored here: its tokens are a worker's",
                           details={"model": model})  # fmt: skip
    return c.local, model


@bp.post("/tokenize")
@spec("A model's token ids and count for a text or chat messages, and its context",
      body=TOKENIZE)
@login_required
def tokenize() -> ResponseReturnValue:
    body = json_body(TOKENIZE)
    if ("text" in body) == ("messages" in body):
        raise ValidationError("send text or messages (one of them)", details={"field": "text"})
    local, model = _local(body)
    ids, context = local.tokenize(model, body.get("text", ""), body.get("messages"))
    return jsonify({"model": model, "tokens": ids, "count": len(ids), "context": context})


@bp.post("/detokenize")
@spec("The text of a model's token ids", body=DETOKENIZE)
@login_required
def detokenize() -> ResponseReturnValue:
    body = json_body(DETOKENIZE)
    local, model = _local(body)
    ids = [int(i) for i in body["tokens"]]  # JSON Schema takes 1.0 for an integer
    try:
        text = local.detokenize(model, ids)
    except BridgeError:
        raise
    except Exception as exc:  # an id outside the vocabulary: each engine fails its own way
        raise ValidationError(f"tokens: not ids of {model!r}'s vocabulary",
                              details={"field": "tokens"}) from exc
    return jsonify({"model": model, "text": text})
