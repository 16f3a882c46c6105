"""POST /generate (FT) and POST /chat/completion (AQ): decode, run the pipeline, encode.

Both answer JSON, or NDJSON with ``stream: true`` (one ``{"token", "is_final": false}``
line per token, a ``{"tool_call", "is_final": false}`` line per tool call, a final line
carrying the whole answer in the document's shape). Structured outputs and tools:
local_api.generation.formats.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, stream_with_context

from bridge.errors import BridgeError
from bridge.streaming import encode_stream
from bridge.types import BackendSwitched, Done, Event, Token, ToolCall
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.errors import request_id
from local_api.generation import embedding_routes, formats, pipeline, token_routes
from local_api.validation import json_body, obj

bp = Blueprint("generation", __name__)
bp.register_blueprint(embedding_routes.bp)
bp.register_blueprint(token_routes.bp)

_common = {
    "prompt": pipeline.PROMPT,
    "parameters": formats.PARAMETERS,
    "conversation_id": pipeline.CONVERSATION_ID,
    "tool_results": formats.TOOL_RESULTS,
    "stream": {"type": "boolean"},
}
# ``prompt`` is required, unless tool_results answer a conversation (formats.decode checks)
GENERATE = obj({"model": pipeline.MODEL_ID, **_common})
CHAT = obj({"model_id": pipeline.MODEL_ID, **_common})
NAMES = formats.NAMES  # how FT/AQ name the request's fields, for error messages


def ft_shape(answer: dict[str, Any]) -> dict[str, Any]:
    usage = answer["usage"]
    return {
        "response": answer["text"],
        "model": answer["model"],
        "usage": {"tokens": usage["completion_tokens"], "time": answer["metrics"]["response_time"],
                  **usage},
        **_extras(answer),
    }


def aq_shape(answer: dict[str, Any]) -> dict[str, Any]:
    return {"completion": answer["text"], "model_id": answer["model"], "usage": answer["usage"],
            **_extras(answer)}


def _extras(answer: dict[str, Any]) -> dict[str, Any]:
    keep = ("conversation_id", "backend", "engine", "metrics", "finish_reason", "cache",
            "prompt_truncated", "backend_switches")
    extras = {k: answer[k] for k in keep if k in answer}
    if answer.get("tool_calls"):
        extras["tool_calls"] = formats.calls(answer)
    return extras


def _run(body: dict[str, Any], model: str | None, shape: Callable[..., dict[str, Any]]) -> Any:
    who = current_identity()
    assert who is not None
    request, tools, turns = formats.decode(body, model)
    job = pipeline.start(who, request, prompt=body.get("prompt") or "",
                         conversation_id=body.get("conversation_id"), names=NAMES, tools=tools,
                         turns=turns)
    if body.get("stream"):
        response = _stream(job, shape)
    else:
        response = Response(json.dumps(shape(pipeline.complete(job))),
                            mimetype="application/json")
    response.headers["X-Cache"] = job.cache_status
    return response


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data) + "\n"


def _stream(job: pipeline.Job, shape: Callable[..., dict[str, Any]]) -> Response:
    """NDJSON: errors before the first event get a real status, later ones a final line."""
    stream = pipeline.open_stream(job)

    def encode(event: Event) -> Iterator[str]:
        if isinstance(event, Token):
            yield _line({"token": event.text, "is_final": False})
        elif isinstance(event, ToolCall):
            yield _line({"tool_call": formats.call(event), "is_final": False})
        elif isinstance(event, BackendSwitched):
            yield _line({"event": "backend_switched", "from": event.from_backend,
                         "to": event.to_backend, "reason": event.reason})
        elif isinstance(event, Done):
            assert job.answer is not None
            yield _line({**shape(job.answer), "is_final": True})

    def encode_error(exc: BridgeError) -> str:
        return _line(exc.to_dict(request_id()))

    lines = encode_stream(stream, encode, encode_error)
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.post("/generate")
@spec("Generate a response (FT); stream=true gives NDJSON", body=GENERATE)
@login_required
def generate() -> Any:
    body = json_body(GENERATE)
    return _run(body, body.get("model"), ft_shape)


@bp.post("/chat/completion")
@spec("Chat completion (AQ); stream=true gives NDJSON", body=CHAT)
@login_required
def chat_completion() -> Any:
    body = json_body(CHAT)
    return _run(body, body.get("model_id"), aq_shape)
