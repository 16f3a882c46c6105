"""POST /generate (FT) and POST /chat/completion (AQ): one pipeline, two answer shapes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, stream_with_context

from bridge.errors import BridgeError
from bridge.types import BackendSwitched, Done, Token
from local_api import inference, response_cache
from local_api.docs import spec
from local_api.errors import request_id
from local_api.identity import current_identity, login_required
from local_api.timeutil import duration
from local_api.validation import json_body, obj

bp = Blueprint("generation", __name__)

_common = {
    "prompt": inference.PROMPT,
    "parameters": inference.PARAMETERS,
    "conversation_id": inference.CONVERSATION_ID,
    "stream": {"type": "boolean"},
}
GENERATE = obj({"model": inference.MODEL_ID, **_common}, ("prompt",))
CHAT = obj({"model_id": inference.MODEL_ID, **_common}, ("prompt",))


def ft_shape(answer: dict[str, Any]) -> dict[str, Any]:
    usage = answer["usage"]
    return {
        "response": answer["text"],
        "model": answer["model"],
        "usage": {
            "tokens": usage["completion_tokens"],
            "time": answer["metrics"]["response_time"],
            **usage,
        },
        **_extras(answer),
    }


def aq_shape(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "completion": answer["text"],
        "model_id": answer["model"],
        "usage": answer["usage"],
        **_extras(answer),
    }


def _extras(answer: dict[str, Any]) -> dict[str, Any]:
    keep = ("conversation_id", "backend", "metrics", "finish_reason", "cache",
            "prompt_truncated", "backend_switches")
    return {k: answer[k] for k in keep if k in answer}


def _run(body: dict[str, Any], model: str | None, shape: Callable[..., dict[str, Any]]) -> Any:
    who = current_identity()
    assert who is not None
    job = inference.prepare(
        who,
        model=model,
        prompt=body["prompt"],
        parameters=body.get("parameters"),
        conversation_id=body.get("conversation_id"),
    )
    if body.get("stream"):
        return _stream(job, shape)
    key = response_cache.key_for(who.user_id, job.request)
    cacheable = response_cache.wanted(job.request)
    hit = response_cache.get(key) if cacheable else None
    if hit is not None:
        stored, left = hit
        job.parts.append(stored["text"])
        done = Done(stored["usage"]["prompt_tokens"], stored["usage"]["completion_tokens"],
                    stored["finish_reason"], stored["backend"])
        answer = {**inference.finish(job, done), "cache": {"status": "HIT", "ttl": duration(left)}}
        status = "HIT"
    else:
        done = _last_done(inference.events(job))
        answer = inference.finish(job, done)
        status = "BYPASS"
        if cacheable:
            ttl = response_cache.put(key, {k: answer[k] for k in
                                           ("text", "usage", "finish_reason", "backend")})
            answer["cache"] = {"status": "MISS", "ttl": duration(ttl)}
            status = "MISS"
    response = Response(json.dumps(shape(answer)), mimetype="application/json")
    response.headers["X-Cache"] = status
    return response


def _last_done(stream: Iterator[Any]) -> Done:
    done = None
    for event in stream:
        if isinstance(event, Done):
            done = event
    if done is None:
        from bridge.errors import BackendUnavailable

        raise BackendUnavailable("The backend ended its answer without finishing it")
    return done


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data) + "\n"


def _stream(job: inference.Job, shape: Callable[..., dict[str, Any]]) -> Response:
    """NDJSON: errors before the first event get a real status, later ones a final line."""
    events = inference.events(job)
    first = next(events)  # raises into the error handler before any byte is sent

    def lines() -> Iterator[str]:
        event: Any = first
        try:
            while True:
                if isinstance(event, Token):
                    yield _line({"token": event.text, "is_final": False})
                elif isinstance(event, BackendSwitched):
                    yield _line({"event": "backend_switched", "from": event.from_backend,
                                 "to": event.to_backend, "reason": event.reason})
                elif isinstance(event, Done):
                    yield _line({**shape(inference.finish(job, event)), "is_final": True})
                    return
                event = next(events)
        except StopIteration:
            yield _line({"error": {"code": "BACKEND_UNAVAILABLE",
                                   "message": "The backend ended its answer without finishing it",
                                   "request_id": request_id()}})
        except BridgeError as exc:
            yield _line(exc.to_dict(request_id()))
        finally:
            events.close()  # a client that went away stops its generation

    response = Response(stream_with_context(lines()), mimetype="application/x-ndjson")
    response.headers["X-Cache"] = "BYPASS"
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
