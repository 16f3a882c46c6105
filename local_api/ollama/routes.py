"""The Ollama-compatible surface at /ollama: chat and generate here, the catalog in models.py.

Point Ollama's own client at it, with an API key (or JWT) as the bearer:
``ollama.Client(host="http://127.0.0.1:5000/ollama", headers={"Authorization": "Bearer ..."})``.
A handler only decodes Ollama's body into a GenerateRequest, runs the one pipeline and
encodes its events as Ollama's objects: NDJSON lines by default, one object with
``"stream": false``. A model's reasoning (bridge.reasoning) is Ollama's ``thinking`` (in
``message`` on /api/chat), left out when the request says ``"think": false``. Errors use
Ollama's shape (errors.py): a real status before the first byte, one more ``{"error": ...}``
line after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, current_app, request, stream_with_context
from werkzeug.exceptions import HTTPException

from bridge import errors
from bridge.streaming import encode_stream
from bridge.types import Done, Event, GenerateRequest, Reasoning, Token, ToolCall
from local_api.accounts.identity import current_identity, login_required
from local_api.docs import spec
from local_api.generation import embeddings, pipeline
from local_api.generation.compute import compute
from local_api.ollama import embed, keep_alive, models, shapes, tools
from local_api.ollama import errors as ollama_errors
from local_api.validation import json_body

bp = Blueprint("ollama", __name__, url_prefix="/ollama")
bp.register_blueprint(models.bp)
bp.register_blueprint(embed.bp)
ollama_errors.register(bp)
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _json(data: dict[str, Any]) -> Response:
    return Response(json.dumps(data), mimetype="application/json")


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data) + "\n"


@bp.post("/api/chat")
@spec("Ollama: chat (NDJSON lines unless stream is false)", body=shapes.CHAT)
@login_required
def chat() -> Response:
    body = json_body(shapes.CHAT)
    shapes.refuse_unsupported(body)
    _require_completion(body, "chat")
    messages = shapes.messages_of(body)
    if not messages:
        return _load(body, chat=True)
    request_ = _request(body, messages=messages)
    users = [m.content for m in messages if m.role == "user"]
    return _answer(body, request_, users[-1] if users else messages[-1].content, chat=True)


@bp.post("/api/generate")
@spec("Ollama: generate (NDJSON lines unless stream is false)", body=shapes.GENERATE)
@login_required
def generate() -> Response:
    body = json_body(shapes.GENERATE)
    shapes.refuse_unsupported(body)
    _require_completion(body, "generate")
    if not body.get("prompt"):
        return _load(body, chat=False)
    messages, raw = shapes.generate_input(body)
    return _answer(body, _request(body, messages=messages, prompt=raw), body["prompt"],
                   chat=False)


def _require_completion(body: dict[str, Any], route: str) -> None:
    """An embedding model asked to chat or generate (a load included) gets Ollama's own 400:
    ``"<model>" does not support chat`` (or ``generate``; server/routes.go, its
    errCapabilityCompletion answer)."""
    try:
        embeddings.require_kind(shapes.model_id(body["model"]), "chat")
    except errors.ModelTypeMismatch as exc:
        raise errors.ModelTypeMismatch(f'"{body["model"]}" does not support {route}',
                                       details={"field": "model"}) from exc  # fmt: skip


def _request(body: dict[str, Any], **text: Any) -> GenerateRequest:
    limit = current_app.config["SETTINGS"].max_tokens_limit
    return shapes.build_request(body, shapes.model_id(body["model"]), limit, **text)


def _load(body: dict[str, Any], *, chat: bool) -> Response:
    """An empty prompt loads the model (``keep_alive: 0`` unloads it), as Ollama does."""
    c, model = compute(), shapes.model_id(body["model"])
    c.require_model(model)
    local = c.local if c.store.has(model) else None
    if body.get("keep_alive") in (0, "0", "0s"):
        if local is not None and model in local.loaded_models():
            local.unload(model)
        return _json(shapes.loaded(body["model"], "unload", chat=chat))
    num_ctx = (body.get("options") or {}).get("num_ctx")
    if local is not None and (model not in local.loaded_models() or num_ctx):
        local.load(model, **({"context": num_ctx} if num_ctx else {}))  # alike: no-op
    keep_alive.apply(model, body.get("keep_alive"))
    return _json(shapes.loaded(body["model"], "load", chat=chat))


def _answer(body: dict[str, Any], request_: GenerateRequest, prompt: str, *,
            chat: bool) -> Response:
    who = current_identity()
    assert who is not None
    toolset = tools.tools_of(body) if chat else None
    if toolset is not None:
        models.require_tools(request_.model, body["model"])
    keep_alive.seconds(body.get("keep_alive"))  # a bad duration: 400 before any byte
    job = pipeline.start(who, request_, prompt=prompt, names=shapes.NAMES, tools=toolset)
    name = body["model"]  # Ollama echoes the name as the client spelled it
    if body.get("stream") is False:
        answer = pipeline.complete(job)
        keep_alive.apply(request_.model, body.get("keep_alive"))
        final = shapes.final(answer, name, chat=chat, text=answer["text"])
        if answer.get("reasoning") and body.get("think") is not False:
            (final["message"] if chat else final)["thinking"] = answer["reasoning"]
        if answer.get("tool_calls"):
            final["message"]["tool_calls"] = tools.calls_of(answer)
        if "logprobs" in answer:  # Ollama's shape: [{token, logprob, bytes, top_logprobs}]
            final["logprobs"] = answer["logprobs"]
        response = _json(final)
        response.headers["X-Bridge-Backend"] = answer["backend"]
    else:
        response = _stream(job, name, chat=chat, keep=body.get("keep_alive"),
                           think=body.get("think") is not False)
    response.headers["X-Cache"] = job.cache_status
    return response


def _stream(job: pipeline.Job, name: str, *, chat: bool, keep: Any = None,
            think: bool = True) -> Response:
    stream = pipeline.open_stream(job)  # errors before any byte get a real status

    def encode(event: Event) -> Iterator[str]:
        if isinstance(event, Reasoning) and event.text and think:  # Ollama's "thinking"
            line = shapes.chunk(name, "", chat=chat)
            (line["message"] if chat else line)["thinking"] = event.text
            yield _line(line)
        elif isinstance(event, Token) and event.text:
            line = shapes.chunk(name, event.text, chat=chat)
            if job.request.logprobs is not None:
                line["logprobs"] = list(event.logprobs)
            yield _line(line)
        elif isinstance(event, ToolCall):  # each call a chunk of its own, as Ollama streams
            piece = shapes.chunk(name, "", chat=chat)
            piece["message"]["tool_calls"] = [tools.call_of(event)]
            yield _line(piece)
        elif isinstance(event, Done):
            assert job.answer is not None
            keep_alive.apply(job.request.model, keep)
            yield _line(shapes.final(job.answer, name, chat=chat))

    def encode_error(exc: errors.BridgeError) -> str:
        return _line(ollama_errors.error_body(exc))

    lines = encode_stream(stream, encode, encode_error)
    response = Response(stream_with_context(lines), mimetype="application/x-ndjson")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/api/version")
@spec("Ollama: the service's version", auth="none")
def server_version() -> Response:
    try:
        release = version("compute-bridge")
    except PackageNotFoundError:
        release = "0.0.0"
    return _json({"version": release})


@bp.get("/")
@spec("Ollama: the liveness line Ollama's clients look for", auth="none")
def running() -> Response:
    return Response("Ollama is running", mimetype="text/plain")


@bp.route("/api/<path:rest>", methods=_METHODS)
@spec("Ollama: any other /ollama/api path answers 404 (or 405) in Ollama's shape", auth="none")
def unknown(rest: str) -> Response:
    path = f"{bp.url_prefix}/api/{rest}"
    adapter = current_app.url_map.bind("localhost")
    allowed = []
    for method in _METHODS:  # a real route under another method makes this a 405
        try:
            endpoint, _args = adapter.match(path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            allowed.append(method)
    if allowed:
        raise errors.MethodNotAllowed("405 method not allowed",
                                      headers={"Allow": ", ".join(allowed)})
    raise errors.NotFound("404 page not found")
