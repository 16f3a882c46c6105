"""Anthropic's Messages API at /v1/messages over the one generation pipeline.

The ``anthropic`` SDK (and Claude Code) work with ``base_url=<service>`` and an API key (or
JWT) as the key: the SDK sends it as ``x-api-key``, which the service accepts as it does a
bearer (local_api.accounts.identity); ``anthropic-version`` and ``anthropic-beta`` headers
are tolerated. Errors use Anthropic's shape (errors.py).

Streaming (``"stream": true``) sends Anthropic's server-sent events (API reference,
"Streaming Messages"): ``message_start``, then per content block ``content_block_start``,
``content_block_delta`` (``text_delta``, ``thinking_delta``, ``input_json_delta``) and
``content_block_stop``, then ``message_delta`` (stop_reason, usage) and ``message_stop``; a
failure after the first byte is one ``event: error``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request

from bridge import errors
from bridge.streaming import encode_stream
from bridge.types import Done, Event, GenerateRequest, Reasoning, Token, ToolCall
from local_api.accounts.identity import current_identity, login_required
from local_api.anthropic import errors as anthropic_errors
from local_api.anthropic import shapes
from local_api.docs import spec
from local_api.generation import pipeline
from local_api.generation.compute import compute
from local_api.generation.sse import sse_response
from local_api.generation.tools import constrain
from local_api.validation import json_body

bp = Blueprint("anthropic", __name__, url_prefix="/v1/messages")
anthropic_errors.register(bp)


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n"


@bp.post("")
@spec("Anthropic: create a message (stream=true gives Anthropic's server-sent events)",
      body=shapes.MESSAGES)
@login_required
def create() -> Response:
    body = json_body()
    shapes.validate(body, shapes.MESSAGES)
    messages = shapes.messages_of(body)
    who = current_identity()
    assert who is not None
    users = [m.content for m in messages if m.role == "user"]
    job = pipeline.start(who, shapes.build_request(body, messages),
                         prompt=users[-1] if users else messages[-1].content,
                         names=shapes.NAMES, tools=shapes.tools_of(body))  # fmt: skip
    if body.get("stream"):
        response = _stream(job)
    else:
        answer = pipeline.complete(job)
        response = _json(shapes.message(answer, shapes.new_id()))
        response.headers["X-Bridge-Backend"] = answer["backend"]
    response.headers["X-Cache"] = job.cache_status
    return response


@bp.post("/count_tokens")
@spec("Anthropic: count a message's input tokens (the model's own tokenizer)",
      body=shapes.COUNT)
@login_required
def count_tokens() -> Response:
    body = json_body()
    shapes.validate(body, shapes.COUNT)
    messages = shapes.messages_of(body)
    toolset = shapes.tools_of(body)
    c, model = compute(), body["model"]
    c.require_model(model)
    if c.local is None or not hasattr(c.local, "tokenize") or not c.store.has(model):
        raise errors.NotSupported(f"Model {model!r} is not stored here: its tokens are a "
                                  "worker's")  # fmt: skip
    if toolset is not None:  # the tools are stated in the prompt: they count
        messages = constrain(GenerateRequest(model, messages=messages), toolset).messages
    ids, _context = c.local.tokenize(model, "", [{"role": m.role, "content": m.content}
                                                for m in messages])  # fmt: skip
    return _json({"input_tokens": len(ids)})


@bp.route("", methods=["GET", "PUT", "PATCH", "DELETE"])
@bp.route("/count_tokens", methods=["GET", "PUT", "PATCH", "DELETE"])
@spec("Anthropic: any other method answers 405 in Anthropic's error shape", auth="none")
def wrong_method() -> Response:
    raise errors.MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                                  headers={"Allow": "POST"})  # fmt: skip


def _stream(job: pipeline.Job) -> Response:
    stream = pipeline.open_stream(job)  # errors before any byte get a real status
    id_ = shapes.new_id()
    state: dict[str, Any] = {"index": -1, "open": ""}  # the open block ("": none)

    def start(kind: str, block: dict[str, Any]) -> Iterator[str]:
        yield from stop()
        state["index"] = state["index"] + 1
        state["open"] = kind
        yield _sse("content_block_start", {"index": state["index"], "content_block": block})

    def stop() -> Iterator[str]:
        if state["open"]:
            yield _sse("content_block_stop", {"index": state["index"]})
            state["open"] = ""

    def delta(delta: dict[str, Any]) -> str:
        return _sse("content_block_delta", {"index": state["index"], "delta": delta})

    def encode(event: Event) -> Iterator[str]:
        if isinstance(event, Reasoning) and event.text:
            if state["open"] != "thinking":
                yield from start("thinking", {"type": "thinking", "thinking": "",
                                              "signature": ""})  # fmt: skip
            yield delta({"type": "thinking_delta", "thinking": event.text})
        elif isinstance(event, Token) and event.text:
            if state["open"] != "text":
                yield from start("text", {"type": "text", "text": ""})
            yield delta({"type": "text_delta", "text": event.text})
        elif isinstance(event, ToolCall):
            yield from start("tool_use", {"type": "tool_use", "id": shapes.tool_id(event.id),
                                          "name": event.name, "input": {}})  # fmt: skip
            yield delta({"type": "input_json_delta", "partial_json": event.arguments})
        elif isinstance(event, Done):
            assert job.answer is not None
            if state["index"] < 0:  # an empty answer is still one (empty) text block
                yield from start("text", {"type": "text", "text": ""})
            yield from stop()
            yield _sse("message_delta", {
                "delta": {"stop_reason": shapes.STOP_REASONS.get(event.finish_reason,
                                                                 "end_turn"),
                          "stop_sequence": None},
                "usage": shapes.usage(job.answer)})  # fmt: skip
            yield _sse("message_stop", {})

    def encode_error(exc: errors.BridgeError) -> str:
        return _sse("error", {k: v for k, v in anthropic_errors.error_body(exc).items()
                              if k != "type"})  # fmt: skip

    def lines() -> Iterator[str]:
        message: dict[str, Any] = {"id": id_, "type": "message", "role": "assistant",
                   "model": job.request.model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}
        try:
            yield _sse("message_start", {"message": message})
            yield from encode_stream(stream, encode, encode_error)
        finally:
            stream.close()  # also when the client left before the first event

    return sse_response(lines())
