"""The OpenAI-compatible surface at /v1: models, chat completions, completions (JSON or SSE).

Any OpenAI SDK works with ``base_url=<service>/v1`` and an API key (or JWT) as the key.
A model's reasoning (bridge.reasoning) is ``reasoning_content`` beside ``content`` (the name
llama.cpp's server and vLLM use). Errors here use OpenAI's shape,
``{"error": {message, type, param, code}}``; the rest of the API keeps the envelope of API.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from bridge import errors
from bridge.streaming import encode_stream
from bridge.types import BackendSwitched, Done, Event, Reasoning, Token, ToolCall
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.generation import pipeline
from local_api.generation.compute import compute
from local_api.generation.sse import sse_response
from local_api.openai import choices, formats, logprobs, shapes
from local_api.openai import embeddings as openai_embeddings
from local_api.openai import errors as openai_errors
from local_api.openai import responses as openai_responses
from local_api.validation import json_body

bp = Blueprint("openai_compat", __name__, url_prefix="/v1")
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


openai_errors.register(bp)
bp.register_blueprint(openai_embeddings.bp)
bp.register_blueprint(openai_responses.bp)


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


def _model_entries() -> list[dict[str, Any]]:
    c = compute()
    out: dict[str, dict[str, Any]] = {}
    for info in c.store.list():
        created = int(info.path.stat().st_mtime) if info.path and info.path.exists() else 0
        out[info.id] = {
            "id": info.id,
            "object": "model",
            "created": created,
            "owned_by": "compute-bridge",
        }
        if info.type == "embedding":  # not OpenAI's fields: what a client needs to pick one
            out[info.id].update(type=info.type, dimensions=info.dimensions, pooling=info.pooling)
    for backend in c.router.backends():
        for model_id in backend.get("models") or []:
            out.setdefault(
                model_id,
                {
                    "id": model_id,
                    "object": "model",
                    "created": 0,
                    "owned_by": backend.get("name") or "worker",
                },
            )
    return list(out.values())


@bp.get("/models")
@spec("OpenAI: list models (local store and attached workers)")
@login_required
def list_models() -> Response:
    return _json({"object": "list", "data": _model_entries()})


@bp.get("/models/<path:model_id>")
@spec("OpenAI: retrieve one model")
@login_required
def get_model(model_id: str) -> Response:
    for entry in _model_entries():
        if entry["id"] == model_id:
            return _json(entry)
    raise errors.ModelNotFound(details={"model_id": model_id[:128]})


def _job(body: dict[str, Any], *, chat: bool) -> pipeline.Job:
    """Decode the body; the stored prompt is the last user turn."""
    settings = current_app.config["SETTINGS"]
    who = current_identity()
    assert who is not None
    model = body.get("model") or settings.default_model
    if chat:
        messages = shapes.messages_of(body)
        request_ = shapes.build_request(body, model, settings.max_tokens_limit, messages=messages)
        users = [m.content for m in messages if m.role == "user"]
        prompt = users[-1] if users else messages[-1].content
    else:
        prompt = shapes.prompt_of(body)
        request_ = shapes.build_request(body, model, settings.max_tokens_limit, prompt=prompt)
    request_ = replace(request_, json_schema=formats.schema_of(body))
    tools = formats.tools_of(body) if chat else None
    return pipeline.start(who, request_, prompt=prompt, names=shapes.names(body), tools=tools)


def _answer(body: dict[str, Any], *, chat: bool) -> Response:
    # n > 1: n jobs, each its own sample (choices.py), validated before any byte
    jobs = [_job(b, chat=chat) for b in choices.bodies(body)]
    ignored = shapes.ignored(body)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = _stream(jobs, chat=chat, include_usage=include_usage)
    else:
        answers = [pipeline.complete(job) for job in jobs]
        data = shapes.completion(answers[0], chat=chat, id_=shapes.new_id(chat),
                                 created=shapes.now())  # fmt: skip
        data["choices"] = [choices.choice(a, i, chat=chat) for i, a in enumerate(answers)]
        data["usage"] = choices.usage(answers)
        response = _json(data)
        response.headers["X-Bridge-Backend"] = answers[0]["backend"]
    response.headers["X-Cache"] = jobs[0].cache_status
    if ignored:
        response.headers["X-Bridge-Ignored-Params"] = ",".join(ignored)
    return response


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _stream(jobs: list[pipeline.Job], *, chat: bool, include_usage: bool) -> Response:
    """SSE chunks (choice after choice when n > 1), then ``data: [DONE]``; an error after the
    first byte is one error event."""
    first = pipeline.open_stream(jobs[0])  # errors before any byte get a real status
    id_, created, model = shapes.new_id(chat), shapes.now(), jobs[0].request.model

    def piece(index: int = 0, **kwargs: Any) -> dict[str, Any]:
        data = shapes.chunk(id_, created, model, chat=chat, **kwargs)
        data["choices"][0]["index"] = index
        if include_usage:
            data["usage"] = None
        return data

    def encoder(job: pipeline.Job, index: int) -> Any:
        offset = 0  # where the next token's text starts (legacy completions' text_offset)

        def encode(event: Event) -> Iterator[str]:
            nonlocal offset
            if isinstance(event, Token) and event.text:
                data = piece(index, text=event.text)
                if job.request.logprobs is not None:
                    entries = list(event.logprobs)
                    data["choices"][0]["logprobs"] = logprobs.shape(entries, chat=chat,
                                                                    offset=offset)  # fmt: skip
                    offset += sum(len(e["token"]) for e in entries)
                yield _sse(data)
            elif isinstance(event, Reasoning) and event.text and chat:
                data = piece(index)
                data["choices"][0]["delta"] = {"reasoning_content": event.text}
                yield _sse(data)
            elif isinstance(event, ToolCall):
                for delta in formats.call_deltas(event):
                    data = piece(index)
                    data["choices"][0]["delta"] = delta
                    yield _sse(data)
            elif isinstance(event, BackendSwitched):  # an SSE comment: clients skip it
                yield f": backend switched from {event.from_backend} to {event.to_backend}\n\n"
            elif isinstance(event, Done):
                assert job.answer is not None
                last = piece(index, finish=job.answer["finish_reason"])
                last["backend"] = job.answer["backend"]
                yield _sse(last)

        return encode

    def encode_error(exc: errors.BridgeError) -> str:
        return _sse(openai_errors.error_body(exc))

    def lines() -> Iterator[str]:
        stream = first
        try:
            for index, job in enumerate(jobs):
                if index:
                    try:
                        stream = pipeline.open_stream(job)
                    except errors.BridgeError as exc:
                        yield encode_error(exc)
                        return
                if chat:
                    yield _sse(piece(index, role=True))
                yield from encode_stream(stream, encoder(job, index), encode_error)
                stream.close()
                if job.answer is None:  # it ended in an error event
                    return
            if include_usage:
                answers = [job.answer for job in jobs if job.answer is not None]
                yield _sse({**piece(), "choices": [], "usage": choices.usage(answers)})
            yield "data: [DONE]\n\n"
        finally:
            stream.close()  # also when the client left before the first chunk

    return sse_response(lines())


@bp.post("/chat/completions")
@spec("OpenAI: chat completion (stream=true gives server-sent events)", body=shapes.CHAT)
@login_required
def chat_completions() -> Response:
    body = json_body()
    shapes.validate(body, shapes.CHAT)
    return _answer(body, chat=True)


@bp.post("/completions")
@spec("OpenAI: text completion (stream=true gives server-sent events)", body=shapes.COMPLETION)
@login_required
def completions() -> Response:
    body = json_body()
    shapes.validate(body, shapes.COMPLETION)
    return _answer(body, chat=False)


@bp.route("/<path:rest>", methods=_METHODS)
@spec("OpenAI: any other /v1 path answers 404 (or 405) in OpenAI's error shape", auth="none")
def unknown(rest: str) -> Response:
    path = f"{bp.url_prefix}/{rest}"
    adapter = current_app.url_map.bind("localhost")
    allowed = []
    for method in _METHODS:  # a real /v1 route under another method makes this a 405
        try:
            endpoint, _args = adapter.match(path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    if allowed:
        raise errors.MethodNotAllowed(
            f"{request.method} is not allowed on {path}", headers={"Allow": ", ".join(allowed)}
        )
    raise errors.NotFound(f"Invalid URL ({request.method} {path})")
